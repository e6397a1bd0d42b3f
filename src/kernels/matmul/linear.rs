//! `QuantizedLinear`: activation quantization (dynamic per tensor, dynamic per row, static) and
//! the forward pass on the int8 kernels with the fused float / requantizing epilogue.

use super::checks::{check_scale, check_zero_points};
use super::{Dtype, Lhs, PackedMatrix, Requant, Scaled};
use crate::bail_arg;
use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa};
use crate::kernels::{quantize, reduce};

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

/// (min(x, 0), max(x, 0), any non-finite) of one run, from the shared reduction.
fn minmax_one(isa: Isa, x: &[f32]) -> (f32, f32, bool) {
    let mm = reduce::minmax_with(isa, x);
    let bad = mm.nan || mm.min == f32::NEG_INFINITY || mm.max == f32::INFINITY;
    (mm.min.min(0.0), mm.max.max(0.0), bad)
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

/// `clamp(rint(x / scale), qmin - zp, qmax - zp) + zp` with the shared quantize kernel (ONNX
/// `QuantizeLinear` rounding; a NaN gives `qmin`).
fn quantize_run(isa: Isa, x: &[f32], out: &mut [u8], scale: f32, zp: i32, qmin: i32, qmax: i32) {
    let p = quantize::Params {
        rounding: quantize::Rounding::Div,
        factor: scale,
        zp,
        qmin,
        qmax,
    };
    quantize::quantize_unchecked(isa, x, out, &p);
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
        quantize_run(isa, &x[a..b], o, scale, zp as i32, 0, 255);
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
        let (m, _) = reduce::absmax_with(isa, xr);
        *s = if m > 0.0 { m / 127.0 } else { 1.0 };
        quantize_run(isa, xr, or, *s, 0, -127, 127);
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

/// A layer's weights as the forward pass uses them.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    /// `W.T` packed: (in_features, out_features).
    pub packed: &'a PackedMatrix,
    /// Per output feature.
    pub scale: &'a [f32],
    /// Per output feature, or none.
    pub bias: Option<&'a [f32]>,
}

/// The static int8 / uint8 input and output quantization of [`linear_q8_into_with`].
#[derive(Clone, Copy, Debug)]
pub struct StaticQ8 {
    /// Input scale.
    pub in_scale: f32,
    /// Input zero point (uint8).
    pub in_zero_point: i64,
    /// Output scale.
    pub out_scale: f32,
    /// Output zero point, within `out_dtype`.
    pub out_zero_point: i64,
    /// Output type.
    pub out_dtype: Dtype,
}

fn check_x(x: &[f32], rows: usize, w: &Weights) -> Result<()> {
    let (b, w_scale, bias) = (w.packed, w.scale, w.bias);
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

/// Forward pass with float32 output: `y = x @ W.T + bias` through int8, `x` (rows, in_features).
pub fn linear_f32_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: &Weights,
    act: Activations,
) -> Result<Vec<f32>> {
    forward_f32(isa, x, rows, w, act, None).map(Option::unwrap_or_default)
}

/// [`linear_f32_with`] into a caller's (rows, out_features) buffer.
pub fn linear_f32_into_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: &Weights,
    act: Activations,
    out: &mut [f32],
) -> Result<()> {
    forward_f32(isa, x, rows, w, act, Some(out)).map(|_| ())
}

/// The int8 product with the float epilogue, into `out` (`None`: a new Vec, returned).
fn forward_f32(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: &Weights,
    act: Activations,
    out: Option<&mut [f32]>,
) -> Result<Option<Vec<f32>>> {
    fn scaled(
        isa: Isa,
        a: &Lhs,
        a_zp: &[i64],
        b: &PackedMatrix,
        s: &Scaled,
        out: Option<&mut [f32]>,
    ) -> Result<Option<Vec<f32>>> {
        match out {
            Some(o) => super::matmul_scaled_into_with(isa, a, a_zp, b, s, o).map(|_| None),
            None => super::matmul_scaled_with(isa, a, a_zp, b, s).map(Some),
        }
    }
    check_x(x, rows, w)?;
    let (b, w_scale, bias) = (w.packed, w.scale, w.bias);
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
            let sc = Scaled {
                row_scale: &[s],
                col_scale: w_scale,
                bias_i32: None,
                bias,
            };
            scaled(isa, &a, &[zp as i64], b, &sc, out)
        }
        Activations::DynamicPerRow => {
            let (q, s) = quantize_rows_i8_with(isa, x, rows, k)?;
            let a = Lhs {
                data: &q,
                rows,
                k,
                dtype: Dtype::I8,
            };
            let sc = Scaled {
                row_scale: &s,
                col_scale: w_scale,
                bias_i32: None,
                bias,
            };
            scaled(isa, &a, &[], b, &sc, out)
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
            let sc = Scaled {
                row_scale: &[scale],
                col_scale: w_scale,
                bias_i32: bq.as_deref(),
                bias: None,
            };
            scaled(isa, &a, &[zp as i64], b, &sc, out)
        }
    }
}

/// [`linear_f32_with`] on [`isa::active`].
pub fn linear_f32(x: &[f32], rows: usize, w: &Weights, act: Activations) -> Result<Vec<f32>> {
    linear_f32_with(isa::active(), x, rows, w, act)
}

/// Static forward pass with int8 / uint8 output (TFLite full-integer):
/// `y = saturate(rint(float32(acc + bias_q[n]) * (in_scale * w_scale[n] / out_scale)) + out_zp)`,
/// into a caller's rows x N buffer.
pub fn linear_q8_into_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: &Weights,
    q8: &StaticQ8,
    out: &mut [u8],
) -> Result<()> {
    check_x(x, rows, w)?;
    // The error order of before: input scale, output scale, then zero point and NaN.
    check_scale("input_scale", &[q8.in_scale])?;
    check_scale("output_scale", &[q8.out_scale])?;
    let (q, zp) = quantize_static(isa, x, q8.in_scale, q8.in_zero_point)?;
    let b = w.packed;
    let a = Lhs {
        data: &q,
        rows,
        k: b.k(),
        dtype: Dtype::U8,
    };
    let bq = w.bias.map(|bb| quantize_bias(bb, q8.in_scale, w.scale));
    let mult: Vec<f32> = w
        .scale
        .iter()
        .map(|&s| q8.in_scale * s / q8.out_scale)
        .collect();
    let r = Requant {
        mult: &mult,
        bias_i32: bq.as_deref(),
        zero_point: q8.out_zero_point,
        dtype: q8.out_dtype,
    };
    super::matmul_requant_into_with(isa, &a, &[zp as i64], b, &r, out)
}

/// [`linear_q8_into_with`] into a new buffer.
pub fn linear_q8_with(
    isa: Isa,
    x: &[f32],
    rows: usize,
    w: &Weights,
    q8: &StaticQ8,
) -> Result<Vec<u8>> {
    let mut out = super::zeroed_output(rows, w.packed.n())?;
    linear_q8_into_with(isa, x, rows, w, q8, &mut out)?;
    Ok(out)
}
