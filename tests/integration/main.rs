//! One integration-test binary: the real CLI, driven through `util::Stagegate`.

mod check;
mod sandbox;
mod schemas;
mod util;
mod validate;
