#!/usr/bin/env python3
"""Writes COUNT vendor webhook payloads (JSON Lines) for `benches/drift/run.sh`.

The payloads are the fixtures of tests/fixtures/drift/ (Checkr report.completed, Onfido
check.completed, Greenhouse candidate_stage_change, Lever candidateStageChange),
interleaved, with every volatile value (ids, times, URLs, tokens) redrawn from SEED and
the categorical values cycling through the same lists as tests/integration/drift.rs
(VENDORS), so the committed baseline (tests/fixtures/drift/baseline.json) describes
them exactly: a correct `drift` run over them reports no finding.

    gen_payloads.py --count 1000000 --seed 42 --out payloads.jsonl
"""
import argparse
import datetime
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "fixtures", "drift")

# (fixture, [(JSON path as a tuple of keys, values cycled)]) — as in tests/integration/drift.rs
VENDORS = [
    ("checkr-report-completed.json", [
        (("data", "object", "result"), ["clear", "consider"]),
        (("data", "object", "package"), ["driver_pro", "tasker_standard"]),
        (("data", "object", "assessment"), ["eligible", "review", "escalated"]),
    ]),
    ("onfido-check-completed.json", [
        (("payload", "object", "status"), ["complete", "withdrawn"]),
    ]),
    ("greenhouse-candidate-stage-change.json", [
        (("payload", "application", "status"), ["active", "rejected", "hired"]),
        (("payload", "application", "current_stage", "name"), ["Application Review", "Phone Screen", "Onsite"]),
        (("payload", "application", "source", "name"), ["Indeed", "Referral"]),
    ]),
    ("lever-candidate-stage-change.json", [
        (("data", "fromStageId"), ["lead-new", "applicant-new"]),
    ]),
]


def volatile_key(key):
    lower = key.lower()
    return (lower == "id" or lower.endswith("_id") or lower.endswith("_ids")
            or (key.endswith("Id") and len(key) > 2) or lower.endswith("_at") or key.endswith("At")
            or lower.endswith("_iso8601") or lower in ("href", "url", "uri", "webhook_url", "token", "signature"))


def kind_of(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return ("int", len(str(value)))
    if isinstance(value, list):
        return ("list", [kind_of(v) for v in value])
    s = value
    try:
        datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        if "T" in s:
            return ("time",)
    except ValueError:
        pass
    if s.startswith("http") or s.startswith("/"):
        return ("url", s[: s.rfind("/") + 1])
    if len(s) == 36 and s[8] == "-":
        return ("uuid",)
    return ("hex", len(s))


def draw(kind, rng):
    tag = kind[0]
    if tag == "int":
        return rng.randrange(10 ** (kind[1] - 1), 10 ** kind[1])
    if tag == "list":
        return [draw(k, rng) for k in kind[1]]
    if tag == "time":
        t = datetime.datetime.fromtimestamp(1_700_000_000 + rng.randrange(50_000_000), datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if tag == "url":
        return kind[1] + "%012x" % rng.getrandbits(48)
    if tag == "uuid":
        h = "%032x" % rng.getrandbits(128)
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
    return ("%0*x" % (kind[1], rng.getrandbits(4 * kind[1])))[: kind[1]]


def template(value, slots, path=()):
    """Replaces volatile leaves by numbered placeholders; returns the new value."""
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            if volatile_key(key) and not isinstance(child, dict) and kind_of(child) is not None:
                slots.append(("volatile", kind_of(child)))
                out[key] = "\u0000%d\u0000" % (len(slots) - 1)
            else:
                out[key] = template(child, slots, path + (key,))
        return out
    if isinstance(value, list):
        return [template(v, slots, path) for v in value]
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    vendors = []
    for name, cycles in VENDORS:
        with open(os.path.join(FIXTURES, name)) as f:
            value = json.load(f)
        slots = []
        for path, values in cycles:
            node = value
            for key in path[:-1]:
                node = node[key]
            slots.append(("cycle", values))
            node[path[-1]] = "\u0000%d\u0000" % (len(slots) - 1)
        value = template(value, slots)
        text = json.dumps(value, separators=(",", ":"))
        # Split the text at the placeholders: pieces and slot numbers alternate.
        parts = text.split("\\u0000")
        pieces, order = [], []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                pieces.append(part)
            else:
                order.append(int(part))
        vendors.append((pieces, order, slots))
    with open(args.out, "w") as out:
        buffer = []
        for n in range(args.count):
            pieces, order, slots = vendors[n % len(vendors)]
            copy = n // len(vendors)
            line = [pieces[0]]
            for j, slot in enumerate(order):
                kind, spec = slots[slot]
                if kind == "cycle":
                    value = spec[copy % len(spec)]
                else:
                    value = draw(spec, rng)
                # The placeholder sat inside quotes: strings go in bare, others replace the quotes.
                if isinstance(value, str):
                    line.append(json.dumps(value)[1:-1])
                    line.append(pieces[j + 1])
                else:
                    line[-1] = line[-1][:-1]
                    line.append(json.dumps(value))
                    line.append(pieces[j + 1][1:])
            buffer.append("".join(line))
            if len(buffer) >= 10000:
                out.write("\n".join(buffer) + "\n")
                buffer = []
        if buffer:
            out.write("\n".join(buffer) + "\n")


if __name__ == "__main__":
    main()
