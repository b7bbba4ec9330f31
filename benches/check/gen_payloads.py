#!/usr/bin/env python3
"""Generate VALID JSON Lines payloads for manifests/release-gate.yaml.

Deterministic from --seed: the same seed and count always give the same bytes.
About 70% `identity.verification.completed`, 30% `assessment.score.posted`,
~800 bytes per payload on average, padded with extra fields the contracts allow.

Field rules honoured (see manifests/release-gate.yaml):
  * every required field of the payload's contract is present;
  * ats_candidate_id matches ^[A-Za-z0-9_-]{6,64}$;
  * occurred_at is RFC3339 and in the past (during 2025);
  * verification.result / risk_tier come from their enums;
  * assessment.score is within 0..100, assessment.language is one of
    sandbox/supported_languages.txt;
  * evidence_pack.url is an https URL;
  * idempotency_key is stable for the same (ats_candidate_id,
    verification.session_id): every event gets its own session id and the key is
    derived from the pair.

Python 3 standard library only.
"""

import argparse
import json
import os
import random
import sys
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

RESULTS = ["passed", "failed", "review_required"]
RESULT_WEIGHTS = [80, 8, 12]
RISK_TIERS = ["low", "medium", "high"]
RISK_WEIGHTS = [70, 22, 8]

CHECK_NAMES = [
    "document_authenticity",
    "document_expiry",
    "face_match",
    "liveness",
    "mrz_consistency",
    "watchlist_screening",
    "device_reputation",
    "ip_geolocation",
]
CHECK_STATUSES = ["pass", "pass", "pass", "pass", "warn", "fail"]
VENDORS = [
    ("Onfido", "onfido-sdk-js", "14.22.1"),
    ("Veriff", "veriff-web", "7.3.0"),
    ("Persona", "persona-inquiry", "4.11.2"),
    ("Jumio", "jumio-netverify", "3.9.4"),
]
DOC_TYPES = ["passport", "driving_licence", "national_id", "residence_permit"]
COUNTRIES = ["IL", "US", "GB", "NL", "PL", "IN", "BR", "CA", "ES", "IT"]
REGIONS = ["eu-west-1", "us-east-1", "il-central-1", "ap-south-1"]
PROCTORING_FLAGS = [
    "tab_switch",
    "multiple_faces",
    "no_face",
    "copy_paste",
    "external_monitor",
    "audio_anomaly",
    "ide_plugin_detected",
]

EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
SPAN_S = 364 * 24 * 3600  # the whole of 2025: always in the past


def load_languages():
    path = os.path.join(REPO, "sandbox", "supported_languages.txt")
    with open(path, encoding="utf-8") as f:
        langs = [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]
    if not langs:
        sys.exit(f"no languages in {path}")
    return langs


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.languages = load_languages()
        # A pool of candidates so that candidates recur across events (as in real
        # streams); session ids stay unique per event.
        self.candidates = [self.cand_id() for _ in range(50_000)]

    def tok(self, n, alphabet=ALNUM):
        r = self.r
        return "".join(r.choices(alphabet, k=n))

    def uuid(self):
        h = "%032x" % self.r.getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def cand_id(self):
        return "CAND_" + self.tok(self.r.randint(8, 20))

    def ts(self, base=None, max_offset_s=None):
        r = self.r
        if base is None:
            t = EPOCH + timedelta(seconds=r.randrange(SPAN_S), milliseconds=r.randrange(1000))
        else:
            t = base + timedelta(seconds=r.randrange(max_offset_s), milliseconds=r.randrange(1000))
        return t, t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)

    def common(self, kind, cand):
        r = self.r
        t, occurred = self.ts()
        return t, {
            "type": kind,
            "event_id": "evt_" + self.uuid(),
            "correlation_id": "corr_" + self.uuid(),
            "occurred_at": occurred,
            "ats_candidate_id": cand,
            "requisition": {
                "id": "REQ-%06d" % r.randrange(1_000_000),
                "location": r.choice(COUNTRIES),
            },
        }

    def evidence(self, t):
        r = self.r
        pack = self.tok(16)
        _, expires = self.ts(t + timedelta(days=30), 3600)
        return {
            "url": f"https://evidence.integritylens.io/p/{pack}",
            "expires_at": expires,
        }

    def metadata(self):
        r = self.r
        vendor, sdk, ver = r.choice(VENDORS)
        return {
            "vendor": vendor,
            "sdk": f"{sdk}@{ver}",
            "region": r.choice(REGIONS),
            "ip_country": r.choice(COUNTRIES),
        }

    def identity(self):
        r = self.r
        cand = r.choice(self.candidates)
        t, ev = self.common("identity.verification.completed", cand)
        session = "vs_" + self.tok(22)
        ev["idempotency_key"] = f"idk_{cand}_{session}"
        checks = []
        for name in r.sample(CHECK_NAMES, r.randint(1, 2)):
            checks.append({
                "name": name,
                "status": r.choice(CHECK_STATUSES),
                "score": round(r.random(), 3),
            })
        ev["verification"] = {
            "session_id": session,
            "result": r.choices(RESULTS, RESULT_WEIGHTS)[0],
            "risk_tier": r.choices(RISK_TIERS, RISK_WEIGHTS)[0],
            "document_type": r.choice(DOC_TYPES),
            "checks": checks,
        }
        ev["evidence_pack"] = self.evidence(t)
        ev["metadata"] = self.metadata()
        return ev

    def assessment(self):
        r = self.r
        cand = r.choice(self.candidates)
        t, ev = self.common("assessment.score.posted", cand)
        attempt = "att_" + self.tok(18)
        ev["idempotency_key"] = f"idk_{cand}_{attempt}"
        x = r.random()
        if x < 0.02:
            score = 0
        elif x < 0.04:
            score = 100
        elif x < 0.5:
            score = r.randint(0, 100)
        else:
            score = round(r.uniform(0, 100), 2)
        sections = []
        for i in range(r.randint(1, 3)):
            mx = r.choice([10, 20, 25])
            sections.append({"id": f"q{i + 1}", "points": r.randint(0, mx), "max_points": mx})
        ev["assessment"] = {
            "attempt_id": attempt,
            "language": r.choice(self.languages),
            "score": score,
            "proctoring_flags": r.sample(PROCTORING_FLAGS, r.choices([0, 1, 2, 3], [60, 25, 10, 5])[0]),
            "duration_s": r.randint(600, 5400),
            "sections": sections,
        }
        ev["evidence_pack"] = self.evidence(t)
        ev["metadata"] = self.metadata()
        return ev


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", required=True, help="output .jsonl path ('-' for stdout)")
    a = p.parse_args()
    if a.count < 0:
        p.error("--count must be >= 0")

    g = Gen(a.seed)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    total = 0
    kinds = {"identity.verification.completed": 0, "assessment.score.posted": 0}
    out = sys.stdout.buffer if a.out == "-" else open(a.out, "wb")
    try:
        buf = []
        for i in range(a.count):
            ev = g.identity() if g.r.random() < 0.7 else g.assessment()
            kinds[ev["type"]] += 1
            line = (dumps(ev) + "\n").encode("utf-8")
            total += len(line)
            buf.append(line)
            if len(buf) >= 10_000:
                out.write(b"".join(buf))
                buf.clear()
        out.write(b"".join(buf))
    finally:
        if out is not sys.stdout.buffer:
            out.close()

    avg = total / a.count if a.count else 0.0
    share = {k: (v / a.count * 100 if a.count else 0.0) for k, v in kinds.items()}
    print(
        f"wrote {a.count} payloads, {total} bytes, average {avg:.1f} bytes/payload "
        f"(identity {share['identity.verification.completed']:.1f}%, "
        f"assessment {share['assessment.score.posted']:.1f}%) to {a.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
