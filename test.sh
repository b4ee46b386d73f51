#!/usr/bin/env bash
# Run every test: core unit tests, gateway tests, integration tests against a real Envoy, and the
# official openai Python client against `llm-forward run --demo`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup-test.sh
cargo build -p llm-forward-filter --target wasm32-wasip1 --release
ls -l target/wasm32-wasip1/release/llm_forward_filter.wasm
cargo build --workspace
cargo test --workspace
# Every cargo-fuzz target for 20 s (nightly; skipped without it). Findings replay in cargo test.
bash scripts/fuzz.sh
python3 -m pytest -q integration-tests/python
# The web console in headless Chromium (needs the debug binary and the release .wasm built above).
(cd integration-tests/console && npm test)
bash integration-tests/wheel/test_wheel.sh
