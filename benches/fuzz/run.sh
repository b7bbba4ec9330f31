#!/usr/bin/env bash
# Fuzzes every parser for a set time, one target after another, and prints per target
# the executions, the corpus size and the findings (crashes, timeouts, out-of-memory).
#
#   benches/fuzz/run.sh                 # every target, 600 s each
#   SECONDS_PER_TARGET=60 benches/fuzz/run.sh manifest check
#
# Environment (all optional):
#   SECONDS_PER_TARGET=600   libFuzzer's -max_total_time per target
#   RSS_LIMIT_MB=2048        an input that takes more is an out-of-memory finding
#   TIMEOUT_SECS=10          an input that takes longer is a hang (timeout) finding
#   SEED=1                   libFuzzer's -seed (printed; a run is reproducible from it)
#   NICE=19                  the machine is shared: the fuzzer runs at this niceness
#   FUZZ_BUILD=1             0 runs the binaries as last built (fuzz/target/), no rebuild
#
# Targets live in fuzz/fuzz_targets/ (one per parser), seeds in fuzz/corpus/TARGET/
# (committed: seed-*; what libFuzzer adds is ignored by git), findings land in
# fuzz/artifacts/TARGET/. A finding is to be kept as fuzz/regressions/TARGET/NAME and is
# then replayed by `cargo test` (tests/integration/hardening.rs).
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Built
# without a sanitizer (`-s none`): the crate forbids `unsafe`, so AddressSanitizer
# would find nothing Rust's own checks do not, at a third of the speed; panics,
# stack overflows, hangs and memory over RSS_LIMIT_MB are all still findings.
# Exit status: 0 when no target found anything, 1 otherwise, 2 when it cannot run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT/fuzz"

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-600}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-2048}
TIMEOUT_SECS=${TIMEOUT_SECS:-10}
SEED=${SEED:-1}
NICE=${NICE:-19}
ALL=(manifest assertion check signature dataset observe capture)
TARGETS=("${@:-${ALL[@]}}")

die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }
command -v cargo >/dev/null || die "cargo is not on PATH"
cargo +nightly --version >/dev/null 2>&1 || die "the nightly toolchain is missing: rustup toolchain install nightly"
cargo +nightly fuzz --version >/dev/null 2>&1 || die "cargo-fuzz is missing: cargo install cargo-fuzz"
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || die "SECONDS_PER_TARGET must be a positive integer"

echo "# conditions"
echo "date:       $(date -u +%FT%TZ)"
echo "commit:     $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+dirty')"
echo "cores:      $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "toolchain:  $(cargo +nightly --version), $(cargo +nightly fuzz --version)"
echo "settings:   ${SECONDS_PER_TARGET}s per target, -rss_limit_mb=$RSS_LIMIT_MB, -timeout=$TIMEOUT_SECS, -seed=$SEED, nice $NICE, sanitizer none, one job"
echo

# Built once, then each target's binary is run directly: `cargo fuzz run` would rebuild
# whenever a source file changed meanwhile, eating a target's time.
if [[ "${FUZZ_BUILD:-1}" != 0 ]]; then
  nice -n "$NICE" cargo +nightly fuzz build -s none >/dev/null 2>&1 \
    || nice -n "$NICE" cargo +nightly fuzz build -s none || die "the fuzz targets do not build"
else
  echo "FUZZ_BUILD=0: running the binaries as last built"
fi
BIN="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

printf '%-10s %8s %14s %10s %8s %8s %9s %6s %s\n' target seconds executions exec/s "rss MB" corpus crashes hangs "oom"
found=0
for target in "${TARGETS[@]}"; do
  [[ -f "fuzz_targets/$target.rs" ]] || die "no target '$target' (have: ${ALL[*]})"
  mkdir -p "corpus/$target" "artifacts/$target"
  log=$(mktemp)
  before=$(ls "artifacts/$target" | wc -l)
  start=$(date +%s)
  # A finding stops libFuzzer with a non-zero status; it is counted below, not fatal here.
  [[ -x "$BIN/$target" ]] || die "$BIN/$target is not built"
  nice -n "$NICE" "$BIN/$target" "corpus/$target" -artifact_prefix="artifacts/$target/" \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT_SECS" \
    -seed="$SEED" -jobs=1 -workers=1 -print_final_stats=1 >"$log" 2>&1 || true
  # With -jobs=1 libFuzzer runs the job in a child that writes fuzz-0.log.
  [[ -f fuzz-0.log ]] && cat fuzz-0.log >>"$log" && rm -f fuzz-0.log
  elapsed=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
  rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  corpus=$(ls "corpus/$target" | wc -l)
  new=$(ls -t "artifacts/$target" | head -n $(( $(ls "artifacts/$target" | wc -l) - before )) 2>/dev/null || true)
  crashes=$(grep -c '^crash-' <<<"$new" || true)
  hangs=$(grep -c '^timeout-' <<<"$new" || true)
  ooms=$(grep -c '^oom-' <<<"$new" || true)
  printf '%-10s %8s %14s %10s %8s %8s %9s %6s %s\n' "$target" "$elapsed" "$execs" "$rate" "$rss" "$corpus" "$crashes" "$hangs" "$ooms"
  if (( crashes + hangs + ooms > 0 )); then
    found=1
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -8 | sed 's/^/    /'
  fi
  rm -f "$log"
done
exit "$found"
