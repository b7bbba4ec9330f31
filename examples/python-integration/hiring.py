"""The hiring policy (docs/integration-protocol.md §10) for the Python example.

Active when STAGEGATE_POLICY names a hiring policy:

* stage changes (POST /webhooks/ats, verified by the caller) are deduplicated by the
  policy's keyTemplate in SQLite, their keys kept for ttlHours (on the run's clock),
  committed before the 2xx;
* a move into an identityGate stage opens a verification session at the vendor at
  once, in a thread;
* a vendor result for a candidate in the flow grants the gated stage's resource when
  it is `passed` and no exception item of the candidate is open, files one exception
  item (owner and due time from the policy) on `review_required` or a step-up
  signal, and grants nothing on `failed`;
* POST /jobs/reconcile compares the ATS's stages with the vendor's sessions and files
  one exception item per mismatch;
* every processed stage change and result is one JSON line with mustLogFields.
"""

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from minyaml import scalar, walk

DEFAULT_STAGES = "application-review,screen,technical-interview,assessment,offer"
CALL_ATTEMPTS, CALL_TIMEOUT = 6, 5.0
SWITCH_PATIENCE = 120.0  # seconds an ATS call waits for a tripped switch to close
# What an ATS call tells the kill switch (integration.py's vocabulary).
ANSWERED, FAILED = "answered", "failed"

# Where the reader finds each setting: path (list items as "-") -> name.
SCALARS = {
    "atsEvents.-.name": "event_name",
    "atsEvents.-.delivery.verifySignature": "verify_signature",
    "atsEvents.-.idempotency.keyTemplate": "key_template",
    "atsEvents.-.idempotency.ttlHours": "ttl_hours",
    "controls.stepUpVerification.enabled": "step_up",
    "slas.triggerFanoutSeconds": "fanout_seconds",
    "slas.exceptionReview.highRiskHours": "high_risk_hours",
    "slas.exceptionReview.standardBusinessDays": "business_days",
    "reconciliation.onMismatch.assignOwner.default": "owner_default",
    "reconciliation.onMismatch.assignOwner.highRisk": "owner_high",
}
LISTS = {
    "atsEvents.-.requiredFields": "required_fields",
    "controls.identityGate.appliesToStages": "gated",
    "controls.stepUpVerification.triggers": "triggers",
    "logging.mustLogFields": "must_log",
}


def read_policy(text):
    """The settings the flow needs from a hiring policy's YAML (the first ATS event's).

    Like `read_manifest`, not a YAML parser: block mappings by indentation, block
    lists, quoted scalars and comments, which the policies the harness accepts use.
    """
    found = {name: [] for name in LISTS.values()}
    for path, value, item in walk(text):
        if item and path in LISTS:
            found[LISTS[path]].append(scalar(value))
        elif not item and value and path in SCALARS and SCALARS[path] not in found:
            found[SCALARS[path]] = scalar(value)
        elif not item and value and path in LISTS:
            found[LISTS[path]] = scalar(value)
    return found


def render_key(template, name, event):
    """Fills `${field}` placeholders (`${name}`: the event name) from the event."""
    out, rest = "", template
    while "${" in rest:
        start = rest.index("${")
        end = rest.find("}", start)
        if end < 0:
            break
        out += rest[:start]
        placeholder = rest[start + 2:end]
        value = name if placeholder == "name" else event.get(placeholder)
        out += "" if value is None else value if isinstance(value, str) else json.dumps(value)
        rest = rest[end + 1:]
    return out + rest


def review_due(spec, created, high_risk):
    """When an exception item must have been reviewed (real-world time)."""
    if high_risk:
        return created + timedelta(hours=float(spec.get("high_risk_hours", 4)))
    days = float(spec.get("business_days", 1))
    due, whole = created, int(days)
    while whole > 0:
        due += timedelta(days=1)
        if due.weekday() < 5:
            whole -= 1
    return due + timedelta(seconds=(days - int(days)) * 86400)


def rfc3339(at):
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def result_of(event):
    """The part of a vendor event that carries a verification result (a mapping with
    `result` and `session_id`), or None."""
    for value in [event] + [v for v in event.values() if isinstance(v, dict)]:
        if isinstance(value.get("result"), str) and isinstance(value.get("session_id"), str):
            return value
    return None


class Hiring:
    """The policy flow; the HTTP handler calls `stage_change`, `result` and `reconcile`."""

    def __init__(self, spec, stages, config, log, http, switch):
        self.spec, self.stages, self.config = spec, stages, config
        self.log, self.http, self.switch = log, http, switch
        self.lock = threading.Lock()
        self.gates = {}  # candidate -> {"stage", "pending": [stages], "correlation", "item"}
        path = config["state_dir"] + "/hiring.sqlite3"
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS stage_keys ("
                        "key TEXT PRIMARY KEY, expires REAL NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS reconciled ("
                        "candidate TEXT PRIMARY KEY, item TEXT NOT NULL)")

    # --- stage changes -------------------------------------------------------------

    def stage_change(self, event, received_at):
        """(status, payload) for a verified stage change."""
        if event.get("name") != self.spec.get("event_name"):
            return 422, {"error": "not an event of the hiring policy"}
        missing = [f for f in self.spec["required_fields"] if event.get(f) is None]
        if missing:
            return 422, {"error": "missing required fields: " + ", ".join(missing)}
        key = render_key(self.spec.get("key_template", ""), event["name"], event)
        ttl = float(self.spec.get("ttl_hours", 168)) * 3600 / self.config["time_scale"]
        now = time.time()
        with self.lock:
            self.db.execute("DELETE FROM stage_keys WHERE expires < ?", (now,))
            fresh = self.db.execute("INSERT OR IGNORE INTO stage_keys (key, expires)"
                                    " VALUES (?, ?)", (key, now + ttl)).rowcount == 1
        candidate, to = event["candidateId"], event["toStage"]
        gated = to in self.spec["gated"]
        correlation = event.get("correlationId") or "cor_" + candidate
        if fresh:
            with self.lock:
                gate = self.gates.setdefault(candidate, {"pending": [], "item": None})
                gate.update(stage=to, correlation=correlation)
                if gated and to not in gate["pending"]:
                    gate["pending"].append(to)
            if gated:
                threading.Thread(target=self.fan_out, args=(candidate, to, correlation),
                                 daemon=True).start()
        outcome = "duplicate" if not fresh else "verification_requested" if gated else "recorded"
        self.log_processed(event.get("eventId"), candidate, event["name"],
                           event.get("occurredAt"), received_at, event.get("actorId"), key,
                           outcome, "none")
        return 200, {"status": outcome}

    def fan_out(self, candidate, stage, correlation):
        # `pause_candidate_gates: true`: no candidate-facing call while the kill switch
        # is open; otherwise identity gates go on through an ATS outage.
        if self.config["manifest"].get("pause_candidate_gates") == "true":
            give_up = time.monotonic() + SWITCH_PATIENCE
            while self.switch.is_open and time.monotonic() < give_up:
                time.sleep(0.05)
        body = {"ats_candidate_id": candidate, "correlation_id": correlation}
        session = self.post(self.config["vendor_url"] + "/v1/verifications",
                            self.config["vendor_token"], body)
        self.log.write({"ts": rfc3339(datetime.now(timezone.utc)),
                        "msg": "verification session " + ("opened" if session else "failed"),
                        "candidateId": candidate, "stage": stage})

    # --- results -------------------------------------------------------------------

    def result(self, event, envelope, received_at):
        """A new vendor event: acts on it when it is a result for a candidate in the flow."""
        part = result_of(event)
        candidate = event.get(envelope["candidate_id"]) if part else None
        with self.lock:
            if candidate not in self.gates:
                return
        threading.Thread(target=self.decide, args=(event, part, candidate, envelope,
                                                   received_at), daemon=True).start()

    def decide(self, event, part, candidate, envelope, received_at):
        result, risk = part["result"], part.get("risk_tier")
        signals = part.get("signals") if isinstance(part.get("signals"), list) else []
        triggers = self.spec["triggers"] if str(self.spec.get("step_up")) == "true" else []
        if result == "review_required" or any(s in triggers for s in signals):
            reason = "step-up: " + (next((s for s in signals if s in triggers), None) or result)
            item = self.file_exception(candidate, reason, risk == "high", part["session_id"])
            with self.lock:
                self.gates[candidate]["item"] = item
            outcome = "exception_filed"
        elif result == "passed":
            outcome = "held_for_review" if self.item_open(candidate) else (
                "granted" if self.grant_pending(candidate) else "verified")
        else:
            outcome = "denied"
        self.log_processed(event.get(envelope["event_id"]), candidate, event.get("type"),
                           event.get(envelope["occurred_at"]), received_at, "vendor",
                           event.get(envelope["idempotency_key"]), outcome,
                           (event.get("evidence_pack") or {}).get("url") or part["session_id"])

    def item_open(self, candidate):
        with self.lock:
            item = self.gates[candidate].get("item")
        if not item:
            return False
        status, reply = self.request("GET", self.config["ats_url"] + "/v1/exceptions/"
                                     + urllib.parse.quote(item, safe=""),
                                     self.config["ats_token"])
        open_ = not (status == 200 and isinstance(reply, dict)
                     and reply.get("status") == "resolved")
        if not open_:
            with self.lock:
                self.gates[candidate]["item"] = None
        return open_

    def grant_pending(self, candidate):
        with self.lock:
            gate = self.gates[candidate]
            pending, gate["pending"] = gate["pending"], []
            correlation = gate["correlation"]
        granted = False
        for stage in pending:
            resource = "assessment" if "assessment" in stage else "interview_link"
            url = (self.config["ats_url"] + "/v1/candidates/"
                   + urllib.parse.quote(candidate, safe="") + "/access-grants")
            granted |= self.post(url, self.config["ats_token"],
                                 {"resource": resource, "correlation_id": correlation}) is not None
        return granted

    def file_exception(self, candidate, reason, high_risk, session=None):
        owner = self.spec["owner_high"] if high_risk else self.spec["owner_default"]
        with self.lock:
            correlation = (self.gates.get(candidate) or {}).get("correlation") or "cor_" + candidate
        item = {"ats_candidate_id": candidate, "reason": reason, "owner": owner,
                "correlation_id": correlation,
                "due_at": rfc3339(review_due(self.spec, datetime.now(timezone.utc), high_risk))}
        if session:
            item["session_id"] = session
        reply = self.post(self.config["ats_url"] + "/v1/exceptions", self.config["ats_token"], item)
        return reply.get("id") if isinstance(reply, dict) else None

    # --- reconciliation --------------------------------------------------------------

    def reconcile(self):
        """(status, payload) once every mismatch has its exception item."""
        stages, offset = [], 0
        while True:
            status, page = self.request(
                "GET", "%s/v1/candidates?offset=%d&limit=500" % (self.config["ats_url"], offset),
                self.config["ats_token"])
            if status != 200 or not isinstance(page, dict):
                return 502, {"error": "cannot list the ATS's candidates"}
            rows = page.get("candidates") or []
            stages += [(c["ats_candidate_id"], c["stage"]) for c in rows]
            offset += len(rows)
            if not rows or offset >= page.get("total", 0):
                break
        status, listed = self.request("GET", self.config["vendor_url"] + "/v1/verifications",
                                      self.config["vendor_token"])
        if status != 200 or not isinstance(listed, dict):
            return 502, {"error": "cannot list the vendor's sessions"}
        sessions = {}
        for session in listed.get("sessions") or []:
            sessions.setdefault(session.get("ats_candidate_id"), []).append(session)
        gates = [s for s in self.stages if s in self.spec["gated"]]
        first = self.stages.index(gates[0]) if gates else None
        mismatches = 0
        for candidate, stage in stages:
            theirs = sessions.get(candidate, [])
            passed = any(s.get("result") == "passed" for s in theirs)
            if stage in self.stages and first is not None:
                past = self.stages.index(stage) >= first
            else:
                past = stage in self.spec["gated"]
            if past and not passed:
                reason = "reconciliation: gated stage without a passed verification"
            elif not past and theirs:
                reason = "reconciliation: verification without a gated stage"
            else:
                continue
            mismatches += 1
            with self.lock:
                filed = self.db.execute("SELECT item FROM reconciled WHERE candidate = ?",
                                        (candidate,)).fetchone()
            if filed:
                continue
            high = any(s.get("risk_tier") == "high" for s in theirs)
            item = self.file_exception(candidate, reason, high)
            if item:
                with self.lock:
                    self.db.execute("INSERT OR IGNORE INTO reconciled VALUES (?, ?)",
                                    (candidate, item))
        return 200, {"checked": len(stages), "mismatches": mismatches}

    # --- HTTP and logging ------------------------------------------------------------

    def request(self, method, url, token, body=None):
        """(status, parsed JSON) of one call; (None, None) on a network failure.

        An ATS call waits while the kill switch is open (the switch probes, nothing
        else calls the ATS) and is one of its samples; vendor calls go on.
        """
        ats = url.startswith(self.config["ats_url"])
        if ats:
            give_up = time.monotonic() + SWITCH_PATIENCE
            while self.switch.is_open and time.monotonic() < give_up:
                time.sleep(0.05)
        status, reply = self.send(method, url, token, body)
        if ats:
            self.switch.record(FAILED if status is None or status >= 500 else ANSWERED)
        return status, reply

    def send(self, method, url, token, body):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", "Bearer " + token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.http.open(request, timeout=CALL_TIMEOUT) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except OSError:
            return None, None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def post(self, url, token, body):
        """The 2xx answer's JSON, retried on 5xx, 429 and network failures; None otherwise."""
        delay = 0.1
        for _ in range(CALL_ATTEMPTS):
            status, reply = self.request("POST", url, token, body)
            if status is not None and 200 <= status < 300:
                return reply if reply is not None else {}
            if status is not None and 400 <= status < 500 and status != 429:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        return None

    def log_processed(self, event_id, candidate, name, occurred_at, received_at, actor, key,
                      outcome, evidence):
        self.log.write({
            "ts": rfc3339(datetime.now(timezone.utc)), "msg": "policy event processed",
            "eventId": event_id, "candidateId": candidate, "eventName": name,
            "occurredAt": occurred_at, "receivedAt": received_at,
            "processedAt": rfc3339(datetime.now(timezone.utc)), "actorId": actor,
            "idempotencyKey": key, "signatureValid": True, "outcome": outcome,
            "evidencePackRef": evidence,
        })


def load(env, config, log, http, switch):
    """The policy flow when STAGEGATE_POLICY is set, else None."""
    path = env.get("STAGEGATE_POLICY")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            spec = read_policy(f.read())
    except OSError as err:
        raise SystemExit(f"integration.py: STAGEGATE_POLICY: cannot read {path}: {err}")
    for name in ("event_name", "key_template", "owner_default", "owner_high"):
        if name not in spec:
            raise SystemExit(f"integration.py: STAGEGATE_POLICY: {path} has no {name}")
    stages = (env.get("STAGEGATE_POLICY_STAGES") or DEFAULT_STAGES).split(",")
    return Hiring(spec, [s.strip() for s in stages], config, log, http, switch)
