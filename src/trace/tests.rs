use super::fixture::{self, A, B};
use super::*;

fn traced(selector: Selector, with_plan: bool) -> Traced {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = fixture::write_log(dir.path());
    let plan = fixture::plan();
    let plan_path = dir.path().join("plan.json");
    let plan = with_plan.then_some((plan_path.as_path(), &plan));
    trace_file(&log, selector, plan).expect("the fixture traces")
}

fn seqs(t: &Traced) -> Vec<u64> {
    t.trace.records.iter().map(|r| r.seq).collect()
}

#[test]
fn each_selector_finds_its_flow_and_only_it() {
    // (selector, expected seqs, why)
    let rows = [
        (
            Selector::Candidate(A.into()),
            vec![2, 3, 4, 5, 6, 7, 10],
            "the candidate's own records and the output lines naming it",
        ),
        (
            Selector::Candidate(B.into()),
            vec![8, 9],
            "the forged delivery and the line naming the candidate",
        ),
        (
            Selector::CorrelationId("cor_a".into()),
            vec![2, 3, 4, 5, 6, 7, 10],
            "the ATS calls join through the flow's candidate",
        ),
        (
            Selector::EventId("evt_a1".into()),
            vec![2, 3, 4, 6, 7],
            "the ATS write joins through the event's idempotency key; the GET does not",
        ),
        (
            Selector::Candidate("CAND_a".into()),
            vec![],
            "a prefix of an id is not the id",
        ),
    ];
    for (selector, expected, why) in rows {
        let t = traced(selector.clone(), true);
        assert_eq!(seqs(&t), expected, "{selector:?}: {why}");
        assert!(t.trace.chain.intact, "{why}");
        assert_eq!(t.trace.chain.records, 13);
    }
}

#[test]
fn events_carry_latencies_outcomes_and_perturbations() {
    let t = traced(Selector::Candidate(A.into()), true);
    let events: BTreeMap<&str, &EventSummary> = t
        .trace
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), e))
        .collect();
    let dup = events["evt_a1"];
    assert_eq!((dup.attempts, dup.acknowledged, dup.applied), (2, 2, 1));
    assert_eq!(dup.processed.as_deref(), Some("queued"));
    assert_eq!(dup.outcome.as_deref(), Some("passed"));
    assert_eq!(dup.risk_tier.as_deref(), Some("high"));
    // Sent at 50 - 6 = 44 ms, acknowledged at 50, applied at 175.
    assert_eq!(dup.ack_latency_ms(), Some(6.0));
    assert_eq!(dup.apply_latency_ms(), Some(131.0));
    let p = dup.perturbation.as_ref().expect("from the plan");
    assert!(p.duplicate && !p.forged && !p.superseded && p.source == "plan");
    let superseded = events["evt_a2"];
    assert!(
        superseded
            .perturbation
            .as_ref()
            .expect("planned")
            .superseded
    );
    assert_eq!(superseded.applied, 0);
    let second_copy = &t.trace.records[1];
    assert_eq!(
        second_copy.mark.as_deref(),
        Some("duplicate (exact_duplicate), copy 2")
    );

    let t = traced(Selector::Candidate(B.into()), false);
    assert_eq!(t.trace.perturbations_from, "log");
    let forged = &t.trace.events[0];
    assert_eq!((forged.attempts, forged.rejected, forged.signed), (1, 1, 0));
    let p = forged.perturbation.as_ref().expect("from the log");
    assert!(p.forged && p.source == "log");
    assert_eq!(
        t.trace.records[0].mark.as_deref(),
        Some("forged (unsigned)")
    );
}

#[test]
fn a_broken_chain_stops_the_trace_at_the_record_it_breaks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = fixture::write_log(dir.path());
    let text = std::fs::read_to_string(&log).expect("read");
    std::fs::write(
        &log,
        text.replace("\"latency_ms\":1.2", "\"latency_ms\":0.2"),
    )
    .expect("edit");
    let t = trace_file(&log, Selector::Candidate(A.into()), None).expect("readable");
    assert!(!t.trace.chain.intact);
    assert_eq!(t.trace.chain.broken_at_seq, Some(6));
    assert_eq!(
        seqs(&t),
        vec![2, 3, 4, 5],
        "only what chained before the break"
    );
    let text = render(&t.trace);
    assert!(
        text.contains("chain BROKEN: record 6 (line 7) was altered"),
        "{text}"
    );
}

#[test]
fn the_rendering_reads_as_a_story() {
    let mut t = traced(Selector::Candidate(A.into()), true).trace;
    t.log = "observation.jsonl".into();
    t.perturbations_from = "plan.json".into();
    insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("trace_candidate_human", render(&t));
        insta::assert_json_snapshot!("trace_candidate_json", t);
    });
}

#[test]
fn a_queued_line_after_the_outcome_does_not_replace_it() {
    // An integration whose worker runs beside its webhook handler may log the outcome
    // first: the fixture's `queued` line for evt_a1, with an `applied` line put before it.
    let mut records = fixture::records();
    let queued = records
        .iter()
        .position(|r| r.kind == "integration.stdout" && r.detail.to_string().contains("queued"))
        .expect("the fixture's queued line");
    let mut applied = records[queued].clone();
    let text = applied.detail["line"]
        .as_str()
        .expect("a line")
        .replace("queued", "applied");
    applied.detail["line"] = Value::from(text);
    records.insert(queued, applied);
    let mut prev = crate::observe::GENESIS.to_owned();
    for (seq, record) in records.iter_mut().enumerate() {
        record.seq = seq as u64;
        record.prev_hash = prev;
        record.hash = crate::observe::record_hash(record);
        prev = record.hash.clone();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("observation.jsonl");
    let text: String = records
        .iter()
        .map(|r| serde_json::to_string(r).expect("a record serialises") + "\n")
        .collect();
    std::fs::write(&path, text).expect("log written");
    let t = trace_file(&path, Selector::Candidate(A.into()), None).expect("traces");
    let event = t.trace.events.iter().find(|e| e.event_id == "evt_a1");
    assert_eq!(
        event.and_then(|e| e.processed.as_deref()),
        Some("applied"),
        "{:?}",
        t.trace.events
    );
}
