//! Quantize a contiguous run of float32 to 8-bit integers (int8 / uint8 / the int4 / uint4
//! values before packing): `q = clamp(round(x op factor), qmin - zp, qmax - zp) + zp`.
//! See [`scalar`] for the exact semantics of each [`Rounding`].

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

/// Make this thread's streaming stores (the `stream` hint) globally ordered: call once after
/// the last hinted call, before the output is handed to another thread.
pub fn fence() {
    fence_with(isa::active())
}

/// [`fence`] for the kernels of a given ISA.
pub fn fence_with(isa: Isa) {
    match isa::kernels(isa).quantize {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            avx512::fence();
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {}
        Vector::Scalar => {}
    }
}

/// [`quantize`] with hints that change speed, never results: prefetch `next` (the run the
/// caller quantizes next, e.g. the next row of a per-channel pass) while this run is processed,
/// and write the output with non-temporal stores when `stream` (outputs much larger than cache;
/// call [`fence`] after the last such call).
pub fn quantize_hinted(
    x: &[f32],
    out: &mut [u8],
    p: &Params,
    next: &[f32],
    stream: bool,
) -> Result<()> {
    quantize_hinted_with(isa::active(), x, out, p, next, stream)
}

/// [`quantize_hinted`] on a given ISA.
pub fn quantize_hinted_with(
    isa: Isa,
    x: &[f32],
    out: &mut [u8],
    p: &Params,
    next: &[f32],
    stream: bool,
) -> Result<()> {
    check(x.len(), out.len())?;
    check_range(p.qmin, p.qmax)?;
    if p.zp < p.qmin || p.zp > p.qmax {
        return Err(Error::arg(format!(
            "zero point {} is outside [{}, {}]",
            p.zp, p.qmin, p.qmax
        )));
    }
    match isa::kernels(isa).quantize {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: the CPU supports AVX-512 (checked); lengths are equal (checked).
            unsafe { avx512::quantize_hinted(x, out, p, next, stream) };
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: the CPU supports AVX2 + FMA (checked); lengths are equal (checked).
            unsafe { avx2::quantize_hinted(x, out, p, next) };
            return Ok(());
        }
        Vector::Scalar => {}
    }
    let _ = (next, stream);
    scalar::quantize(x, out, p);
    Ok(())
}

/// Quantize `x` into `out` while reducing `next` (the run the caller handles next) to its
/// min / max, so that the next run's memory traffic overlaps this run's arithmetic. Equal to
/// [`quantize`] followed by [`crate::kernels::reduce::minmax`] of `next`. `ahead` (the run
/// after `next`) is prefetched into L2. With `stream`, call [`fence`] after the last call.
pub fn quantize_reduce_next(
    x: &[f32],
    out: &mut [u8],
    p: &Params,
    next: &[f32],
    ahead: &[f32],
    stream: bool,
) -> Result<crate::kernels::reduce::MinMax> {
    quantize_reduce_next_with(isa::active(), x, out, p, next, ahead, stream)
}

/// [`quantize_reduce_next`] on a given ISA.
#[allow(clippy::too_many_arguments)]
pub fn quantize_reduce_next_with(
    isa: Isa,
    x: &[f32],
    out: &mut [u8],
    p: &Params,
    next: &[f32],
    ahead: &[f32],
    stream: bool,
) -> Result<crate::kernels::reduce::MinMax> {
    check(x.len(), out.len())?;
    check_range(p.qmin, p.qmax)?;
    if p.zp < p.qmin || p.zp > p.qmax {
        return Err(Error::arg(format!(
            "zero point {} is outside [{}, {}]",
            p.zp, p.qmin, p.qmax
        )));
    }
    match isa::kernels(isa).quantize {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: the CPU supports AVX-512 (checked); lengths are equal (checked).
            return Ok(unsafe { avx512::quantize_reduce_next(x, out, p, next, ahead, stream) });
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {}
        Vector::Scalar => {}
    }
    // Other levels: the two kernels one after the other (same results).
    quantize_hinted_with(isa, x, out, p, &[], stream)?;
    Ok(crate::kernels::reduce::minmax_with(isa, next))
}

/// [`quantize_with`] without its checks: for callers that have established them (`out` as
/// long as `x`, a one-byte range, `zp` inside it).
pub(crate) fn quantize_unchecked(isa: Isa, x: &[f32], out: &mut [u8], p: &Params) {
    debug_assert!(x.len() == out.len() && check_range(p.qmin, p.qmax).is_ok());
    debug_assert!(p.qmin <= p.zp && p.zp <= p.qmax);
    run(isa, x, out, p)
}

fn run(isa: Isa, x: &[f32], out: &mut [u8], p: &Params) {
    match isa::kernels(isa).quantize {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: the CPU supports AVX-512 (checked); lengths are equal (checked by caller).
            unsafe { avx512::quantize(x, out, p) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: the CPU supports AVX2 + FMA (checked); lengths are equal.
            unsafe { avx2::quantize(x, out, p) };
            return;
        }
        Vector::Scalar => {}
    }
    scalar::quantize(x, out, p)
}

/// Quantize with per-element parameters `(factor[i], zp[i])` (blocked quantization with an
/// inner dimension, per-channel along the last axis), on the active ISA.
///
/// Each `zp[i]` must lie in `qmin..=qmax` (checked once per tensor by the caller: an O(n)
/// check here would cost as much as the kernel). Outside it the results are still within
/// `[qmin, qmax]` and nothing panics, but they are meaningless.
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
    match isa::kernels(isa).quantize {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: AVX-512 supported (checked); all four slices have the same length.
            unsafe { avx512::quantize_each(x, out, factor, zp, rounding, qmin, qmax) };
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: AVX2 + FMA supported (checked); all four slices have the same length.
            unsafe { avx2::quantize_each(x, out, factor, zp, rounding, qmin, qmax) };
            return Ok(());
        }
        Vector::Scalar => {}
    }
    scalar::quantize_each(x, out, factor, zp, rounding, qmin, qmax);
    Ok(())
}
