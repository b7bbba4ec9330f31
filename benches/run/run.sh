#!/usr/bin/env bash
# The speed of `stagegate run` with the reference relay, on the release build:
#  1. wall time of the seed manifest: the five delivery scenarios, then all nine;
#  2. a run of COUNT generated candidates (clean scenario): events landed per second
#     and the peak memory of the harness and of the relay.
# Usage: benches/run/run.sh            (COUNT=10000 RUNS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-10000}
RUNS=${RUNS:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet
BIN=$PWD/target/release/stagegate
DELIVERY=(--scenario clean --scenario duplicates --scenario out-of-order --scenario signatures --scenario canary)

ms() { date +%s%3N; }
time_runs() { # label, args…
  local label=$1; shift
  local times=()
  for i in $(seq "$RUNS"); do
    local t0; t0=$(ms)
    "$BIN" run manifests/release-gate.yaml --seed "$i" "$@" > "$WORK/out.txt" || {
      echo "the gate failed on seed $i:"; cat "$WORK/out.txt"; exit 1; }
    times+=($(( $(ms) - t0 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
    { t[NR] = $1 } END { printf "%-44s best %6.2f s  median %6.2f s  worst %6.2f s  (%d runs)\n",
      label, t[1] / 1000, t[int((NR + 1) / 2)] / 1000, t[NR] / 1000, NR }'
}

echo "== wall time of the seed manifest against the reference relay"
time_runs "stagegate run (5 delivery scenarios)" "${DELIVERY[@]}"
time_runs "stagegate run (all 9 scenarios)"

echo "== $COUNT generated candidates, clean scenario"
"$BIN" sandbox generate --count "$COUNT" --seed 7 --out "$WORK/dataset.yaml" > /dev/null
# The relay is stopped with SIGTERM to its group, so its peak is sampled from /proc.
( peak=0
  while sleep 0.1; do
    for pid in $(pgrep -f "$BIN relay" || true); do
      kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${kb:-0}" -gt "$peak" ] && peak=$kb && echo "$peak" > "$WORK/relay.peak"
    done
  done ) &
SAMPLER=$!
/usr/bin/time -f 'harness_maxrss_kb=%M harness_wall_s=%e' -o "$WORK/harness.time" \
  "$BIN" run manifests/release-gate.yaml --dataset "$WORK/dataset.yaml" --scenario clean \
  --out "$WORK/big" > "$WORK/big.txt" || {
  kill $SAMPLER; echo "the large run failed:"; tail -40 "$WORK/big.txt"; exit 1; }
kill $SAMPLER 2>/dev/null || true
python3 - "$WORK" <<'PY'
import json, re, sys
work = sys.argv[1]
report = json.load(open(f"{work}/big/report.json"))
harness = open(f"{work}/harness.time").read()
try:
    relay = int(open(f"{work}/relay.peak").read())
except (OSError, ValueError):
    relay = None
t = report["timings"]
s = report["scenarios"][0]
print(f"verdict {report['verdict']}: {s['landed']} of {s['should_land']} events landed, {s['deliveries']} deliveries")
print(f"drive {t['drive_ms'] / 1000:.2f} s -> {t['landed_per_second']:.0f} events landed/s; judge {t['judge_ms']} ms; whole run {t['total_ms'] / 1000:.2f} s")
kb = int(re.search(r"harness_maxrss_kb=(\d+)", harness).group(1))
print(f"peak RSS: harness {kb / 1024:.1f} MiB" + (f", relay {relay / 1024:.1f} MiB (sampled every 0.1 s)" if relay else ""))
PY
