#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test llm-forward (./test.sh and .ci/run call it):
# first what running needs (scripts/setup-run.sh), then the test toolchain. Idempotent: each step is
# skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-run.sh

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# test.sh checks formatting and lints first (cargo fmt, cargo clippy); a toolchain installed with
# rustup's minimal profile has neither.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "setup: adding the rustfmt and clippy components"
  rustup component add rustfmt clippy
fi

# Fuzzing (scripts/fuzz.sh, run by test.sh) needs cargo-fuzz and a nightly toolchain. Nightly cannot
# be fetched here; when the machine has it, install cargo-fuzz from crates.io (compiling it takes
# about 2-5 minutes, once).
if cargo +nightly --version >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (cargo install --locked; a few minutes)"
  cargo install cargo-fuzz --locked --quiet
fi

# The cache tests start a real Redis (the `redis` cache backend); they fail without it.
# Debian may start a system instance; the tests run their own on free ports.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "setup: installing redis-server (Debian package)"
  apt_install redis-server
fi

# The deploy tests validate docker-compose.yml without a Docker daemon (`docker-compose config -q`;
# Debian's docker-compose 1.29 package) and the Kubernetes manifests against their schemas.
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "setup: installing docker-compose (Debian package, used to validate docker-compose.yml)"
  apt_install docker-compose
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate (PyPI; Kubernetes schemas for deploy/kubernetes)"
  python3 -m pip install --quiet kubernetes-validate
  hash -r
fi

if ! python3 -c 'import openai, pytest' >/dev/null 2>&1; then
  echo "setup: installing the Python test dependencies (openai, pytest)"
  python3 -m pip install --quiet -r integration-tests/python/requirements.txt
fi

# The web console's browser test: Debian's Chromium driven by playwright-core (pinned in
# integration-tests/console/package-lock.json).
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (Debian package) for the console browser test"
  apt_install chromium
fi
if [ ! -d integration-tests/console/node_modules/playwright-core ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing nodejs + npm (Debian packages) for the console browser test"
    apt_install nodejs npm
  fi
  echo "setup: npm ci in integration-tests/console"
  (cd integration-tests/console && npm ci --no-audit --no-fund --silent)
fi
