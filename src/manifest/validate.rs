//! The semantic pass and the resolve pass: cross-references, sane values, compiled
//! contracts. Every problem is reported at its key path; all of them are collected
//! before the manifest is rejected, so one run shows the whole list.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::diagnostic::{Code, Level, Reporter, Target};
use super::model::{CanaryStrategy, RawManifest};
use super::policy::HiringPolicy;
use super::span::KeyPath;
use super::{Candidate, CandidateId, Envelope, ExpectedEvent};
use crate::contract::ids::{IdMint, IdRules};
use crate::contract::assertion::Assertion;
use crate::contract::lists::ListCatalog;
use crate::contract::path::FieldPath;
use crate::contract::{Contract, ContractParts, ContractSet};
use crate::suggest::did_you_mean;

/// What the resolve pass produces from a valid release-gate manifest.
pub(crate) struct Resolved {
    pub(crate) contracts: ContractSet,
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) envelope: Envelope,
}

/// Checks a release-gate manifest and compiles its contracts.
pub(crate) fn release_gate(
    raw: &RawManifest,
    lists: &ListCatalog,
    r: &mut Reporter<'_>,
) -> Option<Resolved> {
    let root = KeyPath::root();
    version(&raw.version.0, &root.key("version"), r);
    gate_settings(raw, r);
    list_files(raw, lists, r);
    check_settings(raw, r);

    let contracts_path = root.key("contracts");
    if raw.contracts.is_empty() {
        r.error(
            Code::Value,
            &contracts_path,
            Target::Key,
            "a manifest needs at least one contract",
            "empty",
        )
        .help("describe each event the integration writes to the ATS under `contracts:`");
    }
    let mut seen_names: HashMap<&str, usize> = HashMap::new();
    let mut compiled = Vec::new();
    for (i, def) in raw.contracts.iter().enumerate() {
        let at = contracts_path.index(i);
        if def.name.trim().is_empty() {
            r.error(
                Code::Value,
                &at.key("name"),
                Target::Value,
                "contract name is empty",
                "empty",
            );
        } else if let Some(first) = seen_names.insert(&def.name, i) {
            r.error(
                Code::Duplicate,
                &at.key("name"),
                Target::Value,
                format!("contract `{}` is defined twice", def.name),
                "second definition",
            )
            .help(format!(
                "the first is contracts[{first}]; give each contract its own name"
            ));
        }
        compiled.push(contract(def, &at, lists, r));
    }

    let envelope = envelope(raw, r);
    let contracts: Vec<Contract> = compiled.into_iter().flatten().collect();
    if contracts.len() != raw.contracts.len() || r.has_errors() {
        // Sequences are still checked against the contracts that compiled.
        let partial = ContractSet::new(contracts);
        candidates(raw, &partial, &envelope, r);
        return None;
    }
    let set = ContractSet::new(contracts);
    envelope_coverage(raw, &set, &envelope, r);
    let candidates = candidates(raw, &set, &envelope, r);
    (!r.has_errors()).then_some(Resolved {
        contracts: set,
        candidates,
        envelope,
    })
}

fn version(text: &str, at: &KeyPath, r: &mut Reporter<'_>) {
    let major = text
        .split('.')
        .next()
        .and_then(|m| m.trim().parse::<u64>().ok());
    if major != Some(1) {
        r.error(Code::Version, at, Target::Value, format!("unsupported format version \"{text}\""), "not 1.x")
            .help("this stagegate reads format 1.x; write \"1.3\", or use the stagegate release that reads this version");
    }
}

fn gate_settings(raw: &RawManifest, r: &mut Reporter<'_>) {
    let gate = KeyPath::root().key("release_gate");
    if raw.release_gate.change_id.trim().is_empty() {
        r.error(
            Code::Value,
            &gate.key("change_id"),
            Target::Value,
            "`change_id` is empty",
            "empty",
        )
        .help("name the change being gated, for example \"rls-2026-05-18-il-contracts\"");
    }
    let scope = gate.key("canary_scope");
    let canary = &raw.release_gate.canary_scope;
    match canary.strategy {
        CanaryStrategy::RequisitionTag if canary.include_tags.is_empty() => {
            r.error(
                Code::Value,
                &scope.key("include_tags"),
                Target::Key,
                "the `requisition_tag` strategy needs at least one tag in `include_tags`",
                "no tags",
            )
            .help("list the requisition tags of the canary, for example [\"canary-il\"]");
        }
        CanaryStrategy::RequisitionTag => {}
    }
    non_empty_unique(&canary.include_tags, &scope.key("include_tags"), "tag", r);
    non_empty_unique(
        &canary.exclude_locations,
        &scope.key("exclude_locations"),
        "location",
        r,
    );
    for (i, location) in canary.exclude_locations.iter().enumerate() {
        if !(location.len() == 2 && location.chars().all(|c| c.is_ascii_uppercase())) {
            r.push(Level::Warning, Code::Value, &scope.key("exclude_locations").index(i), Target::Value,
                format!("location \"{location}\" is not an ISO 3166-1 alpha-2 code"), "not a country code")
                .help("requisition locations are compared exactly; the mock ATS uses codes such as \"DE\" and \"FR\"");
        }
    }

    let switch = gate.key("kill_switch");
    let ks = &raw.release_gate.kill_switch;
    if ks.name.trim().is_empty() {
        r.error(
            Code::Value,
            &switch.key("name"),
            Target::Value,
            "kill switch `name` is empty",
            "empty",
        );
    }
    let triggers = switch.key("trigger_conditions");
    let rate = ks.trigger_conditions.ats_http_5xx_rate_pct_over_5m;
    if !(rate > 0.0 && rate <= 100.0) {
        r.error(Code::Value, &triggers.key("ats_http_5xx_rate_pct_over_5m"), Target::Value,
            format!("5xx rate threshold {rate} is not a percentage above 0 and at most 100"), "out of range")
            .help("a percentage such as 2 trips the switch when more than 2% of ATS calls fail with 5xx over 5 minutes");
    }
    let count = ks.trigger_conditions.mapping_error_count_over_10m;
    if !(count >= 1.0 && count.fract() == 0.0) {
        r.error(
            Code::Value,
            &triggers.key("mapping_error_count_over_10m"),
            Target::Value,
            format!("mapping error threshold {count} is not a whole number of at least 1"),
            "out of range",
        );
    }
    let channels = switch.key("action").key("notify_channels");
    if ks.action.notify_channels.is_empty() {
        r.error(
            Code::Value,
            &channels,
            Target::Key,
            "`notify_channels` is empty: nobody would hear that the switch tripped",
            "no channels",
        )
        .help("list at least one channel, for example [\"#recruiting-ops\"]");
    }
    non_empty_unique(&ks.action.notify_channels, &channels, "channel", r);

    if let Some(obs) = &raw.observability {
        let fields = KeyPath::root()
            .key("observability")
            .key("log_fields_required");
        non_empty_unique(&obs.log_fields_required, &fields, "log field", r);
    }
}

fn non_empty_unique(items: &[String], at: &KeyPath, what: &str, r: &mut Reporter<'_>) {
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if item.trim().is_empty() {
            r.error(
                Code::Value,
                &at.index(i),
                Target::Value,
                format!("empty {what}"),
                "empty",
            );
        } else if !seen.insert(item.as_str()) {
            r.error(
                Code::Duplicate,
                &at.index(i),
                Target::Value,
                format!("{what} \"{item}\" is listed twice"),
                "duplicate",
            )
            .help("remove the repetition");
        }
    }
}

/// `checks:` names real checks, and a check turned off says why.
fn check_settings(raw: &RawManifest, r: &mut Reporter<'_>) {
    let at = KeyPath::root().key("checks");
    let ids: Vec<&str> = crate::catalog::CHECKS.iter().map(|c| c.id).collect();
    for (id, setting) in &raw.checks {
        let entry = at.key(id);
        if crate::catalog::check_info(id).is_none() {
            let diagnostic = r.error(
                Code::Reference,
                &entry,
                Target::Key,
                format!("no check is called `{id}`"),
                "unknown check",
            );
            match did_you_mean(id, ids.iter().copied()) {
                Some(s) => diagnostic.help(format!("did you mean `{s}`?")),
                None => diagnostic.help(format!("the checks are {}", ids.join(", "))),
            };
        }
        let reason = setting.reason.as_deref().map(str::trim);
        if reason == Some("") {
            r.error(
                Code::Value,
                &entry.key("reason"),
                Target::Value,
                format!("the reason for adjusting `{id}` is empty"),
                "empty",
            )
            .help("say why, in words the people reading the report will understand");
        } else if setting.disabled() && reason.is_none() {
            r.error(
                Code::Value,
                &entry.key("enabled"),
                Target::Value,
                format!("check `{id}` is turned off without a `reason`"),
                "no reason given",
            )
            .help("add `reason: \"…\"` beside `enabled: false`; every report prints it");
        }
        if setting.disabled() && setting.severity.is_some() {
            r.push(
                Level::Warning,
                Code::Value,
                &entry.key("severity"),
                Target::Value,
                format!("`severity` has no effect: check `{id}` is turned off"),
                "ignored",
            )
            .help(
                "remove `severity`, or remove `enabled: false` to run the check at that severity",
            );
        } else if setting.disabled() && setting.required == Some(true) {
            r.error(
                Code::Value,
                &entry.key("required"),
                Target::Value,
                format!("check `{id}` is both turned off and required"),
                "contradiction",
            )
            .help("remove `enabled: false` to require the check, or `required: true` to turn it off");
        } else if !setting.disabled() && setting.severity.is_none() && setting.required.is_none() {
            r.push(
                Level::Warning,
                Code::Value,
                &entry,
                Target::Key,
                format!("`checks.{id}` changes nothing"),
                "no effect",
            )
            .help("set `severity: warn` or `severity: block-release`, `required: true`, or `enabled: false` with a `reason`");
        }
    }
}

fn list_files(raw: &RawManifest, lists: &ListCatalog, r: &mut Reporter<'_>) {
    let at = KeyPath::root().key("lists");
    for name in raw.lists.keys() {
        if let Err(err) = lists.get(name) {
            r.error(
                Code::Reference,
                &at.key(name),
                Target::Value,
                format!("{err}: {}", err.source),
                "cannot read",
            )
            .help("paths under `lists:` are relative to the manifest's folder");
        }
    }
}

fn field_path(text: &str, at: &KeyPath, target: Target, r: &mut Reporter<'_>) -> Option<FieldPath> {
    match FieldPath::parse(text) {
        Ok(path) => Some(path),
        Err(err) => {
            let target = match target {
                Target::Key => Target::Key,
                _ => Target::Inside(err.offset, 1),
            };
            r.error(
                Code::FieldPath,
                at,
                target,
                format!("malformed field path \"{text}\": {err}"),
                "here",
            )
            .help("write dotted paths such as `verification.session_id`");
            None
        }
    }
}

fn contract(
    def: &super::model::ContractDef,
    at: &KeyPath,
    lists: &ListCatalog,
    r: &mut Reporter<'_>,
) -> Option<Contract> {
    let mut ok = true;
    let mut required = Vec::new();
    let mut seen = HashSet::new();
    for (i, text) in def.required_fields.iter().enumerate() {
        let item = at.key("required_fields").index(i);
        match field_path(text, &item, Target::Value, r) {
            Some(path) if !seen.insert(path.clone()) => {
                r.error(
                    Code::Duplicate,
                    &item,
                    Target::Value,
                    format!("required field `{path}` is listed twice"),
                    "duplicate",
                );
            }
            Some(path) => required.push(path),
            None => ok = false,
        }
    }
    let mut enums = Vec::new();
    for (key, values) in &def.enums {
        let entry = at.key("enums").key(key);
        let Some(path) = field_path(key, &entry, Target::Key, r) else {
            ok = false;
            continue;
        };
        if values.is_empty() {
            r.error(
                Code::Value,
                &entry,
                Target::Key,
                format!("enum `{key}` lists no values"),
                "empty",
            );
            ok = false;
        }
        non_empty_unique(values, &entry, "enum value", r);
        enums.push((path, values.clone()));
    }
    let mut assertions = Vec::new();
    for (i, text) in def.assertions.iter().enumerate() {
        let item = at.key("assertions").index(i);
        match Assertion::parse(text, lists) {
            Ok(assertion) => assertions.push((i, assertion)),
            Err(err) => {
                ok = false;
                let diagnostic = r.error(
                    Code::Assertion,
                    &item,
                    Target::Inside(err.span.start, err.span.len()),
                    format!("assertion does not parse: {}", err.message),
                    "here",
                );
                diagnostic.help(
                    err.help
                        .unwrap_or_else(|| "the assertion grammar is in the README".into()),
                );
            }
        }
    }
    declared_paths(def, at, &required, &enums, &assertions, r);
    if !ok {
        return None;
    }
    let assertions = assertions.into_iter().map(|(_, a)| a).collect();
    let compiled = Contract::compile(ContractParts {
        name: def.name.clone(),
        producer: def.producer.clone(),
        consumer: def.consumer.clone(),
        severity: def.on_failure.severity,
        ticket_owner: def.on_failure.ticket_owner.clone(),
        required,
        enums,
        assertions,
    });
    match compiled {
        Ok(contract) => Some(contract),
        Err(err) => {
            r.error(Code::Assertion, &at.key("assertions"), Target::Key, err.to_string(), "from these assertions")
                .help("JSON Schema patterns use ECMA 262 regex syntax; keep `matches` regexes to the common subset");
            None
        }
    }
}

/// Warns about assertions on undeclared fields and rejects a path used as both a leaf and a parent.
fn declared_paths(
    def: &super::model::ContractDef,
    at: &KeyPath,
    required: &[FieldPath],
    enums: &[(FieldPath, Vec<String>)],
    assertions: &[(usize, Assertion)],
    r: &mut Reporter<'_>,
) {
    let declared: Vec<&FieldPath> = required
        .iter()
        .chain(enums.iter().map(|(p, _)| p))
        .collect();
    let declared_text: Vec<&str> = declared.iter().map(|p| p.as_str()).collect();
    for (i, assertion) in assertions {
        let i = *i;
        for path in assertion.paths() {
            if declared.contains(&path) {
                continue;
            }
            let item = at.key("assertions").index(i);
            let offset = def.assertions[i].find(path.as_str()).unwrap_or(0);
            let diagnostic = r.push(
                Level::Warning,
                Code::Reference,
                &item,
                Target::Inside(offset, path.as_str().len()),
                format!("assertion reads `{path}`, which is neither a required field nor an enum"),
                "undeclared field",
            );
            match did_you_mean(path.as_str(), declared_text.iter().copied()) {
                Some(s) => diagnostic.help(format!("did you mean `{s}`?")),
                None => diagnostic.help("it is judged only when present; add it to `required_fields` if every event must carry it"),
            };
        }
    }
    let mut every: Vec<(&FieldPath, KeyPath)> = Vec::new();
    for (i, path) in required.iter().enumerate() {
        every.push((path, at.key("required_fields").index(i)));
    }
    for (path, _) in enums {
        every.push((path, at.key("enums").key(path.as_str())));
    }
    for (i, assertion) in assertions {
        for path in assertion.paths() {
            every.push((path, at.key("assertions").index(*i)));
        }
    }
    for (leaf, _) in &every {
        if let Some((child, place)) = every.iter().find(|(other, _)| leaf.is_parent_of(other))
            && (required.contains(leaf) || enums.iter().any(|(p, _)| p == *leaf))
        {
            r.error(
                Code::FieldPath,
                place,
                Target::Value,
                format!(
                    "`{child}` lies inside `{leaf}`, which the contract also treats as a value"
                ),
                "conflicting paths",
            )
            .help(format!(
                "a field cannot be both a value and an object; keep `{child}` or `{leaf}`"
            ));
            return;
        }
    }
}

fn candidates(
    raw: &RawManifest,
    contracts: &ContractSet,
    envelope: &Envelope,
    r: &mut Reporter<'_>,
) -> Vec<Candidate> {
    let at = KeyPath::root().key("sandbox_dataset").key("candidates");
    let id_rules = IdRules::new(contracts, &envelope.candidate_id);
    let raw_names: Vec<&str> = raw.contracts.iter().map(|c| c.name.as_str()).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, candidate) in raw.sandbox_dataset.candidates.iter().enumerate() {
        let item = at.index(i);
        let id = candidate.ats_candidate_id.as_str();
        if id.trim().is_empty() {
            r.error(
                Code::Value,
                &item.key("ats_candidate_id"),
                Target::Value,
                "candidate id is empty",
                "empty",
            );
        } else if let Some(first) = seen.insert(id, i) {
            r.error(
                Code::Duplicate,
                &item.key("ats_candidate_id"),
                Target::Value,
                format!("candidate `{id}` is listed twice"),
                "duplicate",
            )
            .help(format!(
                "the first is candidates[{first}]; candidate ids are unique"
            ));
        } else if let Some(c) = id.chars().find(|c| !crate::contract::ids::path_safe(*c)) {
            r.error(
                Code::Value,
                &item.key("ats_candidate_id"),
                Target::Value,
                format!("candidate id `{id}` has {c:?}, which cannot stand in a URL path"),
                "unsafe character",
            )
            .help("integrations put the id in `/v1/candidates/{id}`: use no `/`, `?`, `#`, `%` or whitespace");
        }
        if let Some(violation) = id_rules.violation(id) {
            r.error(
                Code::Value,
                &item.key("ats_candidate_id"),
                Target::Value,
                format!(
                    "candidate id breaks contract `{}`: {}",
                    violation.contract, violation.message
                ),
                "invalid id",
            )
            .help(format!(
                "every event of this candidate would fail `{}`",
                violation.assertion
            ));
        }
        let mut expected = None;
        if let Some(sequence) = &candidate.expected_sequence {
            let mut events = Vec::new();
            for (j, entry) in sequence.iter().enumerate() {
                if let Some(event) = expected_event(
                    entry,
                    &item.key("expected_sequence").index(j),
                    contracts,
                    &raw_names,
                    r,
                ) {
                    events.push(event);
                }
            }
            expected = Some(events);
        }
        out.push(Candidate {
            id: CandidateId(id.to_owned()),
            profile: candidate.profile.clone(),
            expected_sequence: expected,
            requisition: candidate.requisition.clone(),
        });
    }
    enough_ids(raw, &id_rules, r);
    out
}

/// Ids a run must be able to make beyond the manifest's own, checked at load time: a
/// rule that admits fewer (a literal list of three, a fixed id) cannot run at all.
/// The run's own count depends on its scenarios; it reports a shortfall by rule too.
const IDS_CHECKED: usize = 64;

/// The contracts' id rules admit enough unused ids for the harness's copies.
fn enough_ids(raw: &RawManifest, rules: &IdRules, r: &mut Reporter<'_>) {
    let mut mint = IdMint::new(rules, 0);
    for candidate in &raw.sandbox_dataset.candidates {
        mint.reserve(&candidate.ats_candidate_id);
    }
    let source = raw
        .sandbox_dataset
        .candidates
        .first()
        .map_or("CAND", |c| c.ats_candidate_id.as_str());
    let short = (0..IDS_CHECKED).find(|n| mint.mint(source, &format!("v{n:02}")).is_err());
    let Some(made) = short else {
        return;
    };
    let Some((contract, assertion)) = rules.first_rule() else {
        return;
    };
    let place = raw
        .contracts
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == contract)
        .and_then(|(i, c)| {
            c.assertions
                .iter()
                .position(|a| a == assertion)
                .map(|j| KeyPath::root().key("contracts").index(i).key("assertions").index(j))
        })
        .unwrap_or_else(|| KeyPath::root().key("contracts"));
    r.error(
        Code::Value,
        &place,
        Target::Value,
        format!(
            "the contracts' candidate-id rules admit only {made} more id{} beyond the manifest's candidates; a run makes its own (a copy of each candidate per scenario, out-of-scope controls, kill-switch traffic) and needs at least {IDS_CHECKED}",
            if made == 1 { "" } else { "s" }
        ),
        "too few ids",
    )
    .help(format!(
        "widen the rules on `{}`: {}",
        rules.field(),
        rules.describe()
    ));
}

/// The manifest's `envelope:`, each path parsed, defaults filled in.
fn envelope(raw: &RawManifest, r: &mut Reporter<'_>) -> Envelope {
    let mut envelope = Envelope::default();
    let Some(def) = &raw.envelope else {
        return envelope;
    };
    let at = KeyPath::root().key("envelope");
    for (key, written, slot) in [
        ("event_id", &def.event_id, &mut envelope.event_id),
        ("idempotency_key", &def.idempotency_key, &mut envelope.idempotency_key),
        ("occurred_at", &def.occurred_at, &mut envelope.occurred_at),
        ("candidate_id", &def.candidate_id, &mut envelope.candidate_id),
    ] {
        let Some(written) = written else {
            continue;
        };
        match FieldPath::parse(written) {
            Ok(path) => *slot = path,
            Err(err) => {
                r.error(
                    Code::FieldPath,
                    &at.key(key),
                    Target::Value,
                    format!("`{written}` is not a field path: {err}"),
                    "bad path",
                )
                .help("a dotted path such as `data.object.id`: letters, digits, `_` and `-`, joined by `.`");
            }
        }
    }
    envelope
}

/// Every contract requires the envelope's fields, or `validate` says which checks
/// would lose their footing on real traffic (the harness's own events always carry
/// them, so a run still judges them).
fn envelope_coverage(
    raw: &RawManifest,
    contracts: &ContractSet,
    envelope: &Envelope,
    r: &mut Reporter<'_>,
) {
    let at = KeyPath::root().key("contracts");
    for (i, contract) in contracts.iter().enumerate() {
        let missing: Vec<_> = envelope
            .fields()
            .into_iter()
            .filter(|(_, path, _)| !contract.required().contains(path))
            .collect();
        if missing.is_empty() || raw.contracts.get(i).is_none() {
            continue;
        }
        let names: Vec<String> = missing
            .iter()
            .map(|(key, path, _)| format!("`{path}` (the envelope's {key})"))
            .collect();
        let mut checks: Vec<&str> = missing.iter().flat_map(|(_, _, c)| c.iter().copied()).collect();
        checks.sort_unstable();
        checks.dedup();
        r.push(
            Level::Warning,
            Code::Value,
            &at.index(i).key("required_fields"),
            Target::Key,
            format!(
                "contract `{}` does not require {}",
                contract.name(),
                names.join(", ")
            ),
            "envelope field not required",
        )
        .help(format!(
            "an event without it cannot be judged by {}; add it to `required_fields`, or name the field the vendor uses under `envelope:`",
            checks.join(", ")
        ));
    }
}

fn expected_event(
    entry: &str,
    at: &KeyPath,
    contracts: &ContractSet,
    raw_names: &[&str],
    r: &mut Reporter<'_>,
) -> Option<ExpectedEvent> {
    let (name, value) = match entry.split_once(':') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (entry.trim(), None),
    };
    let Some(index) = contracts.index_of(name) else {
        if raw_names.contains(&name) {
            // The contract exists but did not compile; its own errors say why.
            return None;
        }
        let names: Vec<&str> = contracts.iter().map(|c| c.name().as_str()).collect();
        let diagnostic = r.error(
            Code::Reference,
            at,
            Target::Inside(0, name.len()),
            format!("no contract is called `{name}`"),
            "unknown contract",
        );
        match did_you_mean(name, names.iter().copied()) {
            Some(s) => diagnostic.help(format!("did you mean `{s}`?")),
            None => diagnostic.help(format!("the contracts are {}", names.join(", "))),
        };
        return None;
    };
    let contract = contracts.at(index);
    let Some(value) = value else {
        return Some(ExpectedEvent {
            contract: contract.name().clone(),
            outcome: None,
        });
    };
    let value_offset = entry.find(':').map_or(0, |colon| {
        let raw = &entry[colon + 1..];
        colon + 1 + (raw.len() - raw.trim_start().len())
    });
    let owners: Vec<&(FieldPath, Vec<String>)> = contract
        .enums()
        .iter()
        .filter(|(_, values)| values.iter().any(|v| v == value))
        .collect();
    match owners.as_slice() {
        [(path, _)] => Some(ExpectedEvent {
            contract: contract.name().clone(),
            outcome: Some((path.clone(), value.to_owned())),
        }),
        [] => {
            let all: Vec<&str> = contract
                .enums()
                .iter()
                .flat_map(|(_, v)| v.iter().map(String::as_str))
                .collect();
            let diagnostic = r.error(
                Code::Reference,
                at,
                Target::Inside(value_offset, value.len().max(1)),
                format!("`{value}` is not a value of any enum of `{name}`"),
                "unknown value",
            );
            match (all.is_empty(), did_you_mean(value, all.iter().copied())) {
                (true, _) => diagnostic.help(format!(
                    "`{name}` has no enums; write the entry without `:{value}`"
                )),
                (false, Some(s)) => diagnostic.help(format!("did you mean `{s}`?")),
                (false, None) => diagnostic.help(format!("the values are {}", all.join(", "))),
            };
            None
        }
        several => {
            let paths: Vec<String> = several.iter().map(|(p, _)| format!("`{p}`")).collect();
            r.error(Code::Reference, at, Target::Inside(value_offset, value.len().max(1)),
                format!("`{value}` is a value of several enums of `{name}` ({}), so it does not say which field it sets", paths.join(", ")), "ambiguous")
                .help("rename one of the enum values so each expected outcome names exactly one field");
            None
        }
    }
}

/// Checks a hiring policy's cross-references and values.
pub(crate) fn hiring_policy(policy: &HiringPolicy, r: &mut Reporter<'_>) {
    let root = KeyPath::root();
    version(&policy.policy_version.0, &root.key("policyVersion"), r);
    if policy.owner.is_empty() {
        r.error(
            Code::Value,
            &root.key("owner"),
            Target::Key,
            "`owner` names no roles",
            "empty",
        );
    }
    let roles: Vec<&str> = policy.owner.keys().map(String::as_str).collect();
    let assign = root
        .key("reconciliation")
        .key("onMismatch")
        .key("assignOwner");
    for (key, role) in [
        (
            "default",
            &policy.reconciliation.on_mismatch.assign_owner.default,
        ),
        (
            "highRisk",
            &policy.reconciliation.on_mismatch.assign_owner.high_risk,
        ),
    ] {
        if !policy.owner.contains_key(role) {
            let diagnostic = r.error(
                Code::Reference,
                &assign.key(key),
                Target::Value,
                format!("`{role}` is not an owner role"),
                "unknown role",
            );
            match did_you_mean(role, roles.iter().copied()) {
                Some(s) => diagnostic.help(format!("did you mean `{s}`?")),
                None => {
                    diagnostic.help(format!("the roles under `owner` are {}", roles.join(", ")))
                }
            };
        }
    }
    let mut names = HashSet::new();
    for (i, event) in policy.ats_events.iter().enumerate() {
        let at = root.key("atsEvents").index(i);
        if !names.insert(event.name.as_str()) {
            r.error(
                Code::Duplicate,
                &at.key("name"),
                Target::Value,
                format!("event `{}` is defined twice", event.name),
                "duplicate",
            );
        }
        non_empty_unique(
            &event.required_fields,
            &at.key("requiredFields"),
            "required field",
            r,
        );
        if event.delivery.retry.max_attempts == 0 {
            r.error(
                Code::Value,
                &at.key("delivery").key("retry").key("maxAttempts"),
                Target::Value,
                "`maxAttempts` is 0: the event would never be delivered",
                "zero",
            )
            .help("count the first attempt: 1 means no retries");
        }
        if event.idempotency.ttl_hours == 0 {
            r.error(
                Code::Value,
                &at.key("idempotency").key("ttlHours"),
                Target::Value,
                "`ttlHours` is 0: duplicates would never be recognised",
                "zero",
            );
        }
        key_template(
            &event.idempotency.key_template,
            &event.required_fields,
            &at.key("idempotency").key("keyTemplate"),
            r,
        );
    }
    non_empty_unique(
        &policy.logging.must_log_fields,
        &root.key("logging").key("mustLogFields"),
        "log field",
        r,
    );
    let slas = root.key("slas");
    let positive: BTreeMap<&str, f64> = [
        ("webhookAckSeconds", policy.slas.webhook_ack_seconds),
        ("triggerFanoutSeconds", policy.slas.trigger_fanout_seconds),
        (
            "identityVerificationTargetMinutes",
            policy.slas.identity_verification_target_minutes,
        ),
        ("rubricSubmissionHours", policy.slas.rubric_submission_hours),
    ]
    .into_iter()
    .collect();
    for (key, value) in positive {
        if value <= 0.0 || !value.is_finite() {
            r.error(
                Code::Value,
                &slas.key(key),
                Target::Value,
                format!("`{key}` is {value}; a service level must be above 0"),
                "not positive",
            );
        }
    }
}

fn key_template(template: &str, fields: &[String], at: &KeyPath, r: &mut Reporter<'_>) {
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            r.error(
                Code::Value,
                at,
                Target::Inside(offset + start, 2),
                "unclosed `${` in the key template",
                "unclosed",
            )
            .help("write placeholders as ${fieldName}");
            return;
        };
        let name = &rest[start + 2..start + len];
        if name != "name" && !fields.iter().any(|f| f == name) {
            let known: Vec<&str> = fields.iter().map(String::as_str).chain(["name"]).collect();
            let diagnostic = r.error(
                Code::Reference,
                at,
                Target::Inside(offset + start, len + 1),
                format!("placeholder `${{{name}}}` names no required field of the event"),
                "unknown field",
            );
            match did_you_mean(name, known.iter().copied()) {
                Some(s) => diagnostic.help(format!("did you mean `${{{s}}}`?")),
                None => diagnostic.help(format!("placeholders can name {}", known.join(", "))),
            };
        }
        offset += start + len + 1;
        rest = &rest[start + len + 1..];
    }
}
