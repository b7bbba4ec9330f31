//! A gate run: scenarios, the integration's lifecycle, and the run's artifacts.

pub mod plan;
pub mod sut;
