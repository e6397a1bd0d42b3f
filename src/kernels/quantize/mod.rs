//! Quantize a contiguous run of float32 to 8-bit integers (int8 / uint8 / the int4 / uint4
//! values before packing): `q = clamp(round(x op factor), qmin - zp, qmax - zp) + zp`.
//! See [`scalar`] for the exact semantics of each [`Rounding`].

use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod scalar;
#[cfg(test)]
mod tests;

/// How `x` and the factor give the value that is rounded, and how it is rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// ONNX QuantizeLinear: `x / scale`, ties to even.
    Div,
    /// torch: `x * float32(1 / scale)`, ties to even, zero point added after rounding.
    Mul,
    /// TFLite weights: `x * multiplier`, half away from zero.
    MulAway,
}

/// The parameters of one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// How to round.
    pub rounding: Rounding,
    /// The scale (`Div`) or multiplier (`Mul`, `MulAway`).
    pub factor: f32,
    /// The zero point, in `qmin..=qmax`.
    pub zp: i32,
    /// Smallest output value (e.g. -128).
    pub qmin: i32,
    /// Largest output value (e.g. 127).
    pub qmax: i32,
}

impl Params {
    /// `(qmin - zp, qmax - zp)` as float32 (exact: small integers).
    pub fn bounds(&self) -> (f32, f32) {
        ((self.qmin - self.zp) as f32, (self.qmax - self.zp) as f32)
    }
}

fn check_range(qmin: i32, qmax: i32) -> Result<()> {
    if !(-128..=255).contains(&qmin)
        || !(-128..=255).contains(&qmax)
        || qmin > qmax
        || qmax - qmin > 255
    {
        return Err(Error::arg(format!(
            "quantized range [{qmin}, {qmax}] does not fit one byte"
        )));
    }
    Ok(())
}

fn check(x: usize, out: usize) -> Result<()> {
    if x != out {
        return Err(Error::arg(format!(
            "`out` has {out} elements, expected {x} (one per input element)"
        )));
    }
    Ok(())
}

/// Quantize `x` into `out` with one set of parameters, on the active ISA.
pub fn quantize(x: &[f32], out: &mut [u8], p: &Params) -> Result<()> {
    quantize_with(isa::active(), x, out, p)
}

/// [`quantize`] on a given ISA (which must be supported by this CPU).
pub fn quantize_with(isa: Isa, x: &[f32], out: &mut [u8], p: &Params) -> Result<()> {
    check(x.len(), out.len())?;
    check_range(p.qmin, p.qmax)?;
    if p.zp < p.qmin || p.zp > p.qmax {
        return Err(Error::arg(format!(
            "zero point {} is outside [{}, {}]",
            p.zp, p.qmin, p.qmax
        )));
    }
    run(isa, x, out, p);
    Ok(())
}

fn run(isa: Isa, x: &[f32], out: &mut [u8], p: &Params) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa.includes(Isa::Avx512) && isa.is_supported() {
            // SAFETY: the CPU supports AVX-512 (checked); lengths are equal (checked by caller).
            unsafe { avx512::quantize(x, out, p) };
            return;
        }
        if isa.includes(Isa::Avx2) && isa.is_supported() {
            // SAFETY: the CPU supports AVX2 + FMA (checked); lengths are equal.
            unsafe { avx2::quantize(x, out, p) };
            return;
        }
    }
    scalar::quantize(x, out, p)
}

/// Quantize with per-element parameters `(factor[i], zp[i])` (blocked quantization with an
/// inner dimension, per-channel along the last axis), on the active ISA.
pub fn quantize_each(
    x: &[f32],
    out: &mut [u8],
    factor: &[f32],
    zp: &[i32],
    rounding: Rounding,
    qmin: i32,
    qmax: i32,
) -> Result<()> {
    quantize_each_with(isa::active(), x, out, factor, zp, rounding, qmin, qmax)
}

/// [`quantize_each`] on a given ISA.
#[allow(clippy::too_many_arguments)]
pub fn quantize_each_with(
    isa: Isa,
    x: &[f32],
    out: &mut [u8],
    factor: &[f32],
    zp: &[i32],
    rounding: Rounding,
    qmin: i32,
    qmax: i32,
) -> Result<()> {
    check(x.len(), out.len())?;
    check_range(qmin, qmax)?;
    if factor.len() != x.len() || zp.len() != x.len() {
        return Err(Error::arg(format!(
            "per-element parameters have {} factors and {} zero points, expected {}",
            factor.len(),
            zp.len(),
            x.len()
        )));
    }
    if let Some(i) = zp.iter().position(|&z| z < qmin || z > qmax) {
        return Err(Error::arg(format!(
            "zero point {} at index {i} is outside [{qmin}, {qmax}]",
            zp[i]
        )));
    }
    #[cfg(target_arch = "x86_64")]
    {
        if isa.includes(Isa::Avx512) && isa.is_supported() {
            // SAFETY: AVX-512 supported (checked); all four slices have the same length.
            unsafe { avx512::quantize_each(x, out, factor, zp, rounding, qmin, qmax) };
            return Ok(());
        }
        if isa.includes(Isa::Avx2) && isa.is_supported() {
            // SAFETY: AVX2 + FMA supported (checked); all four slices have the same length.
            unsafe { avx2::quantize_each(x, out, factor, zp, rounding, qmin, qmax) };
            return Ok(());
        }
    }
    scalar::quantize_each(x, out, factor, zp, rounding, qmin, qmax);
    Ok(())
}
