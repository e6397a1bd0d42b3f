//! `QuantizedLinear`: activation quantization (dynamic per tensor, dynamic per row, static) and
//! the forward pass on the int8 kernels with the fused float / requantizing epilogue.

use super::checks::{check_scale, check_zero_points};
use super::{Dtype, Lhs, PackedMatrix};
use crate::bail_arg;
use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa};

/// How activations are quantized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activations {
    /// Per tensor uint8, ONNX `DynamicQuantizeLinear`.
    Dynamic,
    /// Per row symmetric int8: `scale = max|x_row| / 127`, values in -127..=127.
    DynamicPerRow,
    /// Given uint8 scale and zero point (TFLite full-integer).
    Static {
        /// Input scale.
        scale: f32,
        /// Input zero point (uint8).
        zero_point: i64,
    },
}

#[inline(always)]
fn minmax_body(x: &[f32]) -> (f32, f32, bool) {
    let mut mn = [0f32; 16];
    let mut mx = [0f32; 16];
    let mut bad = [0u32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            let v = c[i];
            mn[i] = if v < mn[i] { v } else { mn[i] };
            mx[i] = if v > mx[i] { v } else { mx[i] };
            bad[i] |= (v.abs() > f32::MAX || v.is_nan()) as u32;
        }
    }
    let (mut lo, mut hi, mut nb) = (0f32, 0f32, 0u32);
    for i in 0..16 {
        lo = lo.min(mn[i]);
        hi = hi.max(mx[i]);
        nb |= bad[i];
    }
    for &v in chunks.remainder() {
        lo = if v < lo { v } else { lo };
        hi = if v > hi { v } else { hi };
        nb |= (!v.is_finite()) as u32;
    }
    (lo, hi, nb != 0)
}

// max/min rather than clamp: clamp keeps NaN, max/min send it to a bound.
#[allow(clippy::manual_clamp)]
#[inline(always)]
fn quant_u8_body(x: &[f32], out: &mut [u8], scale: f32, zp: f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        // max/min (not clamp) send NaN to a bound, so the value is always in 0..=255.
        let q = ((v / scale).round_ties_even() + zp).max(0.0).min(255.0);
        // SAFETY: q is an integer in 0..=255 (see above), representable in i32.
        *o = unsafe { q.to_int_unchecked::<i32>() } as u8;
    }
}

#[inline(always)]
fn absmax_body(x: &[f32]) -> f32 {
    let mut m = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            let v = c[i].abs();
            m[i] = if v > m[i] { v } else { m[i] };
        }
    }
    let mut r = m.iter().copied().fold(0f32, f32::max);
    for &v in chunks.remainder() {
        r = r.max(v.abs());
    }
    r
}

#[allow(clippy::manual_clamp)]
#[inline(always)]
fn quant_i8_body(x: &[f32], out: &mut [u8], scale: f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        let q = (v / scale).round_ties_even().max(-127.0).min(127.0);
        // SAFETY: q is an integer in -127..=127 (max/min send NaN to a bound).
        *o = unsafe { q.to_int_unchecked::<i32>() } as u8;
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn minmax512(x: &[f32]) -> (f32, f32, bool) {
        super::minmax_body(x)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn quant_u8_512(x: &[f32], out: &mut [u8], scale: f32, zp: f32) {
        super::quant_u8_body(x, out, scale, zp)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn absmax512(x: &[f32]) -> f32 {
        super::absmax_body(x)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn quant_i8_512(x: &[f32], out: &mut [u8], scale: f32) {
        super::quant_i8_body(x, out, scale)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn minmax2(x: &[f32]) -> (f32, f32, bool) {
        super::minmax_body(x)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn quant_u8_2(x: &[f32], out: &mut [u8], scale: f32, zp: f32) {
        super::quant_u8_body(x, out, scale, zp)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn absmax2(x: &[f32]) -> f32 {
        super::absmax_body(x)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn quant_i8_2(x: &[f32], out: &mut [u8], scale: f32) {
        super::quant_i8_body(x, out, scale)
    }
}

// The dispatchers below pick the shell; all shells run the same body, so results are identical
// on every level (division, round-half-even, clamp: no fused or reciprocal arithmetic).
macro_rules! dispatch {
    ($isa:expr, $s512:ident, $s2:ident, $body:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $isa.includes(Isa::Avx512) {
                // SAFETY: Avx512 level detected.
                return unsafe { simd::$s512($($arg),*) };
            }
            if $isa.includes(Isa::Avx2) {
                // SAFETY: Avx2 level detected.
                return unsafe { simd::$s2($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

fn minmax_one(isa: Isa, x: &[f32]) -> (f32, f32, bool) {
    dispatch!(isa, minmax512, minmax2, minmax_body, (x))
}

/// (min(x, 0), max(x, 0), any non-finite), over the thread pool for large inputs.
fn minmax(isa: Isa, x: &[f32]) -> (f32, f32, bool) {
    if x.len() < (1 << 17) || crate::parallel::num_threads() == 1 {
        return minmax_one(isa, x);
    }
    let parts = std::sync::Mutex::new(Vec::new());
    crate::parallel::for_chunks(x.len(), 1 << 16, |a, b| {
        let r = minmax_one(isa, &x[a..b]);
        parts.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    });
    let parts = parts.into_inner().unwrap_or_else(|e| e.into_inner());
    parts
        .iter()
        .fold((0.0, 0.0, false), |(lo, hi, bad), &(l, h, b)| {
            (lo.min(l), hi.max(h), bad || b)
        })
}
fn quant_u8(isa: Isa, x: &[f32], out: &mut [u8], scale: f32, zp: f32) {
    dispatch!(
        isa,
        quant_u8_512,
        quant_u8_2,
        quant_u8_body,
        (x, out, scale, zp)
    )
}
fn absmax(isa: Isa, x: &[f32]) -> f32 {
    dispatch!(isa, absmax512, absmax2, absmax_body, (x))
}
fn quant_i8(isa: Isa, x: &[f32], out: &mut [u8], scale: f32) {
    dispatch!(
        isa,
        quant_i8_512,
        quant_i8_2,
        quant_i8_body,
        (x, out, scale)
    )
}

fn non_finite(x: &[f32]) -> Error {
    let (index, &value) = x
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .unwrap_or((0, &f32::NAN));
    Error::NonFinite {
        what: "`x`".into(),
        index,
        value,
    }
}

/// ONNX `DynamicQuantizeLinear` parameters: the range is widened to include 0,
/// `scale = (max - min) / 255` (1 when max == min), `zp = rint(clamp(-min / scale, 0, 255))`.
pub fn dynamic_qparams_with(isa: Isa, x: &[f32]) -> Result<(f32, u8)> {
    let (lo, hi, bad) = minmax(isa, x);
    if bad {
        return Err(non_finite(x));
    }
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (0.0 - lo / scale).clamp(0.0, 255.0).round_ties_even() as u8;
    Ok((scale, zp))
}

/// `saturate(rint(x / scale) + zp)` as uint8 (ONNX `QuantizeLinear`, per tensor).
pub fn quantize_u8_with(isa: Isa, x: &[f32], scale: f32, zp: u8) -> Vec<u8> {
    let mut out = vec![0u8; x.len()];
    quantize_u8_into(isa, x, scale, zp, &mut out);
    out
}

fn quantize_u8_into(isa: Isa, x: &[f32], scale: f32, zp: u8, out: &mut [u8]) {
    let o = super::layout::SyncPtr(out.as_mut_ptr());
    crate::parallel::for_chunks(x.len(), 1 << 16, |a, b| {
        // SAFETY: chunks a..b are disjoint and inside `out`, which outlives the call.
        let o = unsafe { std::slice::from_raw_parts_mut(o.get().add(a), b - a) };
        quant_u8(isa, &x[a..b], o, scale, zp as f32);
    });
}

/// Per row symmetric int8: per row `scale = max|x| / 127` (1 for an all-zero row) and
/// `clamp(rint(x / scale), -127, 127)`. Returns the int8 bytes and the row scales.
pub fn quantize_rows_i8_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    k: usize,
) -> Result<(Vec<u8>, Vec<f32>)> {
    let (_, _, bad) = minmax(isa, x);
    if bad {
        return Err(non_finite(x));
    }
    let mut out = vec![0u8; x.len()];
    let mut scales = vec![1f32; rows];
    for ((xr, or), s) in x
        .chunks_exact(k.max(1))
        .zip(out.chunks_exact_mut(k.max(1)))
        .zip(&mut scales)
    {
        let m = absmax(isa, xr);
        *s = if m > 0.0 { m / 127.0 } else { 1.0 };
        quant_i8(isa, xr, or, *s);
    }
    Ok((out, scales))
}

/// TFLite bias: `rint(bias[n] / (input_scale * w_scale[n]))` as int32 (saturating).
pub fn quantize_bias(bias: &[f32], input_scale: f32, w_scale: &[f32]) -> Vec<i32> {
    bias.iter()
        .zip(w_scale)
        .map(|(&b, &s)| (b / (input_scale * s)).round_ties_even() as i32)
        .collect()
}

fn check_x(
    x: &[f32],
    rows: usize,
    b: &PackedMatrix,
    w_scale: &[f32],
    bias: Option<&[f32]>,
) -> Result<()> {
    let k = b.k();
    if rows.checked_mul(k) != Some(x.len()) {
        bail_arg!(
            "`x` holds {} values, expected rows*in_features = {rows}*{k}",
            x.len()
        );
    }
    check_scale("weight scale", w_scale)?;
    if w_scale.len() != b.n() {
        bail_arg!(
            "weight scale has {} values, expected out_features={}",
            w_scale.len(),
            b.n()
        );
    }
    if let Some(bias) = bias {
        if bias.len() != b.n() {
            bail_arg!(
                "`bias` has {} values, expected out_features={}",
                bias.len(),
                b.n()
            );
        }
        if bias.iter().any(|v| !v.is_finite()) {
            let (index, &value) = bias
                .iter()
                .enumerate()
                .find(|(_, v)| !v.is_finite())
                .unwrap_or((0, &0.0));
            return Err(Error::NonFinite {
                what: "`bias`".into(),
                index,
                value,
            });
        }
    }
    Ok(())
}

/// Static activations: `x` (finite, checked) quantized to uint8 with the given input scale and
/// zero point (both checked); returns the bytes and the zero point.
fn quantize_static(isa: Isa, x: &[f32], scale: f32, zero_point: i64) -> Result<(Vec<u8>, i32)> {
    check_scale("input_scale", &[scale])?;
    let zp = check_zero_points("input_zero_point", &[zero_point], 1, "tensor", Dtype::U8)?[0];
    let (_, _, bad) = minmax(isa, x);
    if bad {
        return Err(non_finite(x));
    }
    Ok((quantize_u8_with(isa, x, scale, zp as u8), zp))
}

/// Forward pass with float32 output: `y = x @ W.T + bias` through int8, `x` (rows, in_features),
/// `b` = packed `W.T` (in_features, out_features), `w_scale` per output feature.
pub fn linear_f32_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    b: &PackedMatrix,
    w_scale: &[f32],
    bias: Option<&[f32]>,
    act: Activations,
) -> Result<Vec<f32>> {
    forward_f32(isa, x, rows, b, w_scale, bias, act, None).map(Option::unwrap_or_default)
}

/// [`linear_f32_with`] into a caller's (rows, out_features) buffer.
#[allow(clippy::too_many_arguments)]
pub fn linear_f32_into_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    b: &PackedMatrix,
    w_scale: &[f32],
    bias: Option<&[f32]>,
    act: Activations,
    out: &mut [f32],
) -> Result<()> {
    forward_f32(isa, x, rows, b, w_scale, bias, act, Some(out)).map(|_| ())
}

/// The int8 product with the float epilogue, into `out` (`None`: a new Vec, returned).
#[allow(clippy::too_many_arguments)]
fn forward_f32(
    isa: Isa,
    x: &[f32],
    rows: usize,
    b: &PackedMatrix,
    w_scale: &[f32],
    bias: Option<&[f32]>,
    act: Activations,
    out: Option<&mut [f32]>,
) -> Result<Option<Vec<f32>>> {
    #[allow(clippy::too_many_arguments)]
    fn scaled(
        isa: Isa,
        a: &Lhs,
        a_zp: &[i64],
        b: &PackedMatrix,
        rs: &[f32],
        cs: &[f32],
        bias_i32: Option<&[i32]>,
        bias: Option<&[f32]>,
        out: Option<&mut [f32]>,
    ) -> Result<Option<Vec<f32>>> {
        match out {
            Some(o) => super::matmul_scaled_into_with(isa, a, a_zp, b, rs, cs, bias_i32, bias, o)
                .map(|_| None),
            None => super::matmul_scaled_with(isa, a, a_zp, b, rs, cs, bias_i32, bias).map(Some),
        }
    }
    check_x(x, rows, b, w_scale, bias)?;
    let k = b.k();
    match act {
        Activations::Dynamic => {
            let (s, zp) = dynamic_qparams_with(isa, x)?;
            let q = quantize_u8_with(isa, x, s, zp);
            let a = Lhs {
                data: &q,
                rows,
                k,
                dtype: Dtype::U8,
            };
            scaled(isa, &a, &[zp as i64], b, &[s], w_scale, None, bias, out)
        }
        Activations::DynamicPerRow => {
            let (q, s) = quantize_rows_i8_with(isa, x, rows, k)?;
            let a = Lhs {
                data: &q,
                rows,
                k,
                dtype: Dtype::I8,
            };
            scaled(isa, &a, &[], b, &s, w_scale, None, bias, out)
        }
        Activations::Static { scale, zero_point } => {
            let (q, zp) = quantize_static(isa, x, scale, zero_point)?;
            let a = Lhs {
                data: &q,
                rows,
                k,
                dtype: Dtype::U8,
            };
            let bq = bias.map(|bb| quantize_bias(bb, scale, w_scale));
            scaled(
                isa,
                &a,
                &[zp as i64],
                b,
                &[scale],
                w_scale,
                bq.as_deref(),
                None,
                out,
            )
        }
    }
}

/// [`linear_f32_with`] on [`isa::active`].
pub fn linear_f32(
    x: &[f32],
    rows: usize,
    b: &PackedMatrix,
    w_scale: &[f32],
    bias: Option<&[f32]>,
    act: Activations,
) -> Result<Vec<f32>> {
    linear_f32_with(isa::active(), x, rows, b, w_scale, bias, act)
}

/// Static forward pass with int8 / uint8 output (TFLite full-integer):
/// `y = saturate(rint(float32(acc + bias_q[n]) * (in_scale * w_scale[n] / out_scale)) + out_zp)`,
/// into a caller's rows x N buffer.
#[allow(clippy::too_many_arguments)]
pub fn linear_q8_into_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    b: &PackedMatrix,
    w_scale: &[f32],
    bias: Option<&[f32]>,
    in_scale: f32,
    in_zp: i64,
    out_scale: f32,
    out_zp: i64,
    out_dtype: Dtype,
    out: &mut [u8],
) -> Result<()> {
    check_x(x, rows, b, w_scale, bias)?;
    // The error order of before: input scale, output scale, then zero point and NaN.
    check_scale("input_scale", &[in_scale])?;
    check_scale("output_scale", &[out_scale])?;
    let (q, zp) = quantize_static(isa, x, in_scale, in_zp)?;
    let a = Lhs {
        data: &q,
        rows,
        k: b.k(),
        dtype: Dtype::U8,
    };
    let bq = bias.map(|bb| quantize_bias(bb, in_scale, w_scale));
    let mult: Vec<f32> = w_scale.iter().map(|&s| in_scale * s / out_scale).collect();
    super::matmul_requant_into_with(
        isa,
        &a,
        &[zp as i64],
        b,
        &mult,
        bq.as_deref(),
        out_zp,
        out_dtype,
        out,
    )
}

/// [`linear_q8_into_with`] into a new buffer.
#[allow(clippy::too_many_arguments)]
pub fn linear_q8_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    b: &PackedMatrix,
    w_scale: &[f32],
    bias: Option<&[f32]>,
    in_scale: f32,
    in_zp: i64,
    out_scale: f32,
    out_zp: i64,
    out_dtype: Dtype,
) -> Result<Vec<u8>> {
    let mut out = super::zeroed_output(rows, b.n())?;
    linear_q8_into_with(
        isa, x, rows, b, w_scale, bias, in_scale, in_zp, out_scale, out_zp, out_dtype, &mut out,
    )?;
    Ok(out)
}
