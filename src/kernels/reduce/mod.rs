//! Reductions that quantization parameters are derived from: min / max and absmax of a run
//! (and column-wise min / max for per-channel along the last axis), with NaN detection.
//! The index of the first NaN / infinity is found by [`first_non_finite`] only when needed.

use crate::error::{Error, Result};
use crate::kernels::isa::Vector;
use crate::kernels::isa::{self, Isa};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod scalar;
#[cfg(test)]
mod tests;

/// The result of [`minmax`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinMax {
    /// Smallest non-NaN value (`+Inf` if none), never `-0.0`.
    pub min: f32,
    /// Largest non-NaN value (`-Inf` if none), never `-0.0`.
    pub max: f32,
    /// Whether a NaN was seen.
    pub nan: bool,
}

/// Min / max of `x` on the active ISA.
pub fn minmax(x: &[f32]) -> MinMax {
    minmax_with(isa::active(), x)
}

/// [`minmax`] on a given ISA.
pub fn minmax_with(isa: Isa, x: &[f32]) -> MinMax {
    match isa::kernels(isa).reduce {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: AVX-512 supported (checked); slice lengths checked above.
            return unsafe { avx512::minmax(x) };
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: AVX2 + FMA supported (checked); slice lengths checked above.
            return unsafe { avx2::minmax(x) };
        }
        Vector::Scalar => {}
    }
    scalar::minmax(x)
}

/// `max |x|` of `x` (and whether it holds a NaN) on the active ISA.
pub fn absmax(x: &[f32]) -> (f32, bool) {
    absmax_with(isa::active(), x)
}

/// [`absmax`] on a given ISA.
pub fn absmax_with(isa: Isa, x: &[f32]) -> (f32, bool) {
    match isa::kernels(isa).reduce {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: AVX-512 supported (checked); slice lengths checked above.
            return unsafe { avx512::absmax(x) };
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: AVX2 + FMA supported (checked); slice lengths checked above.
            return unsafe { avx2::absmax(x) };
        }
        Vector::Scalar => {}
    }
    scalar::absmax(x)
}

/// Column-wise min / max update on the active ISA; returns whether `row` holds a NaN.
pub fn minmax_columns(row: &[f32], lo: &mut [f32], hi: &mut [f32]) -> Result<bool> {
    minmax_columns_with(isa::active(), row, lo, hi)
}

/// [`minmax_columns`] on a given ISA.
pub fn minmax_columns_with(isa: Isa, row: &[f32], lo: &mut [f32], hi: &mut [f32]) -> Result<bool> {
    if lo.len() != row.len() || hi.len() != row.len() {
        return Err(Error::arg(format!(
            "column accumulators have {} and {} entries, expected {}",
            lo.len(),
            hi.len(),
            row.len()
        )));
    }
    match isa::kernels(isa).reduce {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: AVX-512 supported (checked); slice lengths checked above.
            return Ok(unsafe { avx512::minmax_columns(row, lo, hi) });
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: AVX2 + FMA supported (checked); slice lengths checked above.
            return Ok(unsafe { avx2::minmax_columns(row, lo, hi) });
        }
        Vector::Scalar => {}
    }
    Ok(scalar::minmax_columns(row, lo, hi))
}

/// Index of the first NaN or infinity in `x`.
pub fn first_non_finite(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| !v.is_finite())
}

/// Index of the first NaN in `x`.
pub fn first_nan(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| v.is_nan())
}
