#!/usr/bin/env python3
"""A minimal stagegate integration in Python 3.8+, standard library only.

It implements the integration protocol (docs/integration-protocol.md in the
repository; the section numbers below are its) the way a team outside the project
would:

* configured only by the STAGEGATE_* variables of §1 (a missing one exits, naming it);
* serves GET /healthz, POST /webhooks/vendor and POST /webhooks/ats, verifying
  Standard Webhooks signatures (401) and JSON (400);
* acknowledges a vendor event as soon as it is committed to a SQLite queue in
  STAGEGATE_STATE_DIR, whose UNIQUE idempotency key makes duplicates, re-emits and
  concurrent copies land in the queue once;
* one worker thread writes the queue to the ATS in arrival order, one event at a
  time: it reads the candidate, skips it outside the manifest's canary scope,
  recognises an event the ATS already applied, drops one older than what the ATS
  has, and otherwise posts it with If-Match, retrying 5xx, 429 and network errors;
  an event the ATS refuses with 422 is filed as an exception item (POST
  /v1/exceptions, owned by the contract's ticket_owner), never retried forever;
* a kill switch of its own design (`Breaker`, §6): it counts every ATS call, trips
  on the manifest's failure rate over a sliding 5-minute window once that window
  holds 1.5 x ceil(100 / pct) calls and 4 failures, on a run of 5 failed calls, or
  on more than the manifest's count of 422s over 10 minutes; it then writes
  nothing, probes the ATS with one read every 20 s, closes on the first good probe,
  and tells every notify_channels channel `tripped` and `reset` (what it said
  survives a restart); the queue replays after the reset;
* prints one JSON line per event received and per event processed, with the
  manifest's log_fields_required and never the candidate's name or e-mail;
* with STAGEGATE_POLICY, the hiring policy's flow (§10, hiring.py): stage changes
  deduplicated, verification sessions opened, access granted only after `passed`,
  step-up exception items, and the reconciliation job (POST /jobs/reconcile).

Run it under the gate, from the repository root (see README.md here):
    stagegate run MANIFEST --sut-cmd 'python3 examples/python-integration/integration.py'
Unit tests, from this folder:
    python3 -m unittest
"""

import base64
import collections
import hashlib
import hmac
import http.client
import json
import math
import os
import queue as queues
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hiring
from minyaml import scalar, strip_comment, walk  # noqa: F401 (re-exported for tests)

TIMESTAMP_TOLERANCE = 5 * 60  # seconds a webhook-timestamp may be from now
MAX_BODY = 1 << 20
BASE_BACKOFF, MAX_BACKOFF, MAX_RETRY_AFTER = 0.02, 2.0, 60.0
ATS_TIMEOUT = 5.0  # seconds one ATS call may take

# The kill switch (§6). Real-world durations, divided by STAGEGATE_TIME_SCALE.
FAILURE_WINDOW = 5 * 60.0  # the manifest's ..._over_5m
MAPPING_WINDOW = 10 * 60.0  # the manifest's ..._over_10m
PROBE_INTERVAL = 20.0  # one probe (a read) per 20 s while tripped: 3 calls a minute
MIN_SAMPLE_FACTOR = 1.5  # the rate rule waits for 1.5 x ceil(100 / pct) calls...
MIN_FAILURES = 4  # ...and for 4 failures: fewer can top the threshold by where the
# window happens to start (2 failures 67 calls apart are 2.9 % of 68 calls, while one
# call in 67 failing is 1.5 %); 4 failures one period apart never do at 0.75 x pct
SHORTEST_RUN = 5  # failed calls in a row that trip on their own...
RUN_FALSE_ALARM = 1e-6  # ...or more, while such a run is likelier than this at the threshold
NOTIFY_ATTEMPTS, NOTIFY_FIRST_RETRY, NOTIFY_TIMEOUT = 4, 0.1, 2.0

# What one ATS call says about the ATS.
ANSWERED, FAILED, MAPPING_ERROR = "answered", "failed", "mapping_error"

# The envelope: where the fields the protocol relies on live in an event (§2).
DEFAULT_ENVELOPE = {
    "event_id": "event_id",
    "idempotency_key": "idempotency_key",
    "occurred_at": "occurred_at",
    "candidate_id": "ats_candidate_id",
}


# --- configuration ---------------------------------------------------------------


def required(env, name):
    value = env.get(name, "")
    if not value:
        sys.exit(f"integration.py: {name} is not set (see docs/integration-protocol.md §1)")
    return value


def webhook_key(env, name):
    """The HMAC key of a `whsec_<base64>` secret; errors never show the secret."""
    secret = required(env, name)
    try:
        if not secret.startswith("whsec_"):
            raise ValueError
        encoded = secret[len("whsec_"):]
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        key = b""
    if not key:
        sys.exit(f"integration.py: {name} is not a Standard Webhooks secret (whsec_ + base64)")
    return key


def number(manifest, name, path):
    """A kill-switch threshold of the manifest, as a number above 0."""
    try:
        value = float(manifest[name])
    except (TypeError, ValueError):
        value = 0.0
    if not value > 0:
        sys.exit(f"integration.py: STAGEGATE_MANIFEST has no number above 0 at {path}")
    return value


def load_config(env):
    listen = env.get("STAGEGATE_LISTEN") or env.get("PORT") and "127.0.0.1:" + env["PORT"]
    if not listen:
        required(env, "STAGEGATE_LISTEN (or PORT)")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        sys.exit(f"integration.py: STAGEGATE_LISTEN={listen!r} is not HOST:PORT")
    manifest_path = required(env, "STAGEGATE_MANIFEST")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = read_manifest(f.read())
    except OSError as err:
        sys.exit(f"integration.py: STAGEGATE_MANIFEST: cannot read {manifest_path}: {err}")
    time_scale = env.get("STAGEGATE_TIME_SCALE") or "1"
    if not re.fullmatch(r"\d+(\.\d*)?", time_scale) or float(time_scale) <= 0:
        sys.exit(f"integration.py: STAGEGATE_TIME_SCALE={time_scale!r} is not a number above 0")
    conditions = "release_gate.kill_switch.trigger_conditions."
    rate_pct = number(manifest, "rate_pct", conditions + "ats_http_5xx_rate_pct_over_5m")
    mapping_max = number(manifest, "mapping_max", conditions + "mapping_error_count_over_10m")
    if not manifest["notify_channels"]:
        sys.exit("integration.py: STAGEGATE_MANIFEST names no "
                 "release_gate.kill_switch.action.notify_channels")
    return {
        "listen": (host, int(port)),
        "ats_url": required(env, "STAGEGATE_ATS_URL").rstrip("/"),
        "ats_token": required(env, "STAGEGATE_ATS_TOKEN"),
        "vendor_url": required(env, "STAGEGATE_VENDOR_URL").rstrip("/"),  # unused here
        "vendor_token": required(env, "STAGEGATE_VENDOR_TOKEN"),  # unused here
        "vendor_key": webhook_key(env, "STAGEGATE_VENDOR_WEBHOOK_SECRET"),
        "ats_key": webhook_key(env, "STAGEGATE_ATS_WEBHOOK_SECRET"),
        "notify_url": required(env, "STAGEGATE_NOTIFY_URL").rstrip("/"),
        "state_dir": required(env, "STAGEGATE_STATE_DIR"),
        "time_scale": float(time_scale),
        "rate_pct": rate_pct,
        "mapping_max": int(mapping_max),
        "manifest": manifest,
    }


# --- the manifest: a small line-based YAML reader ------------------------------------

WANTED = {
    "release_gate.mode": "mode",
    "release_gate.canary_scope.include_tags": "include_tags",
    "release_gate.canary_scope.exclude_locations": "exclude_locations",
    "release_gate.kill_switch.name": "kill_switch",
    "release_gate.kill_switch.trigger_conditions.ats_http_5xx_rate_pct_over_5m": "rate_pct",
    "release_gate.kill_switch.trigger_conditions.mapping_error_count_over_10m": "mapping_max",
    "release_gate.kill_switch.action.notify_channels": "notify_channels",
    "release_gate.kill_switch.action.pause_candidate_gates": "pause_candidate_gates",
    "observability.log_fields_required": "log_fields_required",
}
# Per item of `contracts:`, the keys kept (the path below the item's `-`).
CONTRACT_KEYS = {"name": "name", "on_failure.ticket_owner": "owner"}


def read_manifest(text):
    """Reads what the integration needs from a manifest's YAML text.

    This is not a YAML parser. It follows block mappings by indentation (a key's path
    is the keys above it, `-` standing for a list item) and knows block lists
    (`- item`), flow lists (`["a", "b"]`), quoted scalars and comments; whatever is
    not at a path it wants (block scalars' lines included) is ignored. That covers
    the manifests the harness accepts (it validates them before a run). Returns mode
    (default "canary"), include_tags, exclude_locations, the kill switch's name,
    rate_pct, mapping_max (as text), notify_channels and pause_candidate_gates (as
    text, "false" when absent), log_fields_required,
    contracts (name and ticket_owner of each) and the envelope (its defaults
    overridden by the manifest's `envelope:` keys).
    """
    found = {"mode": "canary", "include_tags": [], "exclude_locations": [],
             "kill_switch": "kill-switch", "rate_pct": None, "mapping_max": None,
             "notify_channels": [], "pause_candidate_gates": "false",
             "log_fields_required": [], "contracts": [],
             "envelope": dict(DEFAULT_ENVELOPE)}
    for path, value, item in walk(text):
        if item:
            if path in WANTED:
                found[WANTED[path]].append(scalar(value))
            if path == "contracts":
                found["contracts"].append({})
        elif value and path in WANTED:
            found[WANTED[path]] = scalar(value)
        elif value and path.startswith("envelope.") and path[9:] in DEFAULT_ENVELOPE:
            found["envelope"][path[9:]] = scalar(value)
        elif value and path.startswith("contracts.-.") and found["contracts"]:
            name = CONTRACT_KEYS.get(path[len("contracts.-."):])
            if name:
                found["contracts"][-1][name] = scalar(value)
    return found


def field(event, path):
    """The value at a dotted path of an event (None when absent)."""
    value = event
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def ticket_owner(manifest, contract):
    """Who owns the exception items of a contract's refused events."""
    for entry in manifest["contracts"]:
        if entry.get("name") == contract and entry.get("owner"):
            return entry["owner"]
    return "integration-owner"


def in_scope(manifest, record):
    """Whether the candidate's requisition is inside the canary scope."""
    if manifest["mode"] == "full":
        return True
    requisition = record.get("requisition") or {}
    tags = requisition.get("tags") or []
    return (any(tag in tags for tag in manifest["include_tags"])
            and requisition.get("location") not in manifest["exclude_locations"])


# --- Standard Webhooks ---------------------------------------------------------------


def sign(key, msg_id, timestamp, body):
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(key, headers, body, now=None):
    """Whether the webhook-* headers sign `body` with `key`, recently enough."""
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp", "")
    signatures = (headers.get("webhook-signature") or "").split()
    if not msg_id or not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > TIMESTAMP_TOLERANCE:
        return False
    expected = sign(key, msg_id, stamp, body)
    return any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures)


# --- time and logging ----------------------------------------------------------------


def now_rfc3339():
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text):
    try:
        at = datetime.fromisoformat(str(text).replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


class Log:
    """One JSON line per event on stdout: identifiers and times, never personal data."""

    def __init__(self, required_fields, envelope=None):
        self.required, self.lock = required_fields, threading.Lock()
        self.envelope = envelope or DEFAULT_ENVELOPE

    def event(self, event, received_at, processed_at, outcome, **extra):
        line = {"ts": now_rfc3339(), "msg": "event", "contract": event.get("type")}
        for name, path in sorted(self.envelope.items()):
            line[name] = field(event, path)
        line["correlation_id"] = event.get("correlation_id")
        line.update(received_at=received_at, processed_at=processed_at, outcome=outcome)
        line.update(extra)
        for name in self.required:  # any other required field, nested as in the event
            at, parts = line, name.split(".")
            for part in parts[:-1]:
                at = at.setdefault(part, {}) if isinstance(at.get(part, {}), dict) else {}
            at.setdefault(parts[-1], field(event, name))
        self.write(line)

    def write(self, line):
        with self.lock:
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
            sys.stdout.flush()


# --- the kill switch (§6) --------------------------------------------------------------


def min_sample_for(rate_pct):
    """Calls the 5-minute window must hold before the rate rule judges it: 1.5 x the
    smallest sample in which one failure reaches the threshold (75 at 2 %)."""
    return math.ceil(MIN_SAMPLE_FACTOR * math.ceil(100.0 / rate_pct))


def failure_run_for(rate_pct):
    """Failed calls in a row that trip: 5, or more while a run of 5 is not improbable
    at the threshold rate; None at 100 % (every call may fail)."""
    if rate_pct >= 100:
        return None
    p = rate_pct / 100.0
    return max(SHORTEST_RUN, math.ceil(math.log(RUN_FALSE_ALARM) / math.log(p)))


class Breaker:
    """The kill switch's decisions: pure, over a clock the caller passes in.

    Closed, it counts every ATS call in two sliding windows (the failure window, 5
    minutes scaled, and the mapping window, 10 minutes scaled) and trips on the call
    that makes one rule true: the rate (more than rate_pct % of the window's calls
    failed, once it holds `min_sample` calls and MIN_FAILURES failures), the run (the
    last `run_length` calls all failed) or the mapping errors (more than
    `mapping_max` 422s). Open, it counts
    nothing: `probe_wait` says when the next probe is due, one per probe interval,
    and the first good probe closes it with empty windows.
    """

    def __init__(self, rate_pct, mapping_max, time_scale):
        self.rate_pct, self.mapping_max = rate_pct, mapping_max
        self.window = FAILURE_WINDOW / time_scale
        self.mapping_window = MAPPING_WINDOW / time_scale
        self.probe_interval = PROBE_INTERVAL / time_scale
        self.min_sample = min_sample_for(rate_pct)
        self.run_length = failure_run_for(rate_pct)
        self.opened_at = self.next_probe = None
        self.clear()

    def clear(self):
        self.calls, self.failures, self.run = collections.deque(), 0, 0
        self.mapping = collections.deque()

    @property
    def is_open(self):
        return self.opened_at is not None

    def expire(self, now):
        while self.calls and self.calls[0][0] <= now - self.window:
            self.failures -= self.calls.popleft()[1]
        while self.mapping and self.mapping[0] <= now - self.mapping_window:
            self.mapping.popleft()

    def record(self, kind, now):
        """Counts one call (ANSWERED, FAILED or MAPPING_ERROR); why it tripped, or None."""
        if self.is_open:
            return None
        self.expire(now)
        failed = kind == FAILED
        self.calls.append((now, failed))
        self.failures += failed
        self.run = self.run + 1 if failed else 0
        if kind == MAPPING_ERROR:
            self.mapping.append(now)
        calls = len(self.calls)
        if (calls >= self.min_sample and self.failures >= MIN_FAILURES
                and self.failures * 100 > self.rate_pct * calls):
            why = (f"{self.failures} of {calls} ATS calls failed "
                   f"({self.failures * 100 / calls:.1f}%) over the 5-minute window, "
                   f"above the {self.rate_pct:g}% threshold")
        elif self.run_length and self.run >= self.run_length:
            why = f"the last {self.run} ATS calls all failed"
        elif len(self.mapping) > self.mapping_max:
            why = (f"{len(self.mapping)} mapping errors (422) over the 10-minute window, "
                   f"above the limit of {self.mapping_max}")
        else:
            return None
        self.opened_at, self.next_probe = now, now + self.probe_interval
        return why

    def restore_open(self, now):
        """Opens it as a restarted process found it announced: probing from now on."""
        self.opened_at = self.next_probe = now

    def probe_wait(self, now):
        """Seconds until the next probe is due (0: now); 0 while closed."""
        return max(0.0, self.next_probe - now) if self.is_open else 0.0

    def probe_finished(self, ok, now):
        """Reports a probe; True when it closed the breaker."""
        if not self.is_open:
            return False
        if not ok:
            self.next_probe = now + self.probe_interval
            return False
        self.opened_at = self.next_probe = None
        self.clear()
        return True


class Notifier(threading.Thread):
    """Posts each change of the switch to every channel, in the order they happened."""

    def __init__(self, config, log, http):
        super().__init__(name="notify", daemon=True)
        self.url, self.log, self.http = config["notify_url"], log, http
        self.channels = config["manifest"]["notify_channels"]
        self.name_of_switch = config["manifest"]["kill_switch"]
        self.pending = queues.Queue()

    def send(self, state, text):
        self.pending.put((state, text))

    def run(self):
        while True:
            state, text = self.pending.get()
            for channel in self.channels:
                self.post(channel, state, text)

    def post(self, channel, state, text):
        body = json.dumps({"text": text, "kill_switch": self.name_of_switch,
                           "state": state}).encode()
        url = self.url + "/v1/channels/" + urllib.parse.quote(channel, safe="")
        status, wait = None, NOTIFY_FIRST_RETRY
        for attempt in range(1, NOTIFY_ATTEMPTS + 1):
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with self.http.open(request, timeout=NOTIFY_TIMEOUT) as response:
                    status = response.status
            except urllib.error.HTTPError as err:
                status = err.code
            except (OSError, http.client.HTTPException):
                status = None
            if status is not None and (status < 300 or status not in (408, 429)
                                       and 400 <= status < 500):
                break
            if attempt < NOTIFY_ATTEMPTS:
                time.sleep(wait)
                wait *= 2
        self.log.write({"ts": now_rfc3339(), "msg": "notify", "kill_switch": self.name_of_switch,
                        "channel": channel, "state": state, "status": status,
                        "delivered": status is not None and 200 <= status < 300,
                        "attempts": attempt})


class KillSwitch:
    """The breaker on the real clock, announcing every change in the log and to the channels.

    What the channels were last told is kept in the state folder (`store`): a process
    SIGKILLed while tripped starts again tripped and probing, so that the channels
    that heard `tripped` also hear `reset`, even if the ATS recovers before the new
    process sees enough failures to trip on its own.
    """

    def __init__(self, breaker, notifier, log, store=None, clock=time.monotonic):
        self.breaker, self.notifier, self.log, self.clock = breaker, notifier, log, clock
        self.store = store
        if store is not None and store.switch_state() == "tripped":
            self.breaker.restore_open(self.clock())
            self.log.write({"ts": now_rfc3339(), "msg": "kill_switch", "state": "tripped",
                            "reason": "it was tripped when this process last stopped"})

    def announce(self, state, text):
        if self.store is not None:
            self.store.set_switch_state(state)  # before the channels hear it
        self.notifier.send(state, text)

    @property
    def is_open(self):
        return self.breaker.is_open

    def record(self, kind):
        why = self.breaker.record(kind, self.clock())
        if why:
            text = (f"{self.notifier.name_of_switch}: tripped, {why}. ATS writes are paused; "
                    "webhooks are still acknowledged and queued, and replay in order once "
                    "the ATS recovers.")
            self.log.write({"ts": now_rfc3339(), "msg": "kill_switch", "state": "tripped",
                            "reason": why})
            self.announce("tripped", text)

    def probe_wait(self):
        return self.breaker.probe_wait(self.clock())

    def probe_finished(self, ok, status):
        closed = self.breaker.probe_finished(ok, self.clock())
        self.log.write({"ts": now_rfc3339(), "msg": "kill_switch_probe", "ok": ok,
                        "status": status, "closed": closed})
        if closed:
            self.log.write({"ts": now_rfc3339(), "msg": "kill_switch", "state": "reset"})
            self.announce("reset", f"{self.notifier.name_of_switch}: reset, a probe "
                               "found the ATS answering. ATS writes resume; the queue "
                               "replays in per-candidate order.")


# --- the durable queue ---------------------------------------------------------------

REFUSED = "refused"  # the ATS refused it (422); its exception item is not filed yet


class Queue:
    """Events in SQLite: committed before the 2xx, unique by idempotency key.

    `outcome` is NULL while an event waits to be written, REFUSED while its exception
    item waits to be filed, and its final outcome once done.
    """

    def __init__(self, path):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL UNIQUE,
            candidate TEXT NOT NULL, contract TEXT NOT NULL, body TEXT NOT NULL,
            received_at TEXT NOT NULL, outcome TEXT, processed_at TEXT)""")
        self.db.execute("CREATE INDEX IF NOT EXISTS pending ON events (outcome, seq)")
        self.db.execute("CREATE TABLE IF NOT EXISTS switch ("
                        "id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)")

    def accept(self, key, candidate, contract, body, received_at):
        """True when queued, False for a known idempotency key."""
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO events (idempotency_key, candidate, contract, body,"
                " received_at) VALUES (?, ?, ?, ?, ?)",
                (key, candidate, contract, body, received_at))
            return cursor.rowcount == 1

    def next(self):
        """The oldest event with work left: (seq, candidate, contract, body, received_at,
        outcome)."""
        with self.lock:
            return self.db.execute(
                "SELECT seq, candidate, contract, body, received_at, outcome FROM events"
                " WHERE outcome IS NULL OR outcome = ? ORDER BY seq LIMIT 1",
                (REFUSED,)).fetchone()

    def finish(self, seq, outcome, processed_at):
        with self.lock:
            self.db.execute("UPDATE events SET outcome = ?, processed_at = ? WHERE seq = ?",
                            (outcome, processed_at, seq))

    def switch_state(self):
        """What the kill switch last announced ("tripped", "reset"), or None."""
        with self.lock:
            row = self.db.execute("SELECT state FROM switch WHERE id = 1").fetchone()
            return row[0] if row else None

    def set_switch_state(self, state):
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO switch (id, state) VALUES (1, ?)", (state,))


# --- the worker: queue -> ATS --------------------------------------------------------


class Retry(Exception):
    """Another attempt is worth it, after `after` seconds (None: the backoff)."""

    def __init__(self, after=None):
        super().__init__(after)
        self.after = after


class Worker(threading.Thread):
    """Writes the queue to the ATS, one event at a time, in arrival order."""

    def __init__(self, config, queue, log, stopping, switch, http):
        super().__init__(name="worker", daemon=True)
        self.config, self.queue, self.log, self.stopping = config, queue, log, stopping
        self.switch, self.http = switch, http
        self.envelope = config["manifest"]["envelope"]
        self.wake = threading.Event()
        self.last_candidate = None  # what a probe reads when the queue is empty

    def run(self):
        while not self.stopping.is_set():
            if self.switch.is_open:
                self.probe()
                continue
            self.wake.clear()  # before looking, so an event queued meanwhile wakes us
            job = self.queue.next()
            if job is None:
                self.wake.wait(0.5)
            else:
                self.process(*job)

    def probe(self):
        """While tripped: once due, one read of the oldest queued event's candidate."""
        wait = self.switch.probe_wait()
        if wait > 0:
            self.stopping.wait(min(wait, 0.5))
            return
        job = self.queue.next()
        candidate = job[1] if job else self.last_candidate
        if candidate is None:
            return self.switch.probe_finished(True, None)  # never called the ATS at all
        try:
            status, _, _ = self.call("GET", candidate_path(candidate), count=False)
        except Retry:
            status = None
        self.switch.probe_finished(status is not None and status < 500, status)

    def process(self, seq, candidate, contract, body, received_at, state=None):
        """Tries one event until it has an outcome; on stop or a trip it stays queued."""
        event, delay = json.loads(body), BASE_BACKOFF
        while not self.stopping.is_set() and not self.switch.is_open:
            try:
                if state == REFUSED:
                    outcome, status, extra = self.file_exception(candidate, contract, event)
                else:
                    outcome, status, extra = self.attempt(seq, candidate, contract, event, body)
            except Retry as retry:
                self.stopping.wait(delay if retry.after is None else retry.after)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if outcome == REFUSED:
                state = REFUSED  # the exception item is filed next, unless it tripped
                continue
            processed_at = now_rfc3339()
            self.queue.finish(seq, outcome, processed_at)
            return self.log.event(event, received_at, processed_at, outcome,
                                  ats_status=status, **extra)

    def call(self, method, path, body=None, headers=(), count=True, write=False):
        """(status, headers, parsed JSON or None); network failures raise Retry.

        Every call is a sample of the kill switch unless `count` is False (probes):
        5xx and network failures fail, a 422 to an event `write` is a mapping error.
        """
        request = urllib.request.Request(self.config["ats_url"] + path, data=body,
                                         method=method, headers=dict(headers))
        request.add_header("Authorization", "Bearer " + self.config["ats_token"])
        try:
            with self.http.open(request, timeout=ATS_TIMEOUT) as response:
                status, reply, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            status, reply, raw = err.code, err.headers, err.read()
        except (OSError, http.client.HTTPException) as err:  # refused, reset, timeout, …
            if count:
                self.switch.record(FAILED)
            raise Retry() from err
        if count:
            self.switch.record(FAILED if status >= 500 else
                               MAPPING_ERROR if write and status == 422 else ANSWERED)
        try:
            return status, reply, json.loads(raw) if raw else None
        except ValueError:
            return status, reply, None

    def attempt(self, seq, candidate, contract, event, body):
        """One try: (outcome, ATS status, log extras) when done, Retry when worth another."""
        self.last_candidate = candidate
        path = candidate_path(candidate)
        status, reply, record = self.call("GET", path)
        if status == 404:
            return "rejected", status, {}
        if status != 200 or not isinstance(record, dict):
            raise retry_for(status, reply)
        if self.switch.is_open:
            raise Retry()  # it tripped meanwhile: write nothing, the event stays queued
        if not in_scope(self.config["manifest"], record):
            return "skipped_out_of_scope", status, {}
        key = field(event, self.envelope["idempotency_key"])
        applied = (record.get("applied") or {}).get(contract) or {}
        if applied.get("idempotency_key") == key:
            return "applied", status, {}  # written before; that answer was lost
        newer = parse_time(applied.get("occurred_at"))
        this = parse_time(field(event, self.envelope["occurred_at"]))
        if newer and this and newer > this:
            return "dropped_stale", status, {}
        status, reply, _ = self.call("POST", path + "/events", body.encode(), {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "If-Match": '"%s"' % record.get("revision", 0),
        }.items(), write=True)
        if status in (200, 201):
            return "applied", status, {}
        if status == 409:
            raise Retry(0)  # someone wrote in between: read again, at once
        if status == 422:
            self.queue.finish(seq, REFUSED, None)  # a mapping error: retrying cannot help
            return REFUSED, status, {}
        if status in (400, 404):
            return "rejected", status, {}
        raise retry_for(status, reply)

    def file_exception(self, candidate, contract, event):
        """Files a refused event as an exception item for the contract's ticket_owner."""
        owner = ticket_owner(self.config["manifest"], contract)
        event_id = field(event, self.envelope["event_id"])
        item = {
            "ats_candidate_id": candidate,
            "reason": f"the ATS refused event {event_id} ({contract}) as breaking its "
                      "contract (422); it is not retried",
            "owner": owner,
            "correlation_id": str(event.get("correlation_id")
                                  or field(event, self.envelope["idempotency_key"])),
        }
        status, reply, _ = self.call("POST", "/v1/exceptions", json.dumps(item).encode(),
                                     {"Content-Type": "application/json"}.items())
        if status >= 500 or status == 429:
            raise retry_for(status, reply)
        # Filed, or refused for good: either way the event is done, not retried forever.
        return "rejected", 422, {"exception_owner": owner, "exception_status": status}


def candidate_path(candidate):
    return "/v1/candidates/" + urllib.parse.quote(candidate, safe="")


def retry_for(status, headers):
    after = (headers or {}).get("Retry-After", "") if status == 429 else ""
    return Retry(min(float(after), MAX_RETRY_AFTER) if after.isdigit() else None)


# --- the HTTP server -----------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """The routes; `self.server.app` is (config, queue, log, worker, hiring flow or None)."""

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # no access log: stdout carries JSON lines only
        pass

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, {"status": "ok"})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        received_at = now_rfc3339()
        config, queue, log, worker, flow = self.server.app
        if self.path == "/jobs/reconcile":
            if flow is None:
                return self.reply(404, {"error": "no hiring policy (STAGEGATE_POLICY)"})
            return self.reply(*flow.reconcile())
        key = {"/webhooks/vendor": config["vendor_key"],
               "/webhooks/ats": config["ats_key"]}.get(self.path)
        if key is None:
            return self.reply(404, {"error": "not found"})
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            return self.reply(413, {"error": "a body needs a Content-Length up to 1 MiB"})
        raw = self.rfile.read(int(length))
        if not verify(key, self.headers, raw):
            return self.reply(401, {"error": "signature rejected"})
        try:
            body = raw.decode("utf-8")
            event = json.loads(body)
        except ValueError:
            return self.reply(400, {"error": "malformed JSON"})
        if not isinstance(event, dict):
            return self.reply(400, {"error": "the body is not a JSON object"})
        if self.path == "/webhooks/ats":
            if flow is None:
                return self.reply(200, {"status": "accepted"})  # no policy: nothing to do
            return self.reply(*flow.stage_change(event, received_at))
        envelope = config["manifest"]["envelope"]
        needed = ["type"] + [envelope[name] for name in
                             ("idempotency_key", "candidate_id", "occurred_at")]
        if not all(isinstance(field(event, path), str) for path in needed):
            return self.reply(422, {"error": "an event needs " + ", ".join(needed)})
        outcome = "queued" if queue.accept(
            field(event, envelope["idempotency_key"]), field(event, envelope["candidate_id"]),
            event["type"], body, received_at) else "duplicate"
        worker.wake.set()
        if flow is not None and outcome == "queued":
            flow.result(event, envelope, received_at)
        log.event(event, received_at, None, outcome)
        self.reply(200, {"status": outcome})


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # bursts of concurrent deliveries must not wait for a SYN retry
    daemon_threads = True


def serve(env):
    config = load_config(env)
    manifest = config["manifest"]
    os.makedirs(config["state_dir"], exist_ok=True)
    queue = Queue(os.path.join(config["state_dir"], "integration.sqlite3"))
    log, stopping = Log(manifest["log_fields_required"], manifest["envelope"]), threading.Event()
    # The mocks are on loopback: never route them through an HTTP proxy.
    http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    notifier = Notifier(config, log, http)
    breaker = Breaker(config["rate_pct"], config["mapping_max"], config["time_scale"])
    switch = KillSwitch(breaker, notifier, log, store=queue)
    worker = Worker(config, queue, log, stopping, switch, http)
    flow = hiring.load(env, config, log, http, switch)
    server = Server(config["listen"], Handler)
    server.app = (config, queue, log, worker, flow)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    notifier.start()
    worker.start()
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.write({"ts": now_rfc3339(), "msg": "listening", "listen": "%s:%d" % config["listen"],
               "kill_switch": {"min_sample": breaker.min_sample, "run": breaker.run_length,
                               "mapping_max": breaker.mapping_max,
                               "probe_interval_s": breaker.probe_interval}})
    while not stopping.wait(1):
        pass
    server.shutdown()  # stop accepting; queued events stay queued for the next start
    server.server_close()
    worker.wake.set()
    worker.join(timeout=3)
    log.write({"ts": now_rfc3339(), "msg": "stopped"})


if __name__ == "__main__":
    serve(os.environ)
