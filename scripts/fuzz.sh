#!/usr/bin/env bash
# Runs every cargo-fuzz target of core/fuzz for a bounded time (FUZZ_SECONDS each, default 20).
# Needs the nightly toolchain and cargo-fuzz (scripts/setup-test.sh installs cargo-fuzz).
# Seeds come from core/fuzz/seeds/<target>/ and the known findings from core/fuzz/regressions/;
# the corpus grows in core/fuzz/corpus/ (not committed). A crash leaves its input in
# core/fuzz/artifacts/<target>/ and fails the script: fix the bug, then copy the input to
# core/fuzz/regressions/<target>/ (cargo test replays it: core/tests/fuzz_regressions.rs).
#
# Runs are reproducible: libFuzzer's seed is FUZZ_SEED (default 1), so CI replays the same
# mutation sequence (a faster machine just gets further along it). FUZZ_SEED=0 picks a random seed
# for exploring.
#
#   scripts/fuzz.sh                 all targets
#   scripts/fuzz.sh sse answer      some targets
#   FUZZ_SECONDS=300 FUZZ_SEED=0 scripts/fuzz.sh config
set -euo pipefail
cd "$(dirname "$0")/../core/fuzz"
SECONDS_EACH="${FUZZ_SECONDS:-20}"
SEED="${FUZZ_SEED:-1}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(sse answer limits config request_body cache_entry model_of)
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  # No toolchain can be fetched on a machine without it; the found inputs still replay in
  # `cargo test` (core/tests/fuzz_regressions.rs), which needs no nightly.
  echo "fuzz: SKIPPED: no nightly toolchain here (core/tests/fuzz_regressions.rs still replays the findings)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is missing: run bash scripts/setup-test.sh" >&2
  exit 1
fi
# No sanitizer: the code under test is safe Rust (the checks are assertions), and the build and
# the runs are several times faster without ASan. Debug assertions (overflow checks) stay on.
FLAGS=(--sanitizer none -O -a --codegen-units 16)
echo "fuzz: building the targets"
start=$(date +%s)
cargo +nightly fuzz build "${FLAGS[@]}" 2>&1 | grep -Ev '^\s*(Compiling|Downloaded|Downloading)' || true
echo "fuzz: built in $(( $(date +%s) - start ))s"
failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  seeds=()
  for d in "seeds/$t" "regressions/$t"; do
    [ -d "$d" ] && seeds+=("$d")
  done
  echo "fuzz: $t for ${SECONDS_EACH}s"
  if ! cargo +nightly fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "${seeds[@]}" -- \
      -max_total_time="$SECONDS_EACH" -seed="$SEED" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -close_fd_mask=1 > "artifacts/$t.log" 2>&1; then
    failed+=("$t")
    tail -n 60 "artifacts/$t.log" >&2
  else
    grep -aE '^stat::number_of_executed_units|^#[0-9]+.*DONE' "artifacts/$t.log" | tail -n 2 | sed "s/^/fuzz: $t: /"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in core/fuzz/artifacts/<target>/)" >&2
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} passed, 0 failed"
