#!/usr/bin/env bash
# Run every test: core unit tests, gateway tests, integration tests against a real Envoy, and the
# official openai Python client against `llm-forward run --demo`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup-test.sh
cargo build -p llm-forward-filter --target wasm32-wasip1 --release
ls -l target/wasm32-wasip1/release/llm_forward_filter.wasm
# Formatting and lints first: they fail in seconds, the suite below takes minutes. The filter is
# linted for the wasm target too (code behind cfg(target_arch = "wasm32") is only seen there).
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p llm-forward-filter --target wasm32-wasip1 -- -D warnings
cargo build --workspace
cargo test --workspace
# Every cargo-fuzz target for 20 s (nightly; skipped without it). Findings replay in cargo test.
bash scripts/fuzz.sh
python3 -m pytest -q integration-tests/python
# The web console in headless Chromium (needs the debug binary and the release .wasm built above).
(cd integration-tests/console && npm test)
bash integration-tests/wheel/test_wheel.sh
