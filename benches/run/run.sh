#!/usr/bin/env bash
# The speed of `stagegate run` with the reference relay, on the release build:
#  1. wall time of the seed manifest: the five delivery scenarios, then all nine at
#     the default time scale and at --time-scale 60 (the old default), side by side;
#  2. a run of COUNT generated candidates (clean scenario): events landed per second
#     (over the drive, and over the landing window: first delivery to last landing),
#     the CPU time per event landed of the harness and of the relay, and the peak
#     memory of both.
#  3. the same at BIG candidates (100,000 by default; BIG=0 skips it), in waves of
#     10,000 (the default `--wave-size`), then again as one wave (`--wave-size 0`),
#     and the harness's peak at BIG over its peak at COUNT for each: the harness's
#     memory must not follow the candidates the way the log does.
# Usage: benches/run/run.sh            (COUNT=10000 BIG=100000 RUNS=5 by default)
#        RUNS=0 skips part 1; BIN=path measures that binary instead of building one
#        (e.g. a build of another commit, side by side in the same sitting).
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-10000}
BIG=${BIG:-100000}
RUNS=${RUNS:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/stagegate
fi
# The conditions beside the figures: cores, load, the binary's version and commit.
echo "== $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; $("$BIN" --version 2>/dev/null || echo "version unknown"), commit $(git rev-parse --short HEAD 2>/dev/null || echo "?")"
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

if [ "$RUNS" -gt 0 ]; then
  echo "== wall time of the seed manifest against the reference relay"
  time_runs "stagegate run (5 delivery scenarios)" "${DELIVERY[@]}"
  time_runs "stagegate run (all 9 scenarios)"
  # Side by side in the same run: the old default clock (the relay's default is 600).
  time_runs "stagegate run (all 9, --time-scale 60)" --time-scale 60
fi

# A run of N generated candidates (clean scenario): events landed per second, the
# judge's time, the CPU per event and the peak RSS of the harness and of the relay. Fails loudly (exit 1,
# the run's last lines) when the gate does not pass.
# Extra arguments follow N (the BIG run again with `--wave-size 0`, as one wave).
large_run() {
  local n=$1 dir="$WORK/big-$1"
  shift
  echo "== $n generated candidates, clean scenario${*:+ ($*)}"
  [ -f "$WORK/dataset-$n.yaml" ] ||
    "$BIN" sandbox generate --count "$n" --seed 7 --out "$WORK/dataset-$n.yaml" > /dev/null
  rm -f "$WORK/relay.peak" "$WORK"/relay.cpu.*
  # The relay is stopped with SIGTERM to its group, so its peak and its CPU time are
  # sampled from /proc: VmHWM, and utime + stime (fields 14 and 15 of stat, in clock
  # ticks) of each relay process, the last reading kept. The relay idles once the
  # scenario has drained, so the last 0.1 s before it stops add nothing. The sampler
  # reads /proc with bash builtins and waits on a pipe that never speaks instead of
  # running `sleep`, and looks for the relay's processes once a second: forking
  # pgrep, awk and sed for each process every 0.1 s took CPU from the two it measures.
  ( peak=0 pids="" tick=0 found=""
    exec {never}<> <(:)
    while ! read -r -t 0.1 -u "$never"; do
      if [ -z "$found" ] || (( ++tick % 10 == 0 )); then
        pids=$(pgrep -f "$BIN relay" || true)
      fi
      for pid in $pids; do
        # Found once a process other than the `sh -c` that starts the relay is seen.
        read -r comm 2> /dev/null < "/proc/$pid/comm" && [ "$comm" != sh ] && found=1
        kb=0
        while read -r key value _; do
          [ "$key" = "VmHWM:" ] && kb=$value && break
        done 2> /dev/null < "/proc/$pid/status" || continue
        [ "$kb" -gt "$peak" ] && peak=$kb && echo "$peak" > "$WORK/relay.peak"
        # The command name may hold spaces in parentheses: count fields after the ")".
        read -r stat 2> /dev/null < "/proc/$pid/stat" || continue
        read -r -a fields <<< "${stat##*) }"
        echo $(( fields[11] + fields[12] )) > "$WORK/relay.cpu.$pid"
      done
    done ) &
  local sampler=$!
  /usr/bin/time -f 'harness_maxrss_kb=%M harness_wall_s=%e harness_cpu_s=%U+%S' -o "$WORK/harness.time" \
    "$BIN" run manifests/release-gate.yaml --dataset "$WORK/dataset-$n.yaml" --scenario clean \
    --out "$dir" "$@" > "$WORK/big.txt" 2>&1 || {
    kill $sampler; echo "the run of $n candidates failed:"; tail -40 "$WORK/big.txt"; exit 1; }
  # How it ran: in waves, or as one (the harness's note; none for a run of one wave).
  grep -m1 '^note:' "$WORK/big.txt" || true
  kill $sampler 2>/dev/null || true
  python3 - "$WORK" "$dir" "$(getconf CLK_TCK)" "$n${1:+ $*}" <<'PY'
import glob, json, os, re, sys
work, run, hz, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
report = json.load(open(f"{run}/report.json"))
harness = open(f"{work}/harness.time").read()
try:
    relay = int(open(f"{work}/relay.peak").read())
except (OSError, ValueError):
    relay = None
t = report["timings"]
s = report["scenarios"][0]
print(f"verdict {report['verdict']}: {s['landed']} of {s['should_land']} events landed, {s['deliveries']} deliveries")
print(f"drive {t['drive_ms'] / 1000:.2f} s -> {t['landed_per_second']:.0f} events landed/s; judge {t['judge_ms']} ms; whole run {t['total_ms'] / 1000:.2f} s")
# The same events over the window in which they land, read from the observation log
# (so any build's log gives it): from the first webhook attempt to the last event
# applied at the ATS. The drive's time above also holds the scenario's marks and the
# 150 ms the ATS must stay quiet after the last landing.
# A run in waves (`--wave-size`) keeps one log per wave: their windows add up.
logs = [f"{run}/observation.jsonl"]
if not os.path.exists(logs[0]):
    logs = sorted(glob.glob(f"{run}/wave-*/observation.jsonl"))
window = 0.0
for path in logs:
    first = last = None
    with open(path) as log:
        for line in log:
            if '"kind":"webhook.attempt"' in line and first is None:
                first = json.loads(line)["elapsed_ms"]
            elif '"kind":"ats.event_applied"' in line:
                last = line
    if first is not None and last is not None:
        window += (json.loads(last)["elapsed_ms"] - first) / 1000
if window > 0:
    waves = f", over {len(logs)} waves" if len(logs) > 1 else ""
    print(f"landing window {window:.2f} s (first delivery to last landing{waves}) -> {s['landed'] / window:.0f} events landed/s")
kb = int(re.search(r"harness_maxrss_kb=(\d+)", harness).group(1))
cpu = re.search(r"harness_cpu_s=([\d.]+)\+([\d.]+)", harness)
cpu_s = float(cpu.group(1)) + float(cpu.group(2))
landed = max(s['landed'], 1)
line = f"CPU per event landed: harness {cpu_s * 1e6 / landed:.0f} us ({cpu_s:.1f} s, the whole run)"
ticks = [int(open(f).read()) for f in glob.glob(f"{work}/relay.cpu.*")]
if ticks:
    relay_s = sum(ticks) / hz
    line += f", relay {relay_s * 1e6 / landed:.0f} us ({relay_s:.1f} s)"
print(line)
print(f"peak RSS: harness {kb / 1024:.1f} MiB" + (f", relay {relay / 1024:.1f} MiB (sampled every 0.1 s)" if relay else ""))
with open(f"{work}/peaks", "a") as peaks:
    peaks.write(f"{label}\t{kb}\n")
PY
  rm -rf "$dir"
}
for n in $COUNT $BIG; do
  if [ "$n" -gt 0 ]; then large_run "$n"; fi
done
# Side by side: the large run as one wave, as every run was before waves.
if [ "$BIG" -gt "$COUNT" ] && [ "$COUNT" -gt 0 ]; then
  large_run "$BIG" --wave-size 0
  # The goal: the harness's peak flat from COUNT to BIG (within 1.2 times).
  awk -F'\t' -v small="$COUNT" -v big="$BIG" '
    { peak[$1] = $2 }
    END { printf "harness peak, %s / %s candidates: %.2f in waves (the default), %.2f as one wave (goal: at most 1.2)\n",
      big, small, peak[big] / peak[small], peak[big " --wave-size 0"] / peak[small] }' "$WORK/peaks"
fi
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
