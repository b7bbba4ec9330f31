"""Unit tests of the hiring-policy flow's pure parts: python3 -m unittest"""

import os
import threading
import types
import unittest
from datetime import datetime, timezone

import hiring

POLICY = os.path.join(os.path.dirname(__file__), "..", "..", "manifests", "hiring-policy.yaml")


class Gates(unittest.TestCase):
    """Whether a gated move's verification session waits for a tripped kill switch."""

    def fan_out_with(self, pause):
        switch = types.SimpleNamespace(is_open=True)
        calls = []
        flow = hiring.Hiring.__new__(hiring.Hiring)
        flow.config = {"manifest": {"pause_candidate_gates": pause},
                       "vendor_url": "http://vendor", "vendor_token": "t"}
        flow.switch = switch
        flow.log = types.SimpleNamespace(write=lambda record: None)
        flow.post = lambda url, token, body: calls.append((url, switch.is_open)) or {"id": "s"}
        closes = threading.Timer(0.2, lambda: setattr(switch, "is_open", False))
        closes.start()
        flow.fan_out("CAND_1", "technical-interview", "cor_1")
        closes.join()
        return calls

    def test_paused_gates_wait_for_the_switch_to_close(self):
        self.assertEqual(self.fan_out_with("true"), [("http://vendor/v1/verifications", False)])

    def test_gates_go_on_while_the_switch_is_open(self):
        self.assertEqual(self.fan_out_with("false"), [("http://vendor/v1/verifications", True)])


class ReadPolicy(unittest.TestCase):
    def test_the_repository_policy(self):
        with open(POLICY, encoding="utf-8") as f:
            spec = hiring.read_policy(f.read())
        self.assertEqual(spec["event_name"], "candidate.stage_changed")
        self.assertEqual(spec["required_fields"][:3], ["candidateId", "fromStage", "toStage"])
        self.assertEqual(spec["gated"], ["technical-interview", "assessment"])
        self.assertEqual(spec["key_template"], "${candidateId}:${name}:${occurredAt}")
        self.assertEqual((spec["owner_default"], spec["owner_high"]), ("recruitingOps", "security"))
        self.assertIn("evidencePackRef", spec["must_log"])

    def test_flow_lists_and_comments(self):
        spec = hiring.read_policy("controls:\n  identityGate:\n"
                                  "    appliesToStages: [\"onsite\", 'offer'] # gated\n")
        self.assertEqual(spec["gated"], ["onsite", "offer"])


class Keys(unittest.TestCase):
    def test_placeholders_are_filled_from_the_event(self):
        event = {"candidateId": "C1", "occurredAt": "2026-05-18T09:00:00Z", "n": 3}
        self.assertEqual(hiring.render_key("${candidateId}:${name}:${occurredAt}", "e", event),
                         "C1:e:2026-05-18T09:00:00Z")
        self.assertEqual(hiring.render_key("${n}/${missing}/${open", "e", event), "3//${open")


class Due(unittest.TestCase):
    def test_high_risk_hours_and_business_days(self):
        spec = {"high_risk_hours": "4", "business_days": "1"}
        friday = datetime(2026, 5, 22, 9, tzinfo=timezone.utc)
        self.assertEqual(hiring.review_due(spec, friday, True).hour, 13)
        self.assertEqual(hiring.review_due(spec, friday, False).day, 25, "Monday, not Saturday")


class Results(unittest.TestCase):
    def test_the_result_part_of_a_vendor_event(self):
        event = {"type": "x", "verification": {"result": "passed", "session_id": "s"}}
        self.assertEqual(hiring.result_of(event)["session_id"], "s")
        self.assertIsNone(hiring.result_of({"type": "assessment.score.posted"}))


if __name__ == "__main__":
    unittest.main()
