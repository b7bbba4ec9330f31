#!/usr/bin/env bash
# Throughput of `stagegate check` vs ajv on the same JSON Lines file, side by side.
#
#   benches/check/run.sh
#
# Environment (all optional):
#   COUNT=1000000   payloads to generate
#   SEED=42         generator seed
#   RUNS=3          runs per tool (interleaved: stagegate, ajv, stagegate, ajv, ...)
#   MANIFEST=manifests/release-gate.yaml
#   BENCH_DIR=target/bench   where the payload file and schemas go
#
# Steps: cargo build --release; generate the payloads (once per COUNT/SEED/generator
# version); write the contract schemas with the release binary; npm ci for ajv when
# node_modules is missing; run both tools RUNS times; check every run judged every
# payload valid (a benchmark on rejected data is meaningless: any violation, any
# invalid payload, a wrong count or a non-zero exit fails the script); print a table
# with the best wall time of each tool, payloads/s, peak RSS, and the ratio.
#
# Wall time is measured around the whole process (start-up, manifest/schema
# compilation, reading, parsing, validating) for both tools. Peak RSS comes from
# GNU time (%M); without it, from getrusage(RUSAGE_CHILDREN) in a Python wrapper.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

COUNT=${COUNT:-1000000}
SEED=${SEED:-42}
RUNS=${RUNS:-3}
MANIFEST=${MANIFEST:-manifests/release-gate.yaml}
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
THRESHOLD=200000

die() { printf '\nrun.sh: FAIL: %s\n' "$*" >&2; exit 1; }
for tool in cargo python3 node npm; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not on PATH"
done
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "COUNT must be a positive integer (got '$COUNT')"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
[ -f "$MANIFEST" ] || die "manifest $MANIFEST not found"
mkdir -p "$BENCH_DIR"

# --- 1. build ------------------------------------------------------------------------
echo "== cargo build --release"
cargo build --release
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/stagegate"
[ -x "$BIN" ] || die "release binary $BIN not found after the build"

# --- 2. payloads -----------------------------------------------------------------------
GEN="$HERE/gen_payloads.py"
GEN_HASH=$(sha256sum "$GEN" | cut -c1-10)
PAYLOADS="$BENCH_DIR/payloads-n${COUNT}-s${SEED}-g${GEN_HASH}.jsonl"
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
AVG=$(awk -v b="$BYTES" -v n="$COUNT" 'BEGIN { printf "%.1f", b / n }')
echo "   $COUNT payloads, $BYTES bytes, average $AVG bytes/payload"

# --- 3. schemas ------------------------------------------------------------------------
SCHEMAS="$BENCH_DIR/schemas"
rm -rf "$SCHEMAS"
echo "== stagegate schema --manifest $MANIFEST --out $SCHEMAS"
"$BIN" schema --manifest "$MANIFEST" --out "$SCHEMAS" >/dev/null
ls "$SCHEMAS"/*.schema.json >/dev/null 2>&1 || die "stagegate schema wrote no *.schema.json to $SCHEMAS"

# --- 4. ajv ------------------------------------------------------------------------------
AJV="$HERE/ajv"
if [ ! -d "$AJV/node_modules" ]; then
  echo "== npm ci ($AJV)"
  (cd "$AJV" && npm ci --no-audit --no-fund)
fi
AJV_VERSION=$(node -p "require('$AJV/node_modules/ajv/package.json').version")

# --- 5. measure --------------------------------------------------------------------------
if /usr/bin/time -f %M -o /dev/null true >/dev/null 2>&1; then
  RSS_HOW="GNU time %M"
  timed() { /usr/bin/time -f %M -o "$1" "${@:2}"; }
else
  RSS_HOW="getrusage(RUSAGE_CHILDREN) via python3 (no GNU time)"
  timed() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
try:
    with open(sys.argv[1], "w") as f:
        f.write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
except OSError:
    pass
sys.exit(rc)
PY
  }
fi

RUN_DIR="$BENCH_DIR/runs"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"

# run TOOL I CMD... : runs once, records "wall_seconds rss_kib" in $RUN_DIR/TOOL.I.m
run() {
  local tool=$1 i=$2; shift 2
  local base="$RUN_DIR/$tool.$i" rc=0 t0 t1
  t0=$(date +%s%N)
  timed "$base.rss" "$@" >"$base.out" 2>"$base.err" || rc=$?
  t1=$(date +%s%N)
  echo "$rc" >"$base.rc"
  local rss
  rss=$(tail -n 1 "$base.rss" 2>/dev/null | tr -dc '0-9')
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }') ${rss:-NA}" >"$base.m"
}

verify_stagegate() {
  local base="$RUN_DIR/stagegate.$1"
  python3 - "$base.out" "$(cat "$base.rc")" "$COUNT" <<'PY' || { sed -n 1,20p "$base.err" >&2; die "stagegate run $1 did not pass the generated (valid) data; see $base.out / $base.err"; }
import json, sys
path, rc, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    with open(path) as f:
        report = json.load(f)
except Exception as err:
    sys.exit(f"stagegate: cannot read its JSON report {path}: {err}")
violations = report.get("violations")
problems = []
if rc != 0:
    problems.append(f"exit code {rc}")
if report.get("verdict") != "pass":
    problems.append(f"verdict {report.get('verdict')!r}, expected 'pass'")
if not isinstance(violations, list) or violations:
    problems.append(f"{len(violations) if isinstance(violations, list) else violations!r} violations, expected 0")
if report.get("payloads") != count:
    problems.append(f"{report.get('payloads')} payloads judged, expected {count}")
if problems:
    print("stagegate: " + "; ".join(problems), file=sys.stderr)
    for v in (violations or [])[:5]:
        print("  " + json.dumps(v), file=sys.stderr)
    sys.exit(1)
PY
}

verify_ajv() {
  local base="$RUN_DIR/ajv.$1"
  python3 - "$base.out" "$(cat "$base.rc")" "$COUNT" <<'PY' || { sed -n 1,20p "$base.err" >&2; die "ajv run $1 did not accept the generated (valid) data; see $base.out / $base.err"; }
import json, sys
path, rc, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    with open(path) as f:
        result = json.loads(f.read().strip().splitlines()[-1])
except Exception as err:
    sys.exit(f"ajv: cannot read its result {path}: {err}")
problems = []
if rc != 0:
    problems.append(f"exit code {rc}")
if result.get("invalid") != 0:
    problems.append(f"{result.get('invalid')} invalid payloads, expected 0")
if result.get("payloads") != count:
    problems.append(f"{result.get('payloads')} payloads validated, expected {count}")
if problems:
    sys.exit("ajv: " + "; ".join(problems))
PY
}

echo "== warming the page cache ($BYTES bytes)"
cat "$PAYLOADS" >/dev/null

for i in $(seq 1 "$RUNS"); do
  echo "== run $i/$RUNS"
  run stagegate "$i" "$BIN" check --manifest "$MANIFEST" --format json "$PAYLOADS"
  verify_stagegate "$i"
  echo "   stagegate: $(cut -d' ' -f1 "$RUN_DIR/stagegate.$i.m") s"
  run ajv "$i" node "$AJV/validate.mjs" "$SCHEMAS" "$PAYLOADS"
  verify_ajv "$i"
  echo "   ajv:       $(cut -d' ' -f1 "$RUN_DIR/ajv.$i.m") s"
done

# --- 6. report ---------------------------------------------------------------------------
python3 - "$RUN_DIR" "$RUNS" "$COUNT" "$THRESHOLD" <<'PY'
import json, sys
run_dir, runs, count, threshold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = {}
for tool in ("stagegate", "ajv"):
    walls, rss = [], []
    for i in range(1, runs + 1):
        wall, kib = open(f"{run_dir}/{tool}.{i}.m").read().split()
        walls.append(float(wall))
        if kib != "NA":
            rss.append(int(kib))
    best = min(walls)
    rows[tool] = dict(best=best, rate=count / best, walls=walls, rss=max(rss) / 1024 if rss else None)
ajv_inner = [json.loads(open(f"{run_dir}/ajv.{i}.out").read().strip().splitlines()[-1]) for i in range(1, runs + 1)]

print()
print(f"{'tool':<10} {'payloads':>10} {'best wall s':>12} {'payloads/s':>12} {'peak RSS MiB':>13}   runs (s)")
for tool, r in rows.items():
    rss = f"{r['rss']:.1f}" if r["rss"] is not None else "n/a"
    runs_s = ", ".join(f"{w:.3f}" for w in r["walls"])
    print(f"{tool:<10} {count:>10} {r['best']:>12.3f} {r['rate']:>12,.0f} {rss:>13}   {runs_s}")
ratio = rows["stagegate"]["rate"] / rows["ajv"]["rate"]
print(f"\nratio stagegate/ajv (payloads/s): {ratio:.2f}x")
best_inner = max(ajv_inner, key=lambda r: r["payloads_per_s"])
print(f"ajv in-process (read+parse+validate, no start-up/compile): best {best_inner['payloads_per_s']:,} payloads/s "
      f"({best_inner['seconds']:.3f} s, compile {best_inner['compile_seconds']:.3f} s)")
s = rows["stagegate"]["rate"]
print(f"stagegate >= {threshold:,} payloads/s: {'YES' if s >= threshold else 'NO'} ({s:,.0f})")
PY

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
echo "versions: $("$BIN" --version 2>/dev/null || echo stagegate) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo no-git)$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ', src/ modified')), $(rustc --version), node $(node --version), ajv $AJV_VERSION"
echo "payloads: $PAYLOADS (average $AVG bytes/payload)"
echo "peak RSS: $RSS_HOW; wall: whole process, best of $RUNS"
