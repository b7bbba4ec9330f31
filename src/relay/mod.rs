//! The reference relay: a correct, production-shaped integration, and the default
//! integration of `stagegate run`.

pub mod store;
