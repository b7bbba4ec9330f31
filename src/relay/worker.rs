//! The relay's worker: writes queued events to the ATS, one event per candidate at a
//! time (so per-candidate order holds), several candidates at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinSet;

use super::store::{Job, Outcome};
use super::{IDLE_POLL, Shared};
use crate::contract::assertion::parse_rfc3339;
use crate::manifest::model::RolloutMode;

/// Candidates processed at once.
const IN_FLIGHT: usize = 8;
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between two attempts of one event.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why an attempt did not finish the job.
enum Retry {
    /// Try again after the usual backoff (or the ATS's `Retry-After`).
    After(Option<Duration>),
}

pub(super) async fn run(shared: Arc<Shared>) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut busy: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    loop {
        let room = IN_FLIGHT.saturating_sub(tasks.len());
        if room > 0 {
            let excluded: Vec<String> = busy.iter().cloned().collect();
            let store_shared = Arc::clone(&shared);
            let jobs =
                tokio::task::spawn_blocking(move || store_shared.store.next_jobs(&excluded, room))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            for job in jobs {
                busy.insert(job.candidate.clone());
                tasks.spawn(process(Arc::clone(&shared), client.clone(), job));
            }
        }
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(candidate) = done {
                    busy.remove(&candidate);
                }
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

async fn process(shared: Arc<Shared>, client: reqwest::Client, job: Job) -> String {
    let mut delay = BASE_BACKOFF;
    let event: Value = serde_json::from_str(&job.body).unwrap_or(Value::Null);
    loop {
        let _ = shared.store.attempted(job.seq);
        match attempt(&shared, &client, &job, &event).await {
            Ok((outcome, pii)) => {
                let processed_at = crate::observe::format_time(chrono::Utc::now());
                let _ = shared.store.finish(job.seq, outcome, &processed_at);
                log_outcome(&shared, &event, &job, &processed_at, outcome, pii);
                return job.candidate;
            }
            Err(Retry::After(wait)) => {
                tokio::time::sleep(wait.unwrap_or(delay).min(MAX_BACKOFF)).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn log_outcome(
    shared: &Shared,
    event: &Value,
    job: &Job,
    processed_at: &str,
    outcome: Outcome,
    pii: Option<Value>,
) {
    if shared.config.has_fault("no_log_fields") {
        shared.log.note(
            "processed",
            serde_json::json!({"outcome": outcome.as_str()}),
        );
        return;
    }
    let mut line = event.clone();
    if let (Some(pii), Some(map)) = (pii, line.as_object_mut()) {
        // Deliberate defect `log_pii`: the relay echoes what it read from the ATS.
        map.insert("candidate_record".into(), pii);
    }
    shared.log.event(
        &line,
        &job.received_at,
        Some(processed_at),
        outcome.as_str(),
    );
}

/// The candidate's requisition is inside the manifest's canary scope.
fn in_scope(shared: &Shared, record: &Value) -> bool {
    let gate = &shared.config.manifest.raw.release_gate;
    if gate.mode == RolloutMode::Full {
        return true;
    }
    let requisition = &record["requisition"];
    let tags: Vec<&str> = requisition["tags"]
        .as_array()
        .map_or_else(Vec::new, |t| t.iter().filter_map(Value::as_str).collect());
    let location = requisition["location"].as_str().unwrap_or_default();
    let scope = &gate.canary_scope;
    scope
        .include_tags
        .iter()
        .any(|t| tags.contains(&t.as_str()))
        && !scope.exclude_locations.iter().any(|l| l == location)
}

/// One attempt to write a job: `Ok` ends the job, `Err` asks for another attempt.
async fn attempt(
    shared: &Shared,
    client: &reqwest::Client,
    job: &Job,
    event: &Value,
) -> Result<(Outcome, Option<Value>), Retry> {
    let config = &shared.config;
    let candidate_url = format!("{}/v1/candidates/{}", config.ats_url, job.candidate);
    let response = client
        .get(&candidate_url)
        .bearer_auth(&config.ats_token)
        .send()
        .await
        .map_err(|_| Retry::After(None))?;
    match response.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return Ok((Outcome::Rejected, None)),
        status => return Err(retry_for(status, response.headers())),
    }
    let record: Value = response.json().await.map_err(|_| Retry::After(None))?;
    let pii = config
        .has_fault("log_pii")
        .then(|| serde_json::json!({"name": record["name"], "email": record["email"]}));
    if !config.has_fault("ignore_canary") && !in_scope(shared, &record) {
        return Ok((Outcome::OutOfScope, pii));
    }
    if config.has_fault("drop_events") && job.seq % 3 == 0 {
        // Deliberate defect: a silent drop reported as success.
        return Ok((Outcome::Applied, pii));
    }
    let applied = &record["applied"][&job.contract];
    if applied["idempotency_key"].as_str() == Some(job.idempotency_key.as_str()) {
        // Already written: an earlier attempt's answer was lost on the way back.
        return Ok((Outcome::Applied, pii));
    }
    if !config.has_fault("no_stale_check") {
        let newer = applied["occurred_at"].as_str().and_then(parse_rfc3339);
        if let (Some(newer), Some(this)) = (newer, parse_rfc3339(&job.occurred_at))
            && newer > this
        {
            return Ok((Outcome::Stale, pii));
        }
    }
    let mut body = event.clone();
    if config.has_fault("rewrite_key")
        && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "idempotency_key".into(),
            Value::from(format!("relay-{}", job.seq)),
        );
    }
    let revision = record["revision"].as_u64().unwrap_or(0);
    let response = client
        .post(format!("{candidate_url}/events"))
        .bearer_auth(&config.ats_token)
        .header("Idempotency-Key", &job.idempotency_key)
        .header("If-Match", format!("\"{revision}\""))
        .json(&body)
        .send()
        .await
        .map_err(|_| Retry::After(None))?;
    match response.status() {
        StatusCode::CREATED | StatusCode::OK => Ok((Outcome::Applied, pii)),
        // Someone wrote in between: read again and decide again, at once.
        StatusCode::CONFLICT => Err(Retry::After(Some(Duration::ZERO))),
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => Ok((Outcome::Rejected, pii)),
        status => Err(retry_for(status, response.headers())),
    }
}

fn retry_for(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Retry {
    if status == StatusCode::TOO_MANY_REQUESTS {
        let after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        return Retry::After(after);
    }
    Retry::After(None)
}
