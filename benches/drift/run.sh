#!/usr/bin/env bash
# Throughput and peak memory of `stagegate drift` over a million vendor payloads.
#
#   benches/drift/run.sh
#
# Environment (all optional):
#   COUNT=1000000   payloads to generate (Checkr, Onfido, Greenhouse, Lever, interleaved)
#   SEED=42         generator seed (volatile values are redrawn from it)
#   RUNS=3          runs
#   TARGET=200000   payloads/s the best run must reach, else the script fails
#   BENCH_DIR=target/bench
#
# Steps: cargo build --release; generate the payloads with gen_payloads.py (once per
# COUNT/SEED/generator version); run `drift` against the fixtures' manifest and the
# committed baseline RUNS times; check every run inferred every payload and found no
# drift (the generator draws exactly the baseline's shapes: a finding means a bug,
# and a benchmark of a broken run is meaningless); print payloads/s and peak RSS per
# run with the conditions (cores, load, versions). Exits non-zero when a run errs or
# the best run is below TARGET.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

COUNT=${COUNT:-1000000}
SEED=${SEED:-42}
RUNS=${RUNS:-3}
TARGET=${TARGET:-200000}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
FIXTURES=tests/fixtures/drift

die() { printf '\nrun.sh: FAIL: %s\n' "$*" >&2; exit 1; }
for tool in cargo python3; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not on PATH"
done
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "COUNT must be a positive integer (got '$COUNT')"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
mkdir -p "$BENCH_DIR"

echo "== cargo build --release"
cargo build --release
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/stagegate"
[ -x "$BIN" ] || die "release binary $BIN not found after the build"

GEN="$HERE/gen_payloads.py"
GEN_HASH=$(cat "$GEN" "$FIXTURES"/*.json | sha256sum | cut -c1-10)
PAYLOADS="$BENCH_DIR/drift-n${COUNT}-s${SEED}-g${GEN_HASH}.jsonl"
if [ -s "$PAYLOADS" ]; then
  echo "== payloads: reusing $PAYLOADS"
else
  echo "== payloads: generating $COUNT (seed $SEED) -> $PAYLOADS"
  python3 "$GEN" --count "$COUNT" --seed "$SEED" --out "$PAYLOADS.tmp"
  mv "$PAYLOADS.tmp" "$PAYLOADS"
fi
BYTES=$(stat -c %s "$PAYLOADS")
LINES=$(wc -l < "$PAYLOADS")
[ "$LINES" -eq "$COUNT" ] || die "$PAYLOADS has $LINES lines, expected $COUNT (delete it and rerun)"
AVG=$(awk -v b="$BYTES" -v n="$COUNT" 'BEGIN { printf "%.0f", b / n }')
echo "   $COUNT payloads, $BYTES bytes, average $AVG bytes/payload"

if /usr/bin/time -f %M -o /dev/null true >/dev/null 2>&1; then
  RSS_HOW="GNU time %M"
  timed() { /usr/bin/time -f "%U %S %M" -o "$1" "${@:2}"; }
else
  RSS_HOW="getrusage(RUSAGE_CHILDREN) via python3"
  timed() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write("%.2f %.2f %d\n" % (u.ru_utime, u.ru_stime, u.ru_maxrss))
sys.exit(rc)
PY
  }
fi

RUN_DIR="$BENCH_DIR/drift-runs"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
echo "== warming the page cache ($BYTES bytes)"
cat "$PAYLOADS" >/dev/null
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

for i in $(seq 1 "$RUNS"); do
  base="$RUN_DIR/$i"
  rc=0
  t0=$(date +%s%N)
  timed "$base.rss" "$BIN" drift --manifest "$FIXTURES/vendors.yaml" --baseline "$FIXTURES/baseline.json" \
    --type-field type --type-field action --type-field payload.action --type-field event \
    --format json "$PAYLOADS" >"$base.out" 2>"$base.err" || rc=$?
  t1=$(date +%s%N)
  python3 - "$base.out" "$rc" "$COUNT" <<'PY' || { sed -n 1,20p "$base.err" >&2; die "run $i failed; see $base.out / $base.err"; }
import json, sys
path, rc, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
report = json.load(open(path))
problems = []
if rc != 0:
    problems.append(f"exit code {rc}")
if report["counts"]["inferred"] != count:
    problems.append(f"{report['counts']['inferred']} payloads inferred, expected {count}")
if report["findings"]:
    problems.append(f"{len(report['findings'])} findings on undrifted payloads: {report['findings'][:3]}")
if problems:
    sys.exit("drift: " + "; ".join(problems))
PY
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  read -r user sys rss < <(tail -n 1 "$base.rss")
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  echo "$wall $rss $cpu" >"$base.m"
  echo "== run $i/$RUNS: $wall s wall, $cpu s CPU, $(awk -v n="$COUNT" -v w="$wall" 'BEGIN { printf "%.0f", n / w }') payloads/s, peak RSS $((rss / 1024)) MiB"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

status=0
python3 - "$RUN_DIR" "$RUNS" "$COUNT" "$TARGET" <<'PY' || status=$?
import sys
run_dir, runs, count, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [open(f"{run_dir}/{i}.m").read().split() for i in range(1, runs + 1)]
rates = [count / float(w) for w, _, _ in rows]
rss = [int(k) / 1024 for _, k, _ in rows]
per_cpu = [count / float(c) for _, _, c in rows]
print()
print(f"payloads/s: best {max(rates):,.0f}, range {min(rates):,.0f} – {max(rates):,.0f} over {runs} runs")
print(f"payloads per CPU-second: {min(per_cpu):,.0f} – {max(per_cpu):,.0f} (what the cores did, whatever else ran)")
print(f"peak RSS:   {min(rss):.1f} – {max(rss):.1f} MiB")
ok = max(rates) >= target
print(f"target {target:,} payloads/s: {'MET' if ok else 'NOT MET'}")
sys.exit(0 if ok else 3)
PY
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
echo "load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after"
echo "versions: $("$BIN" --version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo no-git)), $(rustc --version)"
echo "payloads: $PAYLOADS (average $AVG bytes/payload); wall: whole process; peak RSS: $RSS_HOW"
[ "$status" -eq 0 ] || die "below the target of $TARGET payloads/s"
