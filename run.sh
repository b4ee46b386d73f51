#!/usr/bin/env bash
# Build and start the gateway: ./run.sh [llm-forward run flags], e.g. ./run.sh --demo
# Installs only what running needs (scripts/setup-run.sh: the wasm target and Envoy).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup-run.sh
cargo build --quiet -p llm-forward-filter --target wasm32-wasip1 --release
cargo build --quiet -p llm-forward --release
exec ./target/release/llm-forward run "$@"
