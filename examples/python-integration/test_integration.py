"""Unit tests of the example integration: run `python3 -m unittest` from this folder."""

import base64
import os
import tempfile
import threading
import unittest

import integration

HERE = os.path.dirname(os.path.abspath(__file__))
SEED_MANIFEST = os.path.join(HERE, "..", "..", "manifests", "release-gate.yaml")
# A file that is not a release-gate manifest: no kill switch in it.
NO_SWITCH = os.path.join(HERE, "README.md")

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
            "kill_switch": "disable-ats-writeback",
            "rate_pct": "2",
            "mapping_max": "10",
            "notify_channels": ["#recruiting-ops", "#sec-ops", "#eng-oncall"],
            "pause_candidate_gates": "false",
            "log_fields_required": ["event_id", "correlation_id", "ats_candidate_id",
                                    "received_at", "processed_at", "outcome"],
            "contracts": [
                {"name": "identity.verification.completed", "owner": "recruiting-ops"},
                {"name": "assessment.score.posted", "owner": "eng"},
            ],
            "envelope": integration.DEFAULT_ENVELOPE,
        })
        self.assertEqual(integration.ticket_owner(found, "assessment.score.posted"), "eng")
        self.assertEqual(integration.ticket_owner(found, "unknown"), "integration-owner")

    def test_an_envelope_names_the_fields(self):
        text = """envelope:
  event_id: id
  occurred_at: "created_at"   # Checkr's name
  candidate_id: data.object.candidate_id
contracts:
  - on_failure:
      ticket_owner: trust-ops
    name: report.completed
"""
        found = integration.read_manifest(text)
        self.assertEqual(found["envelope"], {
            "event_id": "id", "idempotency_key": "idempotency_key",
            "occurred_at": "created_at", "candidate_id": "data.object.candidate_id",
        }, "the keys given replace the defaults, the others stay")
        self.assertEqual(found["contracts"], [{"name": "report.completed", "owner": "trust-ops"}],
                         "the owner may come before the name")
        event = {"data": {"object": {"candidate_id": "e44aa283528e6fde7d542194"}}}
        self.assertEqual(integration.field(event, "data.object.candidate_id"),
                         "e44aa283528e6fde7d542194")
        self.assertIsNone(integration.field(event, "data.object.missing"))
        self.assertIsNone(integration.field(event, "data.object.candidate_id.deeper"))

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
        self.assertEqual((config["rate_pct"], config["mapping_max"]), (2.0, 10))

    def test_problems_name_the_variable_and_never_the_secret(self):
        rows = [
            ("STAGEGATE_ATS_TOKEN", None, "STAGEGATE_ATS_TOKEN is not set"),
            ("STAGEGATE_LISTEN", None, "STAGEGATE_LISTEN (or PORT) is not set"),
            ("STAGEGATE_LISTEN", "localhost", "is not HOST:PORT"),
            ("STAGEGATE_VENDOR_WEBHOOK_SECRET", "MfKQ9r8GKYqrTwjUPD8I", "not a Standard Webhooks"),
            ("STAGEGATE_ATS_WEBHOOK_SECRET", "whsec_!!", "STAGEGATE_ATS_WEBHOOK_SECRET is not a"),
            ("STAGEGATE_TIME_SCALE", "0", "not a number above 0"),
            ("STAGEGATE_MANIFEST", "/nonexistent.yaml", "STAGEGATE_MANIFEST: cannot read"),
            ("STAGEGATE_MANIFEST", NO_SWITCH, "ats_http_5xx_rate_pct_over_5m"),
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
    def accept(self, queue, key, candidate="CAND_1", body="{}"):
        return queue.accept(key, candidate, "c", body, "now")

    def test_duplicates_queue_once_even_concurrently_and_across_restarts(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "q.sqlite3")
            queue = integration.Queue(path)
            results = []
            threads = [threading.Thread(target=lambda: results.append(
                self.accept(queue, "k1"))) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.assertEqual(sorted(results), [False] * 7 + [True])
            queue.db.close()
            queue = integration.Queue(path)
            self.assertFalse(self.accept(queue, "k1"), "the index is durable")
            self.assertEqual(queue.next()[0], 1, "the queue is durable")
            queue.db.close()

    def test_jobs_come_in_arrival_order(self):
        with tempfile.TemporaryDirectory() as folder:
            queue = integration.Queue(os.path.join(folder, "q.sqlite3"))
            for key, candidate in [("a1", "A"), ("b1", "B"), ("a2", "A")]:
                self.assertTrue(self.accept(queue, key, candidate, body=key))
            order = []
            while (job := queue.next()) is not None:
                order.append(job[3])
                queue.finish(job[0], "applied", "later")
            self.assertEqual(order, ["a1", "b1", "a2"])
            queue.db.close()


    def test_a_refused_event_waits_for_its_exception_item_then_is_done(self):
        with tempfile.TemporaryDirectory() as folder:
            queue = integration.Queue(os.path.join(folder, "q.sqlite3"))
            for key in ("a", "b"):
                self.assertTrue(self.accept(queue, key, body=key))
            seq = queue.next()[0]
            queue.finish(seq, integration.REFUSED, None)
            self.assertEqual(queue.next()[0], seq, "still first: its exception item is due")
            self.assertEqual(queue.next()[5], integration.REFUSED)
            queue.finish(seq, "rejected", "later")
            self.assertEqual(queue.next()[3], "b", "done for good, never retried")
            queue.db.close()


S = 50  # ceil(100 / 2): the smallest sample in which one failure reaches 2 %


def feed(breaker, pattern, calls, start=0.0, step=0.001):
    """Feeds `calls` calls, failing where pattern(i) holds; the call that tripped it, or None."""
    for i in range(calls):
        kind = integration.FAILED if pattern(i) else integration.ANSWERED
        if breaker.record(kind, start + i * step):
            return i + 1
    return None


class BreakerRules(unittest.TestCase):
    def test_the_minimum_sample_and_the_run_follow_the_threshold(self):
        # (threshold %, minimum sample, run length, why)
        rows = [
            (2, 75, 5, "the seed: 1.5 x 50 calls; five in a row"),
            (1, 150, 5, "1.5 x 100"),
            (5, 30, 5, "five failures in a row are 3e-7 likely at 5 %"),
            (10, 15, 6, "five in a row are 1e-5 likely at 10 %: six are needed"),
            (50, 3, 20, "a coin flip needs a long run"),
            (100, 2, None, "every call may fail: no run rule"),
        ]
        for pct, sample, run, why in rows:
            with self.subTest(pct=pct):
                self.assertEqual(integration.min_sample_for(pct), sample, why)
                self.assertEqual(integration.failure_run_for(pct), run, why)
                s = -(-100 // pct)
                self.assertTrue(s <= sample <= 2 * s, "within the protocol's S..2S")
                self.assertTrue(run is None or run >= 3, "the protocol's k >= 3")

    def test_an_outage_trips_on_the_fifth_failure_in_a_row(self):
        breaker = integration.Breaker(2, 10, 60)
        self.assertEqual(feed(breaker, lambda i: True, 100), 5)
        self.assertTrue(breaker.is_open)

    def test_one_early_failure_never_trips(self):
        breaker = integration.Breaker(2, 10, 60)
        self.assertIsNone(feed(breaker, lambda i: i == 0, 1000))

    def test_the_protocol_tolerances_hold_at_every_threshold(self):
        for pct in (0.5, 1, 2, 5, 10, 25):
            s = -(-100 // pct)
            above = int(100 // (1.5 * pct))  # the harness fails one call in this many...
            below = -(-100 // (0.75 * pct))  # ...or in this many, never two in a row
            with self.subTest(pct=pct):
                outage = feed(integration.Breaker(pct, 10, 60), lambda i: True, 10_000)
                self.assertLessEqual(outage, 2 * s + 16, "an outage trips within 2S + 16")
                brownout = feed(integration.Breaker(pct, 10, 60),
                                lambda i: i % above == above - 1, 10_000)
                self.assertIsNotNone(brownout, "a brownout above the threshold trips")
                self.assertLessEqual(brownout, 4 * s + 16, "within 4S + 16 calls")
                # Wherever the window starts: the first call fails, or any later one.
                for phase in range(int(below)):
                    self.assertIsNone(
                        feed(integration.Breaker(pct, 10, 60),
                             lambda i: i % below == phase, 10 * int(s)),
                        f"one call in {below} failing (first at call {phase}) must not trip")

    def test_the_rate_trips_above_the_threshold_once_the_sample_is_full(self):
        breaker = integration.Breaker(2, 10, 60)
        # Four failures early: 4 of 74 calls is above 2 %, but the sample is not full.
        self.assertIsNone(feed(breaker, lambda i: i in (0, 1, 2, 3), 74))
        self.assertTrue(breaker.record(integration.ANSWERED, 0.5).startswith("4 of 75"))

    def test_fewer_than_four_failures_never_trip_on_the_rate(self):
        # A window that starts on a failure: 2 failures 67 calls apart are 2.9 % of the
        # 68 calls from one to the other, 3 are 2.2 % of 135, though one call in 67
        # failing is 1.5 %. The rate rule waits for a fourth: 4 of 202 is 1.98 %.
        breaker = integration.Breaker(2, 10, 60)
        self.assertIsNone(feed(breaker, lambda i: i % 67 == 0, 200))
        self.assertEqual(breaker.failures, 3)
        breaker = integration.Breaker(2, 10, 60)
        self.assertIsNotNone(feed(breaker, lambda i: i % 25 == 0, 100), "4 % trips")

    def test_calls_older_than_the_window_are_forgotten(self):
        breaker = integration.Breaker(2, 10, 60)  # a 5 s window on this clock
        self.assertIsNone(feed(breaker, lambda i: i < 4, 10, start=0.0))
        # 5.5 s later the four failures are gone: 1 failure in 75 calls is 1.3 %.
        self.assertIsNone(feed(breaker, lambda i: i == 0, 75, start=5.5))
        self.assertEqual((len(breaker.calls), breaker.failures), (75, 1))

    def test_more_mapping_errors_than_the_count_trip_and_old_ones_expire(self):
        breaker = integration.Breaker(2, 10, 60)  # a 10 s mapping window on this clock
        for i in range(10):
            self.assertIsNone(breaker.record(integration.MAPPING_ERROR, i * 0.1))
        self.assertIsNone(breaker.record(integration.MAPPING_ERROR, 10.05), "the first expired")
        why = breaker.record(integration.MAPPING_ERROR, 10.06)
        self.assertEqual(why, "11 mapping errors (422) over the 10-minute window, "
                              "above the limit of 10")

    def test_probes_pace_and_the_first_good_one_closes_with_empty_windows(self):
        breaker = integration.Breaker(2, 10, 60)  # one probe per 20 s / 60
        self.assertEqual(feed(breaker, lambda i: True, 10), 5)
        tripped_at = 0.004
        self.assertIsNone(breaker.record(integration.FAILED, 0.01), "nothing counts while open")
        self.assertAlmostEqual(breaker.probe_wait(tripped_at), 1 / 3)
        self.assertFalse(breaker.probe_finished(False, 0.4))
        self.assertAlmostEqual(breaker.probe_wait(0.4), 1 / 3, msg="a failed probe waits again")
        self.assertTrue(breaker.probe_finished(True, 0.8))
        self.assertFalse(breaker.is_open)
        self.assertEqual((len(breaker.calls), breaker.run), (0, 0), "windows cleared")
        self.assertIsNone(feed(breaker, lambda i: i < 4, 4, start=1.0), "four more: no trip")
        self.assertEqual(breaker.probe_wait(2.0), 0.0, "closed: nothing to wait for")


class Recorder:
    """Stands in for the log and the notifier."""

    name_of_switch = "disable-ats-writeback"

    def __init__(self):
        self.lines, self.sent = [], []

    def write(self, line):
        self.lines.append(line)

    def send(self, state, text):
        self.sent.append((state, text))


class KillSwitchNotices(unittest.TestCase):
    def test_tripped_then_reset_each_once_and_logged(self):
        clock = [0.0]
        recorder = Recorder()
        switch = integration.KillSwitch(integration.Breaker(2, 10, 60), recorder, recorder,
                                        clock=lambda: clock[0])
        for _ in range(7):
            switch.record(integration.FAILED)
            clock[0] += 0.01
        self.assertEqual([state for state, _ in recorder.sent], ["tripped"],
                         "one notice, however many calls fail after")
        self.assertIn("the last 5 ATS calls all failed", recorder.sent[0][1])
        switch.probe_finished(False, 503)
        clock[0] += 1
        switch.probe_finished(True, 200)
        self.assertEqual([state for state, _ in recorder.sent], ["tripped", "reset"])
        said = [(line["msg"], line.get("state") or line.get("ok")) for line in recorder.lines]
        self.assertEqual(said, [("kill_switch", "tripped"), ("kill_switch_probe", False),
                                ("kill_switch_probe", True), ("kill_switch", "reset")])


    def test_a_process_killed_while_tripped_starts_tripped_and_resets(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "q.sqlite3")
            clock, recorder = [0.0], Recorder()
            switch = integration.KillSwitch(integration.Breaker(2, 10, 60), recorder, recorder,
                                            store=integration.Queue(path),
                                            clock=lambda: clock[0])
            for _ in range(5):
                switch.record(integration.FAILED)
            self.assertEqual(switch.store.switch_state(), "tripped", "kept before it is told")
            switch.store.db.close()  # SIGKILL: nothing else survives

            restarted, recorder = Recorder(), Recorder()
            switch = integration.KillSwitch(integration.Breaker(2, 10, 60), recorder, recorder,
                                            store=integration.Queue(path),
                                            clock=lambda: clock[0])
            self.assertTrue(switch.is_open, "it starts as the channels last heard it")
            self.assertEqual(switch.probe_wait(), 0.0, "and probes at once")
            self.assertEqual(recorder.sent, [], "the channels already know it tripped")
            switch.probe_finished(True, 200)
            self.assertEqual([state for state, _ in recorder.sent], ["reset"])
            self.assertEqual(switch.store.switch_state(), "reset")
            switch.store.db.close()
            fresh = integration.KillSwitch(integration.Breaker(2, 10, 60), restarted, restarted,
                                           store=integration.Queue(path))
            self.assertFalse(fresh.is_open, "after a reset, a restart starts closed")
            fresh.store.db.close()


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
