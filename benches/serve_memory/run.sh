#!/usr/bin/env bash
# Memory of `stagegate serve` holding a large generated dataset: at rest, under a
# loopback read load on the mock ATS, and after full admin dumps.
#
#   benches/serve_memory/run.sh                  # COUNT=100000 DURATION=20 ROUNDS=3 CONNECTIONS=64
#   COUNT=1000000 benches/serve_memory/run.sh
#
# Steps, with the release binary (cargo build --release):
#   1. stagegate sandbox generate --count COUNT --seed 7 --out WORK/dataset.yaml
#   2. stagegate serve manifests/release-gate.yaml --dataset WORK/dataset.yaml
#      --log WORK/serve.jsonl; time until its listing ends ("… and N more")
#   3. VmRSS and VmHWM from /proc/PID/status once started ("after start")
#   4. wrk (WRK_THREADS threads, CONNECTIONS connections, DURATION s), ROUNDS times:
#      GET /v1/candidates/CAND_nnnnnn with the id drawn uniformly from all COUNT
#      candidates (ids.lua), the ATS bearer token, RSS read after each round
#   5. GET /admin/state and GET /admin/candidates once each (every candidate, about
#      26 and 29 MB of JSON for 100,000), RSS read again
#   6. SIGINT (Ctrl-C); serve must exit 0 within 20 s
#
# Gates: RSS after start <= START_LIMIT_MIB (default 200); RSS after the last round
# within max(20 %, 30 MiB) of RSS after the first round (flat under load).
# Exit status: 0 both gates pass, 1 a gate fails, 2 the run is invalid (serve did not
# start or stop cleanly, wrk is missing, or any response was not 2xx).
set -euo pipefail

COUNT=${COUNT:-100000}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
START_LIMIT_MIB=${START_LIMIT_MIB:-200}
MANIFEST=manifests/release-gate.yaml

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/stagegate
WORK=$(mktemp -d -t stagegate-serve-memory.XXXXXX)
SERVE_PID=

# shellcheck source=../lib.sh
source "$ROOT/benches/lib.sh"

cleanup() {
    if [[ -n $SERVE_PID ]] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -KILL "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites ---------------------------------------------------------------
ensure_wrk

echo "building: cargo build --release" >&2
cargo build --release >&2
[[ -x $BIN ]] || die "no binary at $BIN"

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
now() { date +%s.%N; }

# --- the dataset -----------------------------------------------------------------
started=$(now)
"$BIN" sandbox generate --count "$COUNT" --seed 7 --out "$WORK/dataset.yaml" >&2
GENERATE_S=$(awk -v a="$started" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
DATASET_MIB=$(du -m "$WORK/dataset.yaml" | cut -f1)

# --- serve -----------------------------------------------------------------------
echo "nproc $(nproc), load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
started=$(now)
"$BIN" serve "$MANIFEST" --dataset "$WORK/dataset.yaml" --log "$WORK/serve.jsonl" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" </dev/null &
SERVE_PID=$!
for _ in $(seq 600); do
    grep -q '^  … and ' "$WORK/serve.out" 2>/dev/null && break
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.1
done
grep -q '^  … and ' "$WORK/serve.out" || { cat "$WORK/serve.err" >&2; die "serve did not start within 60 s"; }
START_S=$(awk -v a="$started" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
ATS_URL=$(awk -F= '/^export STAGEGATE_ATS_URL=/ { print $2 }' "$WORK/serve.out")
TOKEN=$(awk -F= '/^export STAGEGATE_ATS_TOKEN=/ { print $2 }' "$WORK/serve.out")
ADMIN=$(awk '/^  admin API / { print $3 }' "$WORK/serve.out")
[[ -n $ATS_URL && -n $TOKEN && -n $ADMIN ]] || { cat "$WORK/serve.out" >&2; die "serve printed no ATS URL, token or admin URL"; }
RSS_START=$(rss_mib "$SERVE_PID")
HWM_START=$(hwm_mib "$SERVE_PID")
echo "  serve up in ${START_S} s: RSS $RSS_START MiB (peak $HWM_START MiB)" >&2

# One request first: a wrong token or id format must fail here, not as a benchmark of 4xx.
last_id=$(printf 'CAND_%06d' "$COUNT")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$ATS_URL/v1/candidates/$last_id" || echo none)
[[ $code == 200 ]] || die "the mock ATS answers $code for $last_id"

cat >"$WORK/ids.lua" <<EOF
local n = $COUNT
local counter = 0
setup = function(thread)
    counter = counter + 1
    thread:set("seed", counter)
end
init = function() math.randomseed(seed) end
request = function()
    return wrk.format(nil, string.format("/v1/candidates/CAND_%06d", math.random(1, n)))
end
EOF

declare -A RPS REQS RSS
TOTAL=0
for round in $(seq "$ROUNDS"); do
    report=$WORK/wrk.$round
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/ids.lua" \
        -H "Authorization: Bearer $TOKEN" "$ATS_URL" >"$report"
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$report")
    reqs=$(awk '/requests in/ { print $1; exit }' "$report")
    non2xx=$(awk -F: '/Non-2xx or 3xx responses/ { gsub(/ /, "", $2); print $2 }' "$report")
    [[ -n $rps ]] || { cat "$report" >&2; die "round $round: no Requests/sec in wrk's output"; }
    if [[ -n $non2xx && $non2xx != 0 ]]; then
        cat "$report" >&2
        die "round $round: $non2xx non-2xx/3xx responses — the run is invalid"
    fi
    RPS[$round]=$rps
    REQS[$round]=$reqs
    RSS[$round]=$(rss_mib "$SERVE_PID")
    TOTAL=$(( TOTAL + reqs ))
    echo "  round $round: $rps req/s ($reqs requests), RSS ${RSS[$round]} MiB" >&2
done

state_bytes=$(curl -s -o /dev/null -w '%{size_download}' "$ADMIN/admin/state")
list_bytes=$(curl -s -o /dev/null -w '%{size_download}' "$ADMIN/admin/candidates")
RSS_DUMPS=$(rss_mib "$SERVE_PID")
HWM_END=$(hwm_mib "$SERVE_PID")
LOG_MIB=$(du -m "$WORK/serve.jsonl" | cut -f1)

kill -INT "$SERVE_PID"
stopped=
for _ in $(seq 200); do
    kill -0 "$SERVE_PID" 2>/dev/null || { stopped=1; break; }
    sleep 0.1
done
[[ -n $stopped ]] || die "serve did not stop within 20 s of SIGINT"
serve_status=0
wait "$SERVE_PID" || serve_status=$?
SERVE_PID=
[[ $serve_status == 0 ]] || { cat "$WORK/serve.err" >&2; die "serve exited $serve_status after SIGINT"; }
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------------
echo
echo "stagegate serve $MANIFEST --dataset <$COUNT candidates, ${DATASET_MIB} MB, generated in ${GENERATE_S} s>"
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s x $ROUNDS rounds, GET /v1/candidates/{random of $COUNT} (bearer token)"
echo "nproc $(nproc); load average after: $LOAD_AFTER"
echo
printf '%-34s %10s\n' "stage" "RSS MiB"
printf '%-34s %10s\n' "after start (${START_S} s)" "$RSS_START"
for round in $(seq "$ROUNDS"); do
    printf '%-34s %10s\n' "after round $round (${RPS[$round]} req/s)" "${RSS[$round]}"
done
printf '%-34s %10s\n' "after full /admin dumps" "$RSS_DUMPS"
printf '%-34s %10s\n' "peak (VmHWM) at start" "$HWM_START"
printf '%-34s %10s\n' "peak (VmHWM) at the end" "$HWM_END"
echo "(RSS from /proc/PID/status VmRSS; dumps: /admin/state $state_bytes bytes, /admin/candidates $list_bytes bytes)"
awk -v n="$TOTAL" -v l="$LOG_MIB" 'BEGIN { printf "%.2f M requests; the observation log on disk: %d MiB\n", n / 1e6, l }'
echo

status=0
verdict=$(awk -v r="$RSS_START" -v lim="$START_LIMIT_MIB" 'BEGIN { printf "%s", (r <= lim ? "PASS" : "FAIL") }')
echo "RSS after start: $RSS_START MiB  (<= $START_LIMIT_MIB MiB: $verdict)"
[[ $verdict == PASS ]] || status=1
if (( ROUNDS >= 2 )); then
    verdict=$(awk -v first="${RSS[1]}" -v last="${RSS[$ROUNDS]}" \
        'BEGIN { d = last - first; lim = (first * 0.2 > 30 ? first * 0.2 : 30);
                 printf "%+.1f MiB (limit %.1f) %s", d, lim, (d <= lim ? "PASS" : "FAIL") }')
    echo "RSS, round 1 -> round $ROUNDS: ${verdict% *}  (flat: ${verdict##* })"
    [[ ${verdict##* } == PASS ]] || status=1
fi
exit "$status"
