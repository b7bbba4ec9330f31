//! One integration-test binary: the real CLI, driven through `util::Stagegate`.

mod check;
mod delivery;
mod evidence;
mod fault_schedules;
mod html_report;
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
mod trace;
mod util;
mod validate;
