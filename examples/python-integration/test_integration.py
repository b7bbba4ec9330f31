"""Unit tests of the example integration: run `python3 -m unittest` from this folder."""

import base64
import os
import tempfile
import threading
import unittest

import integration

HERE = os.path.dirname(os.path.abspath(__file__))
SEED_MANIFEST = os.path.join(HERE, "..", "..", "manifests", "release-gate.yaml")

# The Standard Webhooks specification's published vector.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID, TIMESTAMP, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
KEY = base64.b64decode(SECRET[len("whsec_"):])


def headers(signature=SIGNATURE, msg_id=MSG_ID, timestamp=TIMESTAMP):
    found = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    return {name: value for name, value in found.items() if value is not None}


class Signatures(unittest.TestCase):
    def test_the_specification_vector(self):
        self.assertEqual(integration.sign(KEY, MSG_ID, TIMESTAMP, BODY), SIGNATURE)

    def test_verify_accepts_a_good_signature_among_several(self):
        now = int(TIMESTAMP)
        self.assertTrue(integration.verify(KEY, headers(), BODY, now=now))
        rotated = "v1,bm90IHRoZSByaWdodCBvbmU= " + SIGNATURE + " v2,ignored"
        self.assertTrue(integration.verify(KEY, headers(rotated), BODY, now=now))

    def test_verify_refuses_forgeries_and_stale_timestamps(self):
        now = int(TIMESTAMP)
        cases = {
            "unsigned": (headers(signature=None), BODY, now),
            "no id": (headers(msg_id=None), BODY, now),
            "wrong signature": (headers("v1,AAAA" + SIGNATURE[7:]), BODY, now),
            "other body": (headers(), BODY + b" ", now),
            "other id": (headers(msg_id="msg_other"), BODY, now),
            "5 min 1 s old": (headers(), BODY, now + 301),
            "5 min 1 s ahead": (headers(), BODY, now - 301),
            "not a number": (headers(timestamp="soon"), BODY, now),
        }
        for why, (given, body, at) in cases.items():
            with self.subTest(why):
                self.assertFalse(integration.verify(KEY, given, body, now=at))
        self.assertTrue(integration.verify(KEY, headers(), BODY, now=now + 300), "the edge holds")


class Manifest(unittest.TestCase):
    def test_reads_the_seed_manifest(self):
        with open(SEED_MANIFEST, encoding="utf-8") as f:
            found = integration.read_manifest(f.read())
        self.assertEqual(found, {
            "mode": "canary",
            "include_tags": ["canary-il"],
            "exclude_locations": ["DE", "FR"],
            "log_fields_required": ["event_id", "correlation_id", "ats_candidate_id",
                                    "received_at", "processed_at", "outcome"],
        })

    def test_block_lists_quotes_comments_and_block_scalars(self):
        text = """# a comment: mode: full
release_gate:
  note: |
    mode: full
    include_tags: ["wrong"]
  mode: 'full'   # rolled out
  kill_switch:
    action:
      notify_channels: ["#ops", '#it''s']
  canary_scope:
    include_tags:
      - "canary-il"   # quoted
      - beta # plain
    exclude_locations:
    - DE
contracts:
  - name: "x"
    mode: canary
observability:
  log_fields_required: [event_id, 'outcome']
"""
        found = integration.read_manifest(text)
        self.assertEqual(found["mode"], "full", "nested keys under list items are not ours")
        self.assertEqual(found["include_tags"], ["canary-il", "beta"])
        self.assertEqual(found["exclude_locations"], ["DE"], "items at the key's indent")
        self.assertEqual(found["log_fields_required"], ["event_id", "outcome"])

    def test_scalars(self):
        self.assertEqual(integration.scalar('["#a", "b,c", d]'), ["#a", "b,c", "d"])
        self.assertEqual(integration.scalar("[]"), [])
        self.assertEqual(integration.scalar("'it''s'"), "it's")
        self.assertEqual(integration.strip_comment('x: "#a" # b'), 'x: "#a" ')

    def test_canary_scope(self):
        manifest = {"mode": "canary", "include_tags": ["canary-il"], "exclude_locations": ["DE"]}
        record = lambda tags, location: {"requisition": {"tags": tags, "location": location}}
        self.assertTrue(integration.in_scope(manifest, record(["x", "canary-il"], "US")))
        self.assertFalse(integration.in_scope(manifest, record(["canary-il"], "DE")))
        self.assertFalse(integration.in_scope(manifest, record(["other"], "US")))
        self.assertFalse(integration.in_scope(manifest, {}))
        self.assertTrue(integration.in_scope(dict(manifest, mode="full"), record([], "DE")))


class Config(unittest.TestCase):
    def env(self, state_dir):
        return {
            "STAGEGATE_LISTEN": "127.0.0.1:8080", "STAGEGATE_ATS_URL": "http://127.0.0.1:1/",
            "STAGEGATE_ATS_TOKEN": "t", "STAGEGATE_VENDOR_URL": "http://127.0.0.1:2",
            "STAGEGATE_VENDOR_TOKEN": "v", "STAGEGATE_VENDOR_WEBHOOK_SECRET": SECRET,
            "STAGEGATE_ATS_WEBHOOK_SECRET": SECRET, "STAGEGATE_NOTIFY_URL": "http://127.0.0.1:3",
            "STAGEGATE_MANIFEST": SEED_MANIFEST, "STAGEGATE_STATE_DIR": state_dir,
        }

    def test_reads_the_protocol_variables(self):
        env = self.env("/tmp/x")
        del env["STAGEGATE_LISTEN"]
        config = integration.load_config(dict(env, PORT="9090"))
        self.assertEqual(config["listen"], ("127.0.0.1", 9090), "PORT stands in for LISTEN")
        self.assertEqual(config["ats_url"], "http://127.0.0.1:1", "trailing slash trimmed")
        self.assertEqual(config["vendor_key"], KEY)
        self.assertEqual(config["time_scale"], 1.0, "real time when unset")

    def test_problems_name_the_variable_and_never_the_secret(self):
        rows = [
            ("STAGEGATE_ATS_TOKEN", None, "STAGEGATE_ATS_TOKEN is not set"),
            ("STAGEGATE_LISTEN", None, "STAGEGATE_LISTEN (or PORT) is not set"),
            ("STAGEGATE_LISTEN", "localhost", "is not HOST:PORT"),
            ("STAGEGATE_VENDOR_WEBHOOK_SECRET", "MfKQ9r8GKYqrTwjUPD8I", "not a Standard Webhooks"),
            ("STAGEGATE_ATS_WEBHOOK_SECRET", "whsec_!!", "STAGEGATE_ATS_WEBHOOK_SECRET is not a"),
            ("STAGEGATE_TIME_SCALE", "0", "not a number above 0"),
            ("STAGEGATE_MANIFEST", "/nonexistent.yaml", "STAGEGATE_MANIFEST: cannot read"),
        ]
        for name, value, expected in rows:
            with self.subTest(name=name, value=value):
                env = self.env("/tmp/x")
                if value is None:
                    del env[name]
                else:
                    env[name] = value
                with self.assertRaises(SystemExit) as exited:
                    integration.load_config(env)
                message = str(exited.exception.code)
                self.assertIn(expected, message)
                self.assertNotIn("MfKQ9r8G", message)


class Queue(unittest.TestCase):
    def event(self, key, candidate="CAND_1"):
        return {"type": "c", "idempotency_key": key, "ats_candidate_id": candidate}

    def test_duplicates_queue_once_even_concurrently_and_across_restarts(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "q.sqlite3")
            queue = integration.Queue(path)
            results = []
            threads = [threading.Thread(target=lambda: results.append(
                queue.accept(self.event("k1"), "{}", "now"))) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.assertEqual(sorted(results), [False] * 7 + [True])
            queue.db.close()
            queue = integration.Queue(path)
            self.assertFalse(queue.accept(self.event("k1"), "{}", "later"), "the index is durable")
            self.assertEqual(queue.next()[0], 1, "the queue is durable")
            queue.db.close()

    def test_jobs_come_in_arrival_order(self):
        with tempfile.TemporaryDirectory() as folder:
            queue = integration.Queue(os.path.join(folder, "q.sqlite3"))
            for key, candidate in [("a1", "A"), ("b1", "B"), ("a2", "A")]:
                self.assertTrue(queue.accept(self.event(key, candidate), key, "now"))
            order = []
            while (job := queue.next()) is not None:
                order.append(job[3])
                queue.finish(job[0], "applied", "later")
            self.assertEqual(order, ["a1", "b1", "a2"])
            queue.db.close()


class Times(unittest.TestCase):
    def test_parse_time(self):
        older = integration.parse_time("2026-05-18T09:00:00Z")
        newer = integration.parse_time("2026-05-18T11:30:00+02:00")
        self.assertLess(older, newer)
        self.assertEqual(integration.parse_time("2026-05-18T09:00:00"), older, "naive is UTC")
        self.assertIsNone(integration.parse_time("yesterday"))
        self.assertIsNone(integration.parse_time(None))


if __name__ == "__main__":
    unittest.main()
