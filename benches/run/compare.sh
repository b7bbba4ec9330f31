#!/usr/bin/env bash
# Two builds side by side in one sitting: the large runs of run.sh, alternating
# BEFORE and AFTER, ROUNDS times, so a shared machine's load falls on both alike.
# Compare the ratios within a round more than the absolute figures.
# Usage: BEFORE=path/to/stagegate AFTER=path/to/stagegate benches/run/compare.sh
#        (ROUNDS=3 COUNT=10000 BIG=0 by default; BIG=100000 adds the large run)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${BEFORE:?the binary to compare against, e.g. a build of main}"
: "${AFTER:?the binary to measure}"
ROUNDS=${ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
  for side in BEFORE AFTER; do
    echo "## round $round, $side (${!side})"
    BIN=${!side} RUNS=0 COUNT=${COUNT:-10000} BIG=${BIG:-0} benches/run/run.sh \
      | grep -E "load average|landed/s|landing window|CPU per event|peak RSS|verdict"
  done
done
