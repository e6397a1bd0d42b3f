//! The reference twin of the quantize kernels; it defines the semantics.
//!
//! For each element, with `lo = qmin - zp` and `hi = qmax - zp` (integers held in float32):
//!
//! * `v = x / factor` ([`Rounding::Div`], ONNX QuantizeLinear), `v = x * factor`
//!   ([`Rounding::Mul`], torch with `factor = float32(1 / scale)`, and [`Rounding::MulAway`],
//!   TFLite with `factor = qmax / absmax`);
//! * `c = clamp(v, lo, hi)` in float32, where a NaN `v` becomes `lo` (what `maxps(v, lo)` gives);
//! * `q = round(c) + zp`, `round` = ties to even (`Div`, `Mul`) or half away from zero (`MulAway`);
//! * the low byte of `q` is stored (two's complement for signed types).
//!
//! numpy: `np.clip(np.rint(x / s), qmin - zp, qmax - zp) + zp` (`Div`; NaN excepted), see
//! `tests/reference.py::quantize_onnx`, `quantize_torch`, `quantize_tflite`.

use super::{Params, Rounding};

/// `maxps(v, lo)` then `minps(.., hi)`: NaN becomes `lo`.
#[inline]
pub(crate) fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let c = if v > lo { v } else { lo };
    if c < hi {
        c
    } else {
        hi
    }
}

#[inline]
pub(crate) fn one(x: f32, rounding: Rounding, factor: f32, zp: i32, lo: f32, hi: f32) -> u8 {
    let v = match rounding {
        Rounding::Div => x / factor,
        Rounding::Mul | Rounding::MulAway => x * factor,
    };
    let c = clamp(v, lo, hi);
    let r = match rounding {
        Rounding::MulAway => c.round(),
        _ => c.round_ties_even(),
    };
    (r as i32).wrapping_add(zp) as u8
}

/// One `(factor, zp)` for the whole run.
pub fn quantize(x: &[f32], out: &mut [u8], p: &Params) {
    let (lo, hi) = p.bounds();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = one(v, p.rounding, p.factor, p.zp, lo, hi);
    }
}

/// Per-element `(factor[i], zp[i])`.
pub fn quantize_each(
    x: &[f32],
    out: &mut [u8],
    factor: &[f32],
    zp: &[i32],
    rounding: Rounding,
    qmin: i32,
    qmax: i32,
) {
    for i in 0..x.len() {
        let lo = qmin.wrapping_sub(zp[i]) as f32;
        let hi = qmax.wrapping_sub(zp[i]) as f32;
        out[i] = one(x[i], rounding, factor[i], zp[i], lo, hi);
    }
}
