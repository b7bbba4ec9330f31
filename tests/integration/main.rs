//! One integration-test binary: the real CLI, driven through `util::Stagegate`.

mod check;
mod delivery;
mod fault_schedules;
mod hardening;
mod judge;
mod mock;
mod openapi;
mod python_example;
mod relay;
mod relay_breaker;
mod run;
mod sandbox;
mod schemas;
mod serve;
mod teeth;
mod util;
mod validate;
