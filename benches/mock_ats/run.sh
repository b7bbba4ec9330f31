#!/usr/bin/env bash
# Loopback load benchmark of the mock ATS, side by side with wiremock-rs and a bare
# axum route answering the same route and body (examples/bench_target.rs).
#
#   benches/mock_ats/run.sh                      # DURATION=10 ROUNDS=3 CONNECTIONS=64
#   DURATION=30 ROUNDS=5 benches/mock_ats/run.sh
#   BIN=path/to/bench_target benches/mock_ats/run.sh   # another build, not built here
#
# For each target (axum, stagegate, wiremock, in that order): start it, run wrk
# (2 threads, CONNECTIONS connections, DURATION seconds) ROUNDS times back to back,
# read requests/s from wrk, the target's RSS from /proc/PID/status before the first
# round and after each one, and the CPU time the target used per request (utime +
# stime from /proc/PID/stat over the round; on a shared machine this moves far less
# than requests/s, which depend on what else runs), then stop it.
#
# Gates: stagegate's best req/s >= 2 x wiremock's and >= 0.8 x bare axum's (the same
# run); stagegate's RSS after the last round within max(20 %, 30 MiB) of its RSS
# after the first round.
# Exit status: 0 both gates pass, 1 a gate fails, 2 the run is invalid (a target did
# not start, wrk is missing, or any response was not 2xx/3xx).
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
TARGETS=${TARGETS:-"axum stagegate wiremock"}
TOKEN=${TOKEN:-bench_0123456789abcdef}
ROUTE=/v1/candidates/CAND_canary_001

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# A BIN given is the caller's path, read before the cd below.
BUILD=${BIN:+no}
[[ -z ${BIN:-} ]] || BIN=$(realpath -- "$BIN")
cd "$ROOT"
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_target}
WORK=$(mktemp -d -t stagegate-bench.XXXXXX)
TARGET_PID=

# shellcheck source=../lib.sh
source "$ROOT/benches/lib.sh"

cleanup() {
    if [[ -n $TARGET_PID ]] && kill -0 "$TARGET_PID" 2>/dev/null; then
        kill -TERM "$TARGET_PID" 2>/dev/null || true
        wait "$TARGET_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites ---------------------------------------------------------------
ensure_wrk

if [[ -z $BUILD ]]; then
    echo "building: cargo build --release --example bench_target" >&2
    cargo build --release --example bench_target >&2
fi
[[ -f $BIN && -x $BIN ]] || die "no binary at $BIN"

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

start_target() { # target -> sets TARGET_PID, URL
    local target=$1 out=$WORK/$1.out
    "$BIN" --target "$target" --token "$TOKEN" >"$out" 2>"$WORK/$target.err" </dev/null &
    TARGET_PID=$!
    URL=
    for _ in $(seq 100); do
        URL=$(awk '/^listening /{ print $2; exit }' "$out")
        [[ -n $URL ]] && break
        kill -0 "$TARGET_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $URL ]] || { cat "$WORK/$target.err" >&2; die "$target did not start"; }
}

stop_target() {
    kill -TERM "$TARGET_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$TARGET_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$TARGET_PID" 2>/dev/null || true
    wait "$TARGET_PID" 2>/dev/null || true
    TARGET_PID=
}

declare -A RPS REQS RSS BEST RSS0 ERRS CPU

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "nproc $(nproc), load average before: $LOAD_BEFORE" >&2
for target in $TARGETS; do
    start_target "$target"
    # One request first: a wrong token or route must fail here, not as a benchmark of 4xx.
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$URL$ROUTE" 2>/dev/null || echo "none")
    [[ $code == 200 || $code == none ]] || die "$target answers $code to the probe request"
    RSS0[$target]=$(rss_mib "$TARGET_PID")
    BEST[$target]=0
    ERRS[$target]=0
    for round in $(seq "$ROUNDS"); do
        report=$WORK/$target.$round.wrk
        ticks0=$(cpu_ticks "$TARGET_PID")
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
            -H "Authorization: Bearer $TOKEN" "$URL$ROUTE" >"$report"
        rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$report")
        reqs=$(awk '/requests in/ { print $1; exit }' "$report")
        non2xx=$(awk -F: '/Non-2xx or 3xx responses/ { gsub(/ /, "", $2); print $2 }' "$report")
        socket=$(awk '/Socket errors/ { sub(/^ *Socket errors: */, ""); print }' "$report")
        [[ -n $rps ]] || { cat "$report" >&2; die "$target round $round: no Requests/sec in wrk's output"; }
        if [[ -n $non2xx && $non2xx != 0 ]]; then
            cat "$report" >&2
            die "$target round $round: $non2xx non-2xx/3xx responses — the benchmark is invalid"
        fi
        [[ -z $socket ]] || { echo "warning: $target round $round: socket errors: $socket" >&2; ERRS[$target]=1; }
        RPS[$target.$round]=$rps
        REQS[$target.$round]=$reqs
        CPU[$target.$round]=$(awk -v a="$ticks0" -v b="$(cpu_ticks "$TARGET_PID")" -v n="$reqs" -v hz="$TICKS" \
            'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
        RSS[$target.$round]=$(rss_mib "$TARGET_PID")
        (( rps > BEST[$target] )) && BEST[$target]=$rps
        echo "  $target round $round: $rps req/s ($reqs requests), ${CPU[$target.$round]} µs CPU/request, RSS ${RSS[$target.$round]} MiB, load $(cut -d' ' -f1 /proc/loadavg)" >&2
    done
    stop_target
    sed "s/^/  [$target] /" "$WORK/$target.err" >&2
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------------
echo
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s x $ROUNDS rounds, GET $ROUTE (bearer token)"
echo "nproc $(nproc); load average before: $LOAD_BEFORE, after: $LOAD_AFTER; targets: 2 tokio workers each"
echo "$(rustc --version 2>/dev/null); $(uname -sr); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
echo
header="target     "
for round in $(seq "$ROUNDS"); do header+=$(printf ' %10s' "r$round req/s"); done
header+=$(printf ' %10s %9s' "best" "RSS start")
for round in $(seq "$ROUNDS"); do header+=$(printf ' %9s' "RSS r$round"); done
echo "$header"
for target in $TARGETS; do
    line=$(printf '%-11s' "$target")
    for round in $(seq "$ROUNDS"); do line+=$(printf ' %10s' "${RPS[$target.$round]}"); done
    line+=$(printf ' %10s %9s' "${BEST[$target]}" "${RSS0[$target]}")
    for round in $(seq "$ROUNDS"); do line+=$(printf ' %9s' "${RSS[$target.$round]}"); done
    echo "$line"
done
echo "(req/s from wrk; RSS in MiB from /proc/PID/status VmRSS)"
echo
header="target     "
for round in $(seq "$ROUNDS"); do header+=$(printf ' %10s' "r$round µs"); done
echo "$header"
for target in $TARGETS; do
    line=$(printf '%-11s' "$target")
    for round in $(seq "$ROUNDS"); do line+=$(printf ' %10s' "${CPU[$target.$round]}"); done
    echo "$line"
done
echo "(the target's CPU time per request, user + system, from /proc/PID/stat)"
echo

status=0
has() { [[ " $TARGETS " == *" $1 "* ]]; }
if has stagegate && has wiremock; then
    verdict=$(awk -v s="${BEST[stagegate]}" -v w="${BEST[wiremock]}" \
        'BEGIN { r = s / w; printf "%.2f %s", r, (r >= 2 ? "PASS" : "FAIL") }')
    echo "stagegate / wiremock (best req/s): ${verdict% *}x  (>= 2x: ${verdict#* })"
    [[ ${verdict#* } == PASS ]] || status=1
fi
if has axum && has stagegate; then
    verdict=$(awk -v s="${BEST[stagegate]}" -v a="${BEST[axum]}" \
        'BEGIN { r = s / a; printf "%.2f %s", r, (r >= 0.8 ? "PASS" : "FAIL") }')
    echo "stagegate / bare axum (best req/s): ${verdict% *}x  (>= 0.8x: ${verdict#* })"
    [[ ${verdict#* } == PASS ]] || status=1
fi
if has stagegate && (( ROUNDS >= 2 )); then
    verdict=$(awk -v first="${RSS[stagegate.1]}" -v last="${RSS[stagegate.$ROUNDS]}" \
        'BEGIN { d = last - first; lim = (first * 0.2 > 30 ? first * 0.2 : 30);
                 printf "%+.1f MiB (limit %.1f) %s", d, lim, (d <= lim ? "PASS" : "FAIL") }')
    echo "stagegate RSS, round 1 -> round $ROUNDS: ${verdict% *}  (flat: ${verdict##* })"
    [[ ${verdict##* } == PASS ]] || status=1
fi
for target in $TARGETS; do
    total=0
    for round in $(seq "$ROUNDS"); do total=$(( total + REQS[$target.$round] )); done
    awk -v t="$target" -v s="${RSS0[$target]}" -v e="${RSS[$target.$ROUNDS]}" -v n="$total" \
        'BEGIN { printf "%-10s RSS growth over %.2f M requests: %+.1f MiB (%.1f MiB per million requests)\n",
                 t, n / 1e6, e - s, (e - s) / (n / 1e6) }'
done
for target in $TARGETS; do
    (( ERRS[$target] == 0 )) || echo "note: $target had wrk socket errors (see warnings above)"
done
exit "$status"
