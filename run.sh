#!/usr/bin/env bash
# Build and start the gateway: ./run.sh [llm-forward run flags], e.g. ./run.sh --demo
set -euo pipefail
cd "$(dirname "$0")"
LLM_FORWARD_SKIP_PYTHON=1 bash scripts/setup.sh
cargo build --quiet -p llm-forward-filter --target wasm32-wasip1 --release
cargo build --quiet -p llm-forward --release
exec ./target/release/llm-forward run "$@"
