//! edgepack: model compression for the edge.
//!
//! Three layers, imports one way (see `CONVENTIONS.md` in the team's shared folder):
//!
//! * the core: [`kernels`] (one op per folder, a scalar twin that defines the semantics and
//!   one file per ISA), [`format`] (the `.epk` file, spec in `FORMAT.md`) and the model logic;
//! * [`python`] (feature `python`): the only code that names pyo3 / numpy;
//! * `python/edgepack/`: the thin Python API.
//!
//! Every fallible core function returns [`error::Result`].

pub mod error;
// .epk file format (issue 5)
pub mod format;
pub mod kernels;
pub mod model;
pub mod parallel;
pub mod quant;
// pruning and sparse storage (issue 4)
pub mod prune;
pub mod sparse;

#[cfg(feature = "python")]
pub mod python;
