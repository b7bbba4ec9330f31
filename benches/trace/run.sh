#!/usr/bin/env bash
# `stagegate trace` over a large observation log, on the release build: a valid
# hash-chained log of RECORDS records (examples/synth_log.rs, shaped like a run's:
# 8 records per candidate) is traced for one candidate in the middle, RUNS times, with
# wall time and peak RSS from /usr/bin/time; `stagegate log verify` over the same log
# is timed once for comparison. Prints the conditions beside the numbers.
# Usage: benches/trace/run.sh          (RECORDS=1000000 RUNS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
RECORDS=${RECORDS:-1000000}
RUNS=${RUNS:-5}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[ -x /usr/bin/time ] || { echo "run.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }

cargo build --release --quiet --bin stagegate --example synth_log
BIN=$PWD/target/release/stagegate
LOG=$WORK/observation.jsonl
target/release/examples/synth_log "$RECORDS" "$LOG"
CANDIDATE=$(printf 'CAND_%07d' $(( RECORDS / 8 / 2 )))

echo "== conditions"
echo "cores: $(nproc), load average: $(cut -d' ' -f1-3 /proc/loadavg), $(rustc --version)"
echo "log: $RECORDS records, $(du -h "$LOG" | cut -f1) on disk; tracing $CANDIDATE"

echo "== stagegate trace LOG --candidate $CANDIDATE --format json ($RUNS runs)"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f '%e %M' -o "$WORK/time.$i" "$BIN" trace "$LOG" --candidate "$CANDIDATE" --format json > "$WORK/trace.json"
done
python3 - "$WORK" "$RUNS" "$CANDIDATE" <<'PY'
import json, sys
work, runs, candidate = sys.argv[1], int(sys.argv[2]), sys.argv[3]
trace = json.load(open(f"{work}/trace.json"))
assert trace["chain"]["intact"], trace["chain"]
assert trace["records"] and all(r["candidate"] == candidate for r in trace["records"]), "the candidate's records"
rows = [tuple(map(float, open(f"{work}/time.{i}").read().split())) for i in range(1, runs + 1)]
wall = sorted(r[0] for r in rows)
rss = sorted(r[1] / 1024 for r in rows)
print(f"found {len(trace['records'])} records of {trace['chain']['records']}, chain intact")
print(f"wall time: best {wall[0]:.2f} s, median {wall[len(wall) // 2]:.2f} s, worst {wall[-1]:.2f} s")
print(f"peak RSS:  best {rss[0]:.1f} MiB, median {rss[len(rss) // 2]:.1f} MiB, worst {rss[-1]:.1f} MiB")
PY
echo "== stagegate log verify LOG (once, for comparison)"
/usr/bin/time -f 'wall time %e s, peak RSS %M KiB' "$BIN" log verify "$LOG"
