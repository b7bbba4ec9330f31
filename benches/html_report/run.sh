#!/usr/bin/env bash
# The HTML report at COUNT candidates, on the release build: a generated dataset
# (`stagegate sandbox generate --count COUNT --seed 7`) driven through the `clean`
# scenario with `--report html=…`; prints the page's size (total and per candidate),
# the run's time with and without the page (so the cost of building it shows), and,
# when Chromium is installed, how long headless Chromium takes to load and render the
# page opened on one candidate's timeline (the DOM is checked to hold it).
# Usage: benches/html_report/run.sh     (COUNT=10000 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-10000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet --bin stagegate
BIN=$PWD/target/release/stagegate
echo "== conditions"
echo "cores: $(nproc), load average: $(cut -d' ' -f1-3 /proc/loadavg), $(rustc --version)"
"$BIN" sandbox generate --count "$COUNT" --seed 7 --out "$WORK/dataset.yaml"

ms() { date +%s%3N; }
t0=$(ms)
"$BIN" run manifests/release-gate.yaml --dataset "$WORK/dataset.yaml" --scenario clean \
  --drain-deadline 600 --report "html=$WORK/report.html" > "$WORK/run.txt" || { tail -20 "$WORK/run.txt"; exit 1; }
with=$(( $(ms) - t0 ))
t0=$(ms)
"$BIN" run manifests/release-gate.yaml --dataset "$WORK/dataset.yaml" --scenario clean \
  --drain-deadline 600 > "$WORK/run2.txt" || { tail -20 "$WORK/run2.txt"; exit 1; }
without=$(( $(ms) - t0 ))
bytes=$(stat -c %s "$WORK/report.html")
candidates=$(python3 - "$WORK/report.html" <<'PY'
import json, sys
page = open(sys.argv[1]).read()
start = page.index('application/json">') + len('application/json">')
data = json.loads(page[start:page.index("</script>", start)])
print(len(data["audit"]["candidates"]))
PY
)
echo "== the page"
echo "candidates: $candidates; size: $bytes bytes ($(awk -v b="$bytes" 'BEGIN{printf "%.1f MiB", b/1048576}')), $(( bytes / candidates )) bytes per candidate"
echo "run with --report html: $(awk -v t="$with" 'BEGIN{printf "%.1f s", t/1000}'), without: $(awk -v t="$without" 'BEGIN{printf "%.1f s", t/1000}')"

BROWSER=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -n "$BROWSER" ]; then
  ID=$(printf 'CAND_%06d_cl' $(( COUNT / 2 )))
  t0=$(ms)
  "$BROWSER" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/profile" --dump-dom "file://$WORK/report.html#candidate=$ID" 2>/dev/null > "$WORK/dom.html"
  took=$(( $(ms) - t0 ))
  grep -q "data-candidate=\"$ID\"" "$WORK/dom.html" || { echo "the page did not render $ID's timeline"; exit 1; }
  echo "headless Chromium: loaded, rendered and dumped the page on #candidate=$ID in $(awk -v t="$took" 'BEGIN{printf "%.2f s", t/1000}') (browser start-up included)"
else
  echo "no chromium: the browser timing is skipped"
fi
