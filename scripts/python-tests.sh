#!/usr/bin/env bash
# Builds the Python package from this checkout into a virtual environment (.venv, created
# on first use), with its test extras (TRL, verl, transformers, torch: several GB on the
# first run), and runs its tests. Needs the `polyepo` binary ($POLYEPO_BIN, or the newest
# of target/{release,debug}/polyepo from `cargo build` or `cargo test --workspace`) and
# models/ (scripts/fetch-model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# No pip cache: the wheels (about 3 GB, torch's CUDA libraries) are installed once, and a
# cached copy would only take disk. torch goes in first, on its own, so its downloads are
# freed before the rest arrive: the peak disk use is then about the installed size.
export PIP_NO_CACHE_DIR=1
# The tested versions (python/constraints-ci.txt) within the package's ranges.
constraints=python/constraints-ci.txt
.venv/bin/python -m pip install --quiet -c "$constraints" "$(grep '^torch==' "$constraints")"
.venv/bin/python -m pip install --quiet -c "$constraints" "./python[test]"
.venv/bin/python -m pytest python/tests -q -p no:cacheprovider -W ignore::DeprecationWarning
