#!/usr/bin/env python3
"""Per fault window of a gate run: ATS calls before the first `tripped`, calls after it.

    stagegate run MANIFEST --sut-cmd CMD --out DIR ...
    python3 benches/kill_switch/trip_calls.py DIR/observation.jsonl

Counts ATS calls the way `kill_switch.trips` does (an `ats.request` record, or the
`ats.fault` note of a call that never got an answer; the 504 of a hung call is not
counted again), from each window's `fault.start` (or `integration.killed`) to the
first `tripped` notification, then from that notification to the window's end, and
the probe rate after the trip in calls per second of the run's clock.
"""

import json
import sys

UNANSWERED = {"timeout", "reset", "commit_then_drop"}


def main(path):
    records = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    rows, window = [], None
    for r in records:
        kind, detail = r["kind"], r.get("detail") or {}
        is_call = (kind == "ats.request" and r.get("status") != 504) or (
            kind == "ats.fault" and detail.get("fault") in UNANSWERED)
        if kind == "fault.start":
            window = {"scenario": detail.get("scenario"), "phase": detail.get("phase"),
                      "start": r["elapsed_ms"], "before": 0, "after": 0, "trip": None}
        elif window is None:
            continue
        elif kind == "integration.killed":
            rows.append(dict(window, phase=window["phase"] + " (until the kill)", end=r["elapsed_ms"]))
            window.update(start=r["elapsed_ms"], before=0, after=0, trip=None,
                          phase=window["phase"].split(" ")[0] + " (after the restart)")
        elif kind == "notify.message" and detail.get("state") == "tripped":
            window["trip"] = window["trip"] or r["elapsed_ms"]
        elif is_call:
            window["after" if window["trip"] else "before"] += 1
        elif kind in ("fault.end", "scenario.end"):
            window["end"] = r["elapsed_ms"]
            rows.append(window)
            window = None
    print(f"{'scenario':<15} {'phase':<32} {'calls before trip':>17} {'trip after':>10} "
          f"{'calls after trip':>16} {'over':>8} {'calls/s':>8}")
    for w in rows:
        end = w.get("end", w["start"])
        tripped = w["trip"] is not None
        span = (end - w["trip"]) / 1000 if tripped else 0.0
        rate = f"{w['after'] / span:.1f}" if tripped and span > 0 else "-"
        print(f"{w['scenario'] or '?':<15} {w['phase']:<32} {w['before']:>17} "
              f"{(str(round(w['trip'] - w['start'])) + ' ms') if tripped else 'no trip':>10} "
              f"{w['after']:>16} {span:>7.2f}s {rate:>8}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
