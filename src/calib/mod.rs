//! Calibration-aware compression: activation statistics and the solvers that use them.
//!
//! * [`stats`]: per-layer activation statistics (`X^T X` in float64, token count, per-input
//!   channel sum, sum |x|, sum x^2, max |x|), accumulated from batches of activations.
//! * [`hessian`]: the shared Hessian machinery (dead channels, damping that escalates until
//!   the Cholesky factorisation succeeds, activation order, the upper Cholesky factor of H^-1).
//! * [`grid`]: a fixed quantization grid (scale and zero point per element group), rounding
//!   exactly as the `.epk` `quant` encoding decodes.
//! * [`gptq`], [`sparsegpt`]: the OBS-style column solvers (Frantar et al. 2022, Frantar &
//!   Alistarh 2023) on a weight in PyTorch `(out, in)` layout.
//! * [`objective`]: the calibrated output error `tr((W - Q) H (W - Q)^T)`.
//! * [`hqq`]: data-free half-quadratic refinement of scales and zero points.
//! * [`smooth`]: SmoothQuant per-input-channel migration scales.
//! * [`awq`]: AWQ per-input-channel scale search (activation-aware weight quantization).
//!
//! Weights are `(out, in)` row-major `f32`; `H` is `(in, in)` row-major `f64`.

pub mod awq;
pub mod gptq;
pub mod grid;
pub mod hessian;
pub mod hqq;
pub mod objective;
pub mod smooth;
pub mod sparsegpt;
pub mod stats;

#[cfg(test)]
mod tests;
