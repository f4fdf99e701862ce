#!/usr/bin/env python3
"""Check (or write) the Inputs and Outputs tables of a module README against its `variable` and `output`
blocks, so no input or output can be added, renamed or removed without the README following.

    readme_tables.py MODULE_DIR            exit 1, saying which rows are missing, stale or differ
    readme_tables.py --write MODULE_DIR    rewrite the two tables from the .tf files

The tables are generated from the blocks, in file order (files sorted by name):

    ## Inputs                                      ## Outputs
    | name | description | type | default |        | name | description |
    | `NAME` | DESCRIPTION | `TYPE` | `DEFAULT` or required |

TYPE and DEFAULT are the expressions as written, with every run of whitespace squeezed to one space (so a
multi-line `object({...})` type fits in a cell); DESCRIPTION is the string's value, with `|` escaped.
The .tf files are read line by line as `terraform fmt` lays them out (run.sh checks fmt first in CI):
a block opens with `variable "NAME" {` or `output "NAME" {` at the start of a line and closes with `}`
alone; its arguments are indented by two spaces. Anything else (a heredoc description, an interpolated
one) stops the check with an error instead of a guess.
"""

import json
import pathlib
import re
import sys

BLOCK_RE = re.compile(r'^(variable|output) "([\w-]+)" \{$')
ARG_RE = re.compile(r"^  (\w+)\s*=\s*(.*)$")
NESTED_RE = re.compile(r"^  \w+ \{$")


class Unreadable(Exception):
    pass


def blocks(module: pathlib.Path):
    """(kind, name, {argument: expression text}, where) for every variable and output block."""
    for path in sorted(module.glob("*.tf")):
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = BLOCK_RE.match(lines[i])
            if not m:
                if re.match(r'^(variable|output)\b', lines[i]):
                    raise Unreadable(f"{path.name}:{i + 1}: a {lines[i].split()[0]} block not laid out by terraform fmt")
                i += 1
                continue
            kind, name, where = m.group(1), m.group(2), f"{path.name}:{i + 1}"
            args, i = {}, i + 1
            while i < len(lines) and lines[i] != "}":
                line = lines[i]
                if NESTED_RE.match(line):  # validation { ... }, precondition { ... }
                    i += 1
                    while i < len(lines) and lines[i] != "  }":
                        i += 1
                    i += 1
                    continue
                a = ARG_RE.match(line)
                if not a:
                    if line.strip() == "" or line.lstrip().startswith(("#", "//")):
                        i += 1
                        continue
                    raise Unreadable(f"{path.name}:{i + 1}: unexpected line in {kind} {name}: {line!r}")
                key, value, i = a.group(1), [a.group(2)], i + 1
                # A value continues on lines indented deeper, up to its closing bracket at the argument's
                # own indentation (`  })`, `  ]`).
                while i < len(lines) and (lines[i].startswith("   ") or re.match(r"^  [\]\})]+,?$", lines[i])):
                    value.append(lines[i])
                    i += 1
                args[key] = " ".join(" ".join(value).split())
            if i >= len(lines):
                raise Unreadable(f"{where}: {kind} {name} is not closed")
            i += 1
            yield kind, name, args, where


def string_value(expr: str, where: str) -> str:
    if not (expr.startswith('"') and expr.endswith('"')) or "${" in expr or "%{" in expr:
        raise Unreadable(f"{where}: description is not a plain quoted string: {expr[:60]}")
    return json.loads(expr)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def expected(module: pathlib.Path) -> tuple[list[str], list[str]]:
    inputs, outputs = [], []
    for kind, name, args, where in blocks(module):
        if "description" not in args:
            raise Unreadable(f"{where}: {kind} {name} has no description")
        description = cell(string_value(args["description"], where))
        if kind == "variable":
            if "type" not in args:
                raise Unreadable(f"{where}: variable {name} has no type")
            default = f"`{cell(args['default'])}`" if "default" in args else "required"
            inputs.append(f"| `{name}` | {description} | `{cell(args['type'])}` | {default} |")
        else:
            outputs.append(f"| `{name}` | {description} |")
    return inputs, outputs


HEADERS = {
    "Inputs": ["| name | description | type | default |", "|---|---|---|---|"],
    "Outputs": ["| name | description |", "|---|---|"],
}


def table_span(lines: list[str], section: str) -> tuple[int, int]:
    """Line range [start, end) of the table (header included) under `## SECTION`."""
    try:
        heading = lines.index(f"## {section}")
    except ValueError:
        raise Unreadable(f"README has no `## {section}` section")
    start = next((i for i in range(heading + 1, len(lines)) if lines[i].startswith("|")), None)
    if start is None or any(l.startswith("## ") for l in lines[heading + 1 : start]):
        raise Unreadable(f"README's `## {section}` section has no table")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end


def row_name(row: str) -> str:
    m = re.match(r"^\| `([\w-]+)` \|", row)
    return m.group(1) if m else row


def compare(section: str, want: list[str], got: list[str]) -> list[str]:
    problems = []
    if got[:2] != HEADERS[section]:
        problems.append(f"{section}: the table header must be {' / '.join(HEADERS[section])}")
    got = got[2:]
    want_by, got_by = {row_name(r): r for r in want}, {row_name(r): r for r in got}
    for name in want_by:
        if name not in got_by:
            problems.append(f"{section}: `{name}` is missing:\n    {want_by[name]}")
        elif got_by[name] != want_by[name]:
            problems.append(f"{section}: `{name}` differs from its declaration:\n    README:   {got_by[name]}\n    declared: {want_by[name]}")
    for name in got_by:
        if name not in want_by:
            problems.append(f"{section}: `{name}` is in the README but not declared")
    if not problems and [row_name(r) for r in got] != [row_name(r) for r in want]:
        problems.append(f"{section}: rows are not in declaration order: {', '.join(row_name(r) for r in want)}")
    return problems


def main(argv: list[str]) -> int:
    write = "--write" in argv
    args = [a for a in argv if a != "--write"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    module = pathlib.Path(args[0])
    readme = module / "README.md"
    try:
        inputs, outputs = expected(module)
        lines = readme.read_text().splitlines()
        spans = {s: table_span(lines, s) for s in ("Inputs", "Outputs")}
    except Unreadable as e:
        print(f"readme_tables: {e}")
        return 1
    want = {"Inputs": inputs, "Outputs": outputs}
    if write:
        for section in sorted(spans, key=lambda s: spans[s][0], reverse=True):
            start, end = spans[section]
            lines[start:end] = HEADERS[section] + want[section]
        readme.write_text("\n".join(lines) + "\n")
        print(f"{readme}: {len(inputs)} inputs, {len(outputs)} outputs written")
        return 0
    problems = []
    for section, (start, end) in spans.items():
        problems += compare(section, want[section], lines[start:end])
    for p in problems:
        print(p)
    if problems:
        print(f"{readme}: {len(problems)} problem(s); `readme_tables.py --write {module}` regenerates both tables")
        return 1
    print(f"{len(inputs)} inputs and {len(outputs)} outputs, each as declared")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
