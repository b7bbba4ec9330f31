#!/usr/bin/env python3
"""A minimal stagegate integration in Python 3.8+, standard library only.

It implements INTEGRATION-PROTOCOL.md the way a team outside the project would:

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
* prints one JSON line per event received and per event processed, with the
  manifest's log_fields_required and never the candidate's name or e-mail.

Run it under the gate, from the repository root (see README.md here):
    stagegate run MANIFEST --sut-cmd 'python3 examples/python-integration/integration.py'
Unit tests, from this folder:
    python3 -m unittest
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
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

TIMESTAMP_TOLERANCE = 5 * 60  # seconds a webhook-timestamp may be from now
MAX_BODY = 1 << 20
BASE_BACKOFF, MAX_BACKOFF, MAX_RETRY_AFTER = 0.05, 2.0, 60.0


# --- configuration ---------------------------------------------------------------


def required(env, name):
    value = env.get(name, "")
    if not value:
        sys.exit(f"integration.py: {name} is not set (see INTEGRATION-PROTOCOL.md §1)")
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
    time_scale = env.get("STAGEGATE_TIME_SCALE") or "1"  # no policy windows to scale here
    if not re.fullmatch(r"\d+(\.\d*)?", time_scale) or float(time_scale) <= 0:
        sys.exit(f"integration.py: STAGEGATE_TIME_SCALE={time_scale!r} is not a number above 0")
    return {
        "listen": (host, int(port)),
        "ats_url": required(env, "STAGEGATE_ATS_URL").rstrip("/"),
        "ats_token": required(env, "STAGEGATE_ATS_TOKEN"),
        "vendor_url": required(env, "STAGEGATE_VENDOR_URL").rstrip("/"),  # unused here
        "vendor_token": required(env, "STAGEGATE_VENDOR_TOKEN"),  # unused here
        "vendor_key": webhook_key(env, "STAGEGATE_VENDOR_WEBHOOK_SECRET"),
        "ats_key": webhook_key(env, "STAGEGATE_ATS_WEBHOOK_SECRET"),
        "notify_url": required(env, "STAGEGATE_NOTIFY_URL").rstrip("/"),  # unused here
        "state_dir": required(env, "STAGEGATE_STATE_DIR"),
        "time_scale": float(time_scale),
        "manifest": manifest,
    }


# --- the manifest: a small line-based YAML reader ------------------------------------

KEY = re.compile(r"^([A-Za-z0-9_.-]+)\s*:(?:\s+(.*))?$")
WANTED = {
    "release_gate.mode": "mode",
    "release_gate.canary_scope.include_tags": "include_tags",
    "release_gate.canary_scope.exclude_locations": "exclude_locations",
    "observability.log_fields_required": "log_fields_required",
}


def strip_comment(line):
    """The line without a trailing `# comment` (a `#` inside quotes is kept)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def scalar(text):
    """A plain, 'single' or "double" quoted scalar, or a flow list of them."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        items = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|[^,\s][^,]*', text[1:-1])
        return [scalar(item) for item in items]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def read_manifest(text):
    """Reads the canary scope and log fields from a manifest's YAML text.

    This is not a YAML parser. It follows block mappings by indentation (a key's path
    is the keys above it, `-` standing for a list item) and knows block lists
    (`- item`), flow lists (`["a", "b"]`), quoted scalars and comments; whatever is
    not at a path it wants (block scalars' lines included) is ignored. That covers
    the manifests the harness accepts (it validates them before a run). Returns mode
    (default "canary"), include_tags, exclude_locations and log_fields_required.
    """
    found = {"mode": "canary", "include_tags": [], "exclude_locations": [],
             "log_fields_required": []}
    stack = []  # (indent, key) of the mappings and list items we are inside
    for raw in text.splitlines():
        line = strip_comment(raw).rstrip()
        indent, body = len(line) - len(line.lstrip(" ")), line.strip()
        if not body or body in ("---", "..."):
            continue
        if body == "-" or body.startswith("- "):
            while stack and (stack[-1][0] > indent or stack[-1] == (indent, "-")):
                stack.pop()
            item, path = body[1:].strip(), ".".join(k for _, k in stack)
            if path in WANTED:
                found[WANTED[path]].append(scalar(item))
            stack.append((indent, "-"))
            if not KEY.match(item) or item[0] in "\"'[":
                continue
            indent, body = indent + len(body) - len(item), item  # the item's own column
        match = KEY.match(body)
        if not match:
            continue
        key, value = match.group(1), (match.group(2) or "").strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        if value and path in WANTED:
            found[WANTED[path]] = scalar(value)
        stack.append((indent, key))
    return found


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

    def __init__(self, required_fields):
        self.required, self.lock = required_fields, threading.Lock()

    def event(self, event, received_at, processed_at, outcome, **extra):
        line = {"ts": now_rfc3339(), "msg": "event", "contract": event.get("type")}
        for name in ("event_id", "correlation_id", "ats_candidate_id", "idempotency_key"):
            line[name] = event.get(name)
        line.update(received_at=received_at, processed_at=processed_at, outcome=outcome)
        line.update(extra)
        for name in self.required:  # any other required field, by dotted path
            value = event
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            line.setdefault(name, value)
        self.write(line)

    def write(self, line):
        with self.lock:
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
            sys.stdout.flush()


# --- the durable queue ---------------------------------------------------------------


class Queue:
    """Events in SQLite: committed before the 2xx, unique by idempotency key."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL UNIQUE,
            candidate TEXT NOT NULL, contract TEXT NOT NULL, body TEXT NOT NULL,
            received_at TEXT NOT NULL, outcome TEXT, processed_at TEXT)""")

    def accept(self, event, body, received_at):
        """True when queued, False for a known idempotency key."""
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO events (idempotency_key, candidate, contract, body,"
                " received_at) VALUES (?, ?, ?, ?, ?)",
                (event["idempotency_key"], event["ats_candidate_id"], event["type"], body,
                 received_at))
            return cursor.rowcount == 1

    def next(self):
        with self.lock:
            return self.db.execute(
                "SELECT seq, candidate, contract, body, received_at FROM events"
                " WHERE outcome IS NULL ORDER BY seq LIMIT 1").fetchone()

    def finish(self, seq, outcome, processed_at):
        with self.lock:
            self.db.execute("UPDATE events SET outcome = ?, processed_at = ? WHERE seq = ?",
                            (outcome, processed_at, seq))


# --- the worker: queue -> ATS --------------------------------------------------------


class Retry(Exception):
    """Another attempt is worth it, after `after` seconds (None: the backoff)."""

    def __init__(self, after=None):
        super().__init__(after)
        self.after = after


class Worker(threading.Thread):
    """Writes the queue to the ATS, one event at a time, in arrival order."""

    def __init__(self, config, queue, log, stopping):
        super().__init__(name="worker", daemon=True)
        self.config, self.queue, self.log, self.stopping = config, queue, log, stopping
        self.wake = threading.Event()
        # The mocks are on loopback: never route them through an HTTP proxy.
        self.http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def run(self):
        while not self.stopping.is_set():
            self.wake.clear()  # before looking, so an event queued meanwhile wakes us
            job = self.queue.next()
            if job is None:
                self.wake.wait(0.5)
            else:
                self.process(*job)

    def process(self, seq, candidate, contract, body, received_at):
        """Tries one event until it has an outcome; on stop it stays queued."""
        event, delay = json.loads(body), BASE_BACKOFF
        while not self.stopping.is_set():
            try:
                outcome, status = self.attempt(candidate, contract, event, body)
            except Retry as retry:
                self.stopping.wait(delay if retry.after is None else retry.after)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            processed_at = now_rfc3339()
            self.queue.finish(seq, outcome, processed_at)
            return self.log.event(event, received_at, processed_at, outcome, ats_status=status)

    def call(self, method, path, body=None, headers=()):
        """(status, headers, parsed JSON or None); network failures raise Retry."""
        request = urllib.request.Request(self.config["ats_url"] + path, data=body,
                                         method=method, headers=dict(headers))
        request.add_header("Authorization", "Bearer " + self.config["ats_token"])
        try:
            with self.http.open(request, timeout=5) as response:
                status, reply, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as err:
            status, reply, raw = err.code, err.headers, err.read()
        except (OSError, http.client.HTTPException) as err:  # refused, reset, timeout, …
            raise Retry() from err
        try:
            return status, reply, json.loads(raw) if raw else None
        except ValueError:
            return status, reply, None

    def attempt(self, candidate, contract, event, body):
        """One try: (outcome, ATS status) when done, Retry when worth another."""
        path = "/v1/candidates/" + urllib.parse.quote(candidate, safe="")
        status, reply, record = self.call("GET", path)
        if status == 404:
            return "rejected", status
        if status != 200 or not isinstance(record, dict):
            raise retry_for(status, reply)
        if not in_scope(self.config["manifest"], record):
            return "skipped_out_of_scope", status
        applied = (record.get("applied") or {}).get(contract) or {}
        if applied.get("idempotency_key") == event["idempotency_key"]:
            return "applied", status  # written before; that answer was lost
        newer, this = parse_time(applied.get("occurred_at")), parse_time(event["occurred_at"])
        if newer and this and newer > this:
            return "dropped_stale", status
        status, reply, _ = self.call("POST", path + "/events", body.encode(), {
            "Content-Type": "application/json",
            "Idempotency-Key": event["idempotency_key"],
            "If-Match": '"%s"' % record.get("revision", 0),
        }.items())
        if status in (200, 201):
            return "applied", status
        if status == 409:
            raise Retry(0)  # someone wrote in between: read again, at once
        if status in (400, 404, 422):
            return "rejected", status  # a mapping error: retrying cannot help
        raise retry_for(status, reply)


def retry_for(status, headers):
    after = (headers or {}).get("Retry-After", "") if status == 429 else ""
    return Retry(min(float(after), MAX_RETRY_AFTER) if after.isdigit() else None)


# --- the HTTP server -----------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """The routes; `self.server.app` is (config, queue, log, worker)."""

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
        config, queue, log, worker = self.server.app
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
            return self.reply(200, {"status": "accepted"})  # stage changes: nothing to do
        needed = ("type", "idempotency_key", "ats_candidate_id", "occurred_at")
        if not all(isinstance(event.get(name), str) for name in needed):
            return self.reply(422, {"error": "an event needs " + ", ".join(needed)})
        outcome = "queued" if queue.accept(event, body, received_at) else "duplicate"
        worker.wake.set()
        log.event(event, received_at, None, outcome)
        self.reply(200, {"status": outcome})


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # bursts of concurrent deliveries must not wait for a SYN retry
    daemon_threads = True


def serve(env):
    config = load_config(env)
    os.makedirs(config["state_dir"], exist_ok=True)
    queue = Queue(os.path.join(config["state_dir"], "integration.sqlite3"))
    required_fields = config["manifest"]["log_fields_required"]
    log, stopping = Log(required_fields), threading.Event()
    worker = Worker(config, queue, log, stopping)
    server = Server(config["listen"], Handler)
    server.app = (config, queue, log, worker)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    worker.start()
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.write({"ts": now_rfc3339(), "msg": "listening", "listen": "%s:%d" % config["listen"]})
    while not stopping.wait(1):
        pass
    server.shutdown()  # stop accepting; queued events stay queued for the next start
    server.server_close()
    worker.wake.set()
    worker.join(timeout=3)
    log.write({"ts": now_rfc3339(), "msg": "stopped"})


if __name__ == "__main__":
    serve(os.environ)
