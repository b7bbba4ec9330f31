//! The sandbox: risk-tiered candidates enriched with fake but realistic people,
//! deterministic from the run's seed, and the events they produce.

pub mod model;
