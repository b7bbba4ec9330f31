//! Contracts: what an event must look like, and the judgement of one payload.
//!
//! A [`Contract`] is compiled once from the manifest (paths parsed, assertions parsed,
//! JSON Schema generated and compiled) and then judges payloads without further
//! allocation on the passing path. Cross-event assertions (`is stable for same`) need
//! the whole stream; [`Contract::stability_rules`] hands them to whoever holds it.

pub mod assertion;
pub mod ids;
pub mod lists;
pub mod path;
pub(crate) mod regex_gen;
pub mod schema;

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::suggest::did_you_mean;
use assertion::{Assertion, AssertionKind, EvalContext, StableFor, render_value};
use path::FieldPath;

/// How much a failure matters to the release.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Reported; the release may go ahead.
    Warn,
    /// The release is blocked.
    BlockRelease,
}

impl Severity {
    /// The name used in manifests and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::BlockRelease => "block-release",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a contract, as payloads give it in `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ContractName(pub String);

impl ContractName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContractName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of rule a violation broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A required field is absent or null.
    RequiredField,
    /// A value is not one of its enum's values.
    Enum,
    /// An assertion failed.
    Assertion,
    /// The generated JSON Schema rejected what the native checks accepted.
    Schema,
    /// The payload's `"type"` names no contract.
    UnknownType,
    /// The payload is not a JSON object.
    Malformed,
}

impl Rule {
    /// The rule's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RequiredField => "required_field",
            Rule::Enum => "enum",
            Rule::Assertion => "assertion",
            Rule::Schema => "schema",
            Rule::UnknownType => "unknown_type",
            Rule::Malformed => "malformed",
        }
    }
}

/// One broken rule in one payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Which rule.
    pub rule: Rule,
    /// JSON Pointer of the offending field (`""` for the whole payload).
    pub path: String,
    /// What was expected and what was seen.
    pub message: String,
    /// The assertion's source text, for `assertion` violations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion: Option<String>,
}

/// A compiled contract.
pub struct Contract {
    name: ContractName,
    producer: String,
    consumer: String,
    severity: Severity,
    ticket_owner: String,
    required: Vec<FieldPath>,
    enums: Vec<(FieldPath, Vec<String>)>,
    assertions: Vec<Assertion>,
    schema: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The parts a contract is compiled from, already parsed.
pub struct ContractParts {
    /// The contract's name.
    pub name: String,
    /// The producer.
    pub producer: String,
    /// The consumer.
    pub consumer: String,
    /// Severity of violations.
    pub severity: Severity,
    /// Who gets the ticket.
    pub ticket_owner: String,
    /// Required paths.
    pub required: Vec<FieldPath>,
    /// Enumerated paths.
    pub enums: Vec<(FieldPath, Vec<String>)>,
    /// Parsed assertions.
    pub assertions: Vec<Assertion>,
}

/// Why the generated schema of a contract could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("the generated JSON Schema of `{contract}` does not compile: {message}")]
pub struct SchemaCompileError {
    /// The contract.
    pub contract: String,
    /// The validator's complaint.
    pub message: String,
}

impl Contract {
    /// Compiles a contract: generates its JSON Schema and builds the validator.
    pub fn compile(parts: ContractParts) -> Result<Contract, SchemaCompileError> {
        let schema = schema::contract_schema(&schema::SchemaInput {
            name: &parts.name,
            producer: &parts.producer,
            consumer: &parts.consumer,
            required: &parts.required,
            enums: &parts.enums,
            assertions: &parts.assertions,
        });
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|err| SchemaCompileError {
                contract: parts.name.clone(),
                message: err.to_string(),
            })?;
        Ok(Contract {
            name: ContractName(parts.name),
            producer: parts.producer,
            consumer: parts.consumer,
            severity: parts.severity,
            ticket_owner: parts.ticket_owner,
            required: parts.required,
            enums: parts.enums,
            assertions: parts.assertions,
            schema,
            validator,
        })
    }

    /// The contract's name.
    pub fn name(&self) -> &ContractName {
        &self.name
    }

    /// Who emits the event.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Who consumes it.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// What a violation means for the release.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// Who gets the ticket.
    pub fn ticket_owner(&self) -> &str {
        &self.ticket_owner
    }

    /// Required paths.
    pub fn required(&self) -> &[FieldPath] {
        &self.required
    }

    /// Enumerated paths and their values.
    pub fn enums(&self) -> &[(FieldPath, Vec<String>)] {
        &self.enums
    }

    /// The parsed assertions.
    pub fn assertions(&self) -> &[Assertion] {
        &self.assertions
    }

    /// The generated JSON Schema.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The cross-event stability rules, with the assertion each came from.
    pub fn stability_rules(&self) -> impl Iterator<Item = (&Assertion, &StableFor)> {
        self.assertions.iter().filter_map(|a| match a.kind() {
            AssertionKind::StableFor(rule) => Some((a, rule)),
            AssertionKind::Each(_) => None,
        })
    }

    /// Judges one payload of this contract, appending every per-event violation.
    pub fn check(&self, payload: &Value, ctx: &EvalContext, out: &mut Vec<Violation>) {
        let first = out.len();
        for path in &self.required {
            if path.lookup(payload).is_none() {
                out.push(Violation {
                    rule: Rule::RequiredField,
                    path: path.json_pointer(),
                    message: format!("missing required field `{path}`"),
                    assertion: None,
                });
            }
        }
        for (path, values) in &self.enums {
            let Some(value) = path.lookup(payload) else {
                continue;
            };
            if value
                .as_str()
                .is_some_and(|s| values.iter().any(|v| v == s))
            {
                continue;
            }
            let hint = value
                .as_str()
                .and_then(|s| did_you_mean(s, values.iter().map(String::as_str)))
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            out.push(Violation {
                rule: Rule::Enum,
                path: path.json_pointer(),
                message: format!(
                    "`{path}` is {}, expected one of {}{hint}",
                    render_value(value),
                    values.join(", ")
                ),
                assertion: None,
            });
        }
        for assertion in &self.assertions {
            let AssertionKind::Each(clauses) = assertion.kind() else {
                continue;
            };
            // Report the first failing clause: later ones usually fail for the same reason.
            if let Some((clause, message)) = clauses
                .iter()
                .find_map(|c| c.evaluate(payload, ctx).map(|m| (c, m)))
            {
                out.push(Violation {
                    rule: Rule::Assertion,
                    path: clause.subject.json_pointer(),
                    message,
                    assertion: Some(assertion.source().to_owned()),
                });
            }
        }
        if self.validator.is_valid(payload) {
            return;
        }
        // The schema is a second opinion: report only what the native checks missed.
        let native: Vec<String> = out[first..].iter().map(|v| v.path.clone()).collect();
        for error in self.validator.iter_errors(payload) {
            let pointer = error.instance_path().as_str().to_owned();
            let covered = native.iter().any(|p| {
                p == &pointer
                    || (p.starts_with(&pointer) && p.as_bytes().get(pointer.len()) == Some(&b'/'))
            });
            if !covered {
                out.push(Violation {
                    rule: Rule::Schema,
                    path: pointer,
                    message: format!("JSON Schema: {error}"),
                    assertion: None,
                });
            }
        }
    }
}

/// Every contract of a manifest, by name.
#[derive(Debug, Default)]
pub struct ContractSet {
    contracts: Vec<Contract>,
    by_name: HashMap<String, usize>,
}

impl ContractSet {
    /// Builds the set; names are unique (the manifest loader checks that first).
    pub fn new(contracts: Vec<Contract>) -> Self {
        let by_name = contracts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.0.clone(), i))
            .collect();
        ContractSet { contracts, by_name }
    }

    /// The contract called `name`.
    pub fn get(&self, name: &str) -> Option<&Contract> {
        self.by_name.get(name).map(|&i| &self.contracts[i])
    }

    /// The position of the contract called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The contract at `index`.
    pub fn at(&self, index: usize) -> &Contract {
        &self.contracts[index]
    }

    /// Every contract, in manifest order.
    pub fn iter(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.iter()
    }

    /// How many contracts.
    pub fn len(&self) -> usize {
        self.contracts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.contracts.is_empty()
    }

    /// Finds a payload's contract by its `"type"`, or explains why there is none.
    pub fn resolve(&self, payload: &Value) -> Result<usize, Violation> {
        let Some(object) = payload.as_object() else {
            return Err(Violation {
                rule: Rule::Malformed,
                path: String::new(),
                message: format!(
                    "a payload is a JSON object, found {}",
                    assertion::type_name(payload)
                ),
                assertion: None,
            });
        };
        let Some(kind) = object.get("type") else {
            return Err(Violation {
                rule: Rule::UnknownType,
                path: "/type".into(),
                message: "payload has no \"type\" naming its contract".into(),
                assertion: None,
            });
        };
        let Some(name) = kind.as_str() else {
            return Err(Violation {
                rule: Rule::UnknownType,
                path: "/type".into(),
                message: format!(
                    "\"type\" is {}, expected a contract name",
                    render_value(kind)
                ),
                assertion: None,
            });
        };
        self.index_of(name).ok_or_else(|| {
            let names = self.contracts.iter().map(|c| c.name.as_str());
            let hint = did_you_mean(name, names)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            let known: Vec<&str> = self.contracts.iter().map(|c| c.name.as_str()).collect();
            Violation {
                rule: Rule::UnknownType,
                path: "/type".into(),
                message: format!(
                    "no contract is called \"{name}\"{hint}; the manifest has {}",
                    known.join(", ")
                ),
                assertion: None,
            }
        })
    }
}
