"""Draws bench/events.sh's measured rows: deliveries/s and p50/p99 latency against requests in flight.

Usage: plot_events.py ROWS.jsonl OUT.png  (one JSON object per line, as events.sh writes them). Only the
measured numbers are drawn; nothing is interpolated or assumed.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    rows_path, out_path = sys.argv[1], sys.argv[2]
    with open(rows_path, encoding="utf-8") as f:
        rows = sorted((json.loads(line) for line in f if line.strip()), key=lambda r: r["in_flight"])
    if not rows:
        sys.exit("no rows to plot")
    x = [r["in_flight"] for r in rows]
    rate = [r["deliveries_per_s"] for r in rows]
    p50 = [r["latency_ms"]["p50"] for r in rows]
    p99 = [r["latency_ms"]["p99"] for r in rows]
    latency = rows[0].get("simulated_latency_ms")

    fig, left = plt.subplots(figsize=(7, 4.2), dpi=120)
    left.plot(x, rate, marker="o", color="tab:blue", label="deliveries/s")
    for xi, yi in zip(x, rate):
        left.annotate(f"{yi:,.0f}/s", (xi, yi), textcoords="offset points", xytext=(0, 8),
                      ha="center", color="tab:blue", fontsize=8)
    left.set_xlabel("requests in flight")
    left.set_ylabel("deliveries/s", color="tab:blue")
    left.set_xscale("log", base=2)
    left.set_xticks(x, [str(v) for v in x])
    left.set_ylim(bottom=0, top=max(rate) * 1.25)
    right = left.twinx()
    right.plot(x, p50, marker="s", color="tab:green", label="p50 latency")
    right.plot(x, p99, marker="^", color="tab:red", label="p99 latency")
    for xi, a, b in zip(x, p50, p99):
        right.annotate(f"{a} ms", (xi, a), textcoords="offset points", xytext=(10, -10),
                       color="tab:green", fontsize=8)
        right.annotate(f"{b} ms", (xi, b), textcoords="offset points", xytext=(10, 4),
                       color="tab:red", fontsize=8)
    right.set_ylabel("latency (ms)")
    right.set_ylim(bottom=0, top=max(p99) * 1.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    sent = rows[0]["sent"]
    left.set_title(f"serve: {sent:,} push deliveries, {latency} ms simulated API latency", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path)


if __name__ == "__main__":
    main()
