#!/usr/bin/env bash
# Conformance: Google's official Python clients against a fresh `sim` (see run.py).
# usage: tests/conformance/run.sh [BINARY]   (default target/debug/gke-iam-remediator; build it first)
# The clients are installed once into target/conformance-venv (pinned in requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:-target/debug/gke-iam-remediator}
venv=target/conformance-venv
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/conformance/requirements.txt "$stamp"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tests/conformance/requirements.txt
  cp tests/conformance/requirements.txt "$stamp"
fi
exec "$venv/bin/python" tests/conformance/run.py "$binary"
