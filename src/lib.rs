//! stagegate: a contract-testing harness and sandbox simulator for hiring-pipeline
//! integrations (ATS ⇄ integration ⇄ identity-verification vendor).
//!
//! The library does the work; the `stagegate` binary is a thin shell over [`cli`].
//! The flow, one module a step:
//!
//! - [`manifest`] loads release-gate manifests and hiring policies with placed
//!   diagnostics (file, line, column, key path, hint).
//! - [`contract`] compiles contracts: dotted field paths, the assertion language,
//!   JSON Schema generation, the judgement of one payload.
//! - [`check`] streams payloads from files or stdin through the contracts on every core.
//! - [`delivery`] signs webhooks (Standard Webhooks) and sends planned events to the
//!   integration with retries, backoff and perturbations.
//! - [`sandbox`] enriches the manifest's candidates with fake but realistic people,
//!   requisitions and risk tiers, synthesizes their contract-valid events, and writes
//!   the large datasets of `stagegate sandbox generate`, all from one seed.
//! - [`observe`] is the hash-chained observation log every exchange of a run goes to.
//! - [`run`] carries out a gate run: mocks, the integration, the scenarios' deliveries.
//! - [`judge`] judges a run's observation log against its plan, streamed: one fold per
//!   check, the log never held whole.
//! - [`http`] is the server plumbing (accept loop, limits, dropped connections) the
//!   mocks, `serve` and the reference relay share.
//! - [`record`] captures a vendor's real webhooks (signature verified, fsynced before
//!   the acknowledgement); [`drift`] infers their shape and classifies every change
//!   against the contracts and a committed baseline.
//! - [`exit`] holds the exit codes a CI release gate relies on.
//!
//! ```no_run
//! use stagegate::manifest::Manifest;
//! use stagegate::check::{Checker, report::JsonReport};
//!
//! let manifest = Manifest::load("manifests/release-gate.yaml".as_ref()).expect("valid").value;
//! let mut report = JsonReport::start(std::io::stdout()).expect("stdout");
//! let mut checker = Checker::new(&manifest);
//! checker.check_reader("payloads.jsonl", std::fs::File::open("payloads.jsonl").expect("exists"), &mut report).expect("readable");
//! report.finish(checker.summary()).expect("stdout");
//! ```

pub mod catalog;
pub mod check;
pub mod cli;
pub mod contract;
pub mod delivery;
pub mod drift;
pub mod evidence;
pub mod exit;
pub mod http;
pub(crate) mod intern;
pub mod judge;
pub mod limits;
pub mod manifest;
pub mod mock;
pub mod observe;
pub mod protocol;
pub mod reconcile;
pub mod record;
pub mod relay;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod serve;
pub mod suggest;
pub mod trace;
pub mod verdict;
