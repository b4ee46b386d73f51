#!/usr/bin/env bash
# Build release binaries and run the benchmark: ./bench.sh [bench/bench.py flags], e.g. --openai-forward
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup-run.sh
command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
cargo build --quiet --release -p llm-forward-filter -p llm-forward-noop-filter --target wasm32-wasip1
cargo build --quiet --release -p llm-forward
exec python3 bench/bench.py "$@"
