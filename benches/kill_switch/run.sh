#!/usr/bin/env bash
# How the two kill switches behave under the gate's fault scenarios: for the reference
# relay and the Python example (examples/python-integration/), over seeds 1..SEEDS,
# per fault window, the ATS calls before the first `tripped` notification, when it
# came, and the calls per second after it (probes). The same counting as
# `kill_switch.trips` (see trip_calls.py). All nine scenarios, on the dev build (the
# one `cargo test` makes: call counts are logic, not speed; PROFILE=release for the other).
# Usage: benches/kill_switch/run.sh            (SEEDS=3 by default; needs cargo, python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

PROFILE=${PROFILE:-dev}
cargo build --profile "$PROFILE" --quiet
BIN=$PWD/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/stagegate
echo "conditions: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(python3 --version), $("$BIN" --version)"

for who in relay python; do
  for seed in $(seq "$SEEDS"); do
    args=(run manifests/release-gate.yaml --seed "$seed" --out "$WORK/$who-$seed")
    [ "$who" = python ] && args+=(--sut-cmd 'python3 examples/python-integration/integration.py')
    echo "== $who, seed $seed"
    "$BIN" "${args[@]}" > "$WORK/$who-$seed.txt" || { cat "$WORK/$who-$seed.txt"; exit 1; }
    grep '^verdict' "$WORK/$who-$seed.txt"
    python3 benches/kill_switch/trip_calls.py "$WORK/$who-$seed/observation.jsonl"
  done
done
