#!/usr/bin/env bash
# Run every test: core unit tests, gateway tests, integration tests against a real Envoy, and the
# official openai Python client against `llm-forward run --demo`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
cargo build -p llm-forward-filter --target wasm32-wasip1 --release
ls -l target/wasm32-wasip1/release/llm_forward_filter.wasm
cargo build --workspace
cargo test --workspace
python3 -m pytest -q integration-tests/python
bash integration-tests/wheel/test_wheel.sh
