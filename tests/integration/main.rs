//! One integration-test binary: the real CLI, driven through `util::Stagegate`.

mod any_manifest;
mod check;
mod delivery;
mod drift;
mod evidence;
mod fault_schedules;
mod hardening;
mod html_report;
mod judge;
mod mock;
mod openapi;
mod python_example;
mod python_gate;
mod record;
mod relay;
mod relay_breaker;
mod run;
mod sandbox;
mod schemas;
mod serve;
mod shard;
mod teeth;
mod trace;
mod util;
mod validate;
mod workflows;
