//! One integration-test binary: the real CLI, driven through `util::Stagegate`.

mod check;
mod mock;
mod openapi;
mod schemas;
mod util;
mod validate;
