//! Whole-model compression logic that is not a file format: the error statistics of the
//! per-layer report.

pub mod stats;
