#!/usr/bin/env bash
# Builds the Python package from this checkout into a virtual environment (.venv, created
# on first use), with its test extras (TRL, verl, transformers, torch: several GB on the
# first run), and runs its tests. Needs the `polyepo` binary (cargo build, or the
# `cargo test --workspace` that .ci/run runs first) and models/ (scripts/fetch-model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet "./python[test]"
.venv/bin/python -m pytest python/tests -q -p no:cacheprovider -W ignore::DeprecationWarning
