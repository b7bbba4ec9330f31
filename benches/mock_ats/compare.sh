#!/usr/bin/env bash
# Two builds of the mock ATS side by side in one sitting: one wrk round each of bare
# axum (AFTER's), BEFORE's mock and AFTER's mock, ROUNDS times in turn, each on a fresh
# process, so a shared machine's load falls on all three alike. Compare the ratios
# within a round more than the absolute figures.
#
#   BEFORE=path/to/bench_target AFTER=path/to/bench_target benches/mock_ats/compare.sh
#   (ROUNDS=3 DURATION=10 by default; CONNECTIONS as run.sh)
#
# A commit's build: git worktree add /tmp/before COMMIT, then in it
# `cargo build --release --example bench_target` (target/release/examples/bench_target).
set -euo pipefail
: "${BEFORE:?the bench_target build to compare against}"
: "${AFTER:?the bench_target build to measure}"
# The caller's paths, read before the cd.
BEFORE=$(realpath -- "$BEFORE") AFTER=$(realpath -- "$AFTER")
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
LOG=$(mktemp -t stagegate-compare.XXXXXX)
trap 'rm -f "$LOG"' EXIT
for round in $(seq "$ROUNDS"); do
    declare -A rps=()
    for side in axum BEFORE AFTER; do
        if [[ $side == axum ]]; then bin=$AFTER target=axum; else bin=${!side} target=stagegate; fi
        BIN=$bin TARGETS=$target ROUNDS=1 DURATION=${DURATION:-10} benches/mock_ats/run.sh >"$LOG" 2>&1 || true
        line=$(grep -E "^  $target round 1:" "$LOG") ||
            { cat "$LOG" >&2; echo "compare.sh: the $side round did not run (its output above)" >&2; exit 2; }
        echo "round $round, $side: ${line#*round 1: }"
        rps[$side]=$(awk '{ print $4 }' <<<"$line")
    done
    awk -v r="$round" -v a="${rps[axum]}" -v b="${rps[BEFORE]}" -v f="${rps[AFTER]}" \
        'BEGIN { printf "round %s: BEFORE %.2fx, AFTER %.2fx bare axum; AFTER/BEFORE %.2fx\n", r, b / a, f / a, f / b }'
done
