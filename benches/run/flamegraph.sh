#!/usr/bin/env bash
# Flamegraphs of the harness and of the reference relay during a COUNT-candidate
# `clean` run (the large run of run.sh), one SVG per process, under
# benches/run/flamegraphs/ (NAME-harness.svg, NAME-relay.svg).
# Needs perf (cpu-clock: no hardware counters needed) and inferno
# (`cargo install inferno`). The release build has no debug info: frames come from
# the symbol table and .eh_frame, so inlined functions fold into their callers.
# Usage: benches/run/flamegraph.sh     (COUNT=10000 NAME=after; BIN=path skips the build;
#        KEEP=DIR keeps the folded stacks there, for inferno-diff-folded or a closer look)
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-10000}
NAME=${NAME:-after}
OUT=$PWD/benches/run/flamegraphs
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/stagegate
fi
echo "== $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $("$BIN" --version), commit $(git rev-parse --short HEAD)"
"$BIN" sandbox generate --count "$COUNT" --seed 7 --out "$WORK/dataset.yaml" > /dev/null
# perf follows the harness's children, so one recording holds both processes.
perf record -q -F 999 -e cpu-clock --call-graph dwarf,16384 -o "$WORK/perf.data" -- \
  "$BIN" run manifests/release-gate.yaml --dataset "$WORK/dataset.yaml" --scenario clean \
  --out "$WORK/run" > "$WORK/run.txt" || { echo "the run failed:"; tail -20 "$WORK/run.txt"; exit 1; }
grep -E "^(verdict|scenarios)|clean " "$WORK/run.txt" || true
perf script -i "$WORK/perf.data" -F comm,pid,tid,time,event,ip,sym,dso 2> /dev/null \
  | inferno-collapse-perf --pid > "$WORK/all.folded"
# Each stack starts with THREAD-PID. The harness is the lowest pid (it starts the
# relay through `sh -c`); the relay is the other process with the most samples.
python3 - "$WORK" <<'PY'
import collections, sys
work = sys.argv[1]
by_pid = collections.defaultdict(list)
for line in open(f"{work}/all.folded"):
    stack, n = line.rsplit(" ", 1)
    thread, _, rest = stack.partition(";")
    name, _, pid = thread.rpartition("-")
    by_pid[int(pid)].append((name, rest, int(n)))
harness = min(by_pid)
others = sorted((p for p in by_pid if p != harness and by_pid[p][0][0] != "sh"),
                key=lambda p: -sum(n for *_, n in by_pid[p]))
for label, pid in (("harness", harness), ("relay", others[0])):
    total = sum(n for *_, n in by_pid[pid])
    print(f"{label}: pid {pid}, {total} samples ({total / 999:.1f} s of CPU at 999 Hz)")
    with open(f"{work}/{label}.folded", "w") as out:
        for name, rest, n in by_pid[pid]:
            out.write(f"{name};{rest} {n}\n")
PY
for who in harness relay; do
  # --minwidth drops frames under 0.2 % of the samples: the SVG stays small.
  inferno-flamegraph --minwidth 0.2 --title "stagegate $who, $COUNT-candidate clean run ($NAME)" \
    < "$WORK/$who.folded" > "$OUT/$NAME-$who.svg"
  echo "$OUT/$NAME-$who.svg: $(du -k "$OUT/$NAME-$who.svg" | cut -f1) KiB"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$WORK/$who.folded" "$KEEP/$NAME-$who.folded"; fi
done
