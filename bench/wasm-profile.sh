#!/usr/bin/env bash
# Profiles the filter's own code in V8 (Node) on non-stream chat exchanges:
#   bench/wasm-profile.sh [llm-forward.yaml] [requests]    (default: the bench's full-feature config)
# Prints µs per exchange and the filter's functions by inclusive and self time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p llm-forward -p llm-forward-filter
cargo build --quiet --release -p llm-forward-filter --target wasm32-wasip1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
config=${1:-}
if [ -z "$config" ]; then
  config=$tmp/c.json
  python3 -c "import sys, json; sys.path.insert(0, 'bench'); import bench; print(json.dumps(bench.feature_config(bench.base_config('http://127.0.0.1:9', 8000, 8001, 1, '$tmp'))))" > "$config"
fi
./target/release/llm-forward render -c "$config" | python3 -c '
import sys, yaml
def find(o):
    if isinstance(o, dict):
        if o.get("root_id") == "llm_forward":
            return o["configuration"]["value"]
        o = list(o.values())
    if isinstance(o, list):
        for v in o:
            r = find(v)
            if r:
                return r
print(find(yaml.safe_load(sys.stdin)))' > "$tmp/plugin.json"
node bench/wasm-profile/host.cjs target/wasm32-wasip1/release/llm_forward_filter.wasm "$tmp/plugin.json" "${2:-50000}" --trace --profile
