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

/// Large result buffers recycled between calls (the only other process-wide state).
pub mod buffers;
pub mod error;
pub mod parallel;

/// SIMD kernels, one folder per op, dispatched at run time.
pub mod kernels;

/// Calibration-aware compression: activation statistics, GPTQ, SparseGPT, HQQ, SmoothQuant.
pub mod calib;

/// The `.epk` model file (spec in FORMAT.md): header validation, reader, atomic writer.
pub mod format;
/// Whole-model helpers (per-tensor error statistics for the report).
pub mod model;
/// Pruning masks: magnitude, N:M, block, channel, global.
pub mod prune;
/// Quantization parameters (calibration, granularity) and whole-tensor quantize / dequantize.
pub mod quant;
/// Sparse tensors (bit mask or N:M positions + packed values) and their entropy-coded bytes.
pub mod sparse;

#[cfg(feature = "python")]
pub mod python;
