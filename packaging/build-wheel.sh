#!/usr/bin/env bash
# Build the llm-forward wheel into dist/: the release filter goes into the wheel's data folder, the
# gateway binary is built by maturin (bin bindings). Needs: the wasm32-wasip1 target and maturin.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p llm-forward-filter --target wasm32-wasip1 --release
mkdir -p packaging/wheel-data/data/share/llm-forward
cp target/wasm32-wasip1/release/llm_forward_filter.wasm packaging/wheel-data/data/share/llm-forward/
python3 -m pip show maturin >/dev/null 2>&1 || python3 -m pip install --quiet 'maturin>=1.5,<2'
# The binary links only glibc; tag the wheel for the glibc it was built against.
python3 -m maturin build --release --out dist --compatibility "${WHEEL_COMPATIBILITY:-linux}" "$@"
ls -l dist/
