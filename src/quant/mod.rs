//! Tensor-level quantization: parameters per tensor / per channel along any axis / per block,
//! derived from the data (calibration: min-max, exact percentile, MSE search) or given
//! (ONNX QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear), applied by the kernels in
//! [`crate::kernels`], over threads. No Python here; `src/python/quant.rs` wraps it.
//!
//! Per-channel (axis 0, or any axis whose channels are contiguous runs) and per-block along
//! the last axis work in one pass: each run's range is found and applied while it is in cache.

pub mod layout;
pub mod params;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::{dequantize as dq, pack4, quantize as qk, reduce};
use crate::parallel;

pub use layout::{normalize_axis, shape_str, Granularity, Layout};
pub use params::{
    check_f16_scales, derive, f16_ceil, Calibration, Convention, Derived, QType, Spec,
};

/// Column-wise minima, maxima and whether a NaN was seen.
type ColumnRanges = (Vec<f32>, Vec<f32>, bool);

/// Elements per task below which work runs on the calling thread.
const MIN_TASK: usize = 1 << 16;

/// Blocks shorter than this are handled a row at a time with per-element parameters (one
/// kernel call per row instead of one per block).
const SMALL_BLOCK: usize = 256;

/// Expand per-block values of one row (`nb` blocks of `bs`) to per-element values.
fn expand<T: Copy>(per_block: &[T], bs: usize, len: usize, out: &mut Vec<T>) {
    out.clear();
    for (b, &v) in per_block.iter().enumerate() {
        let n = bs.min(len - b * bs);
        out.extend(std::iter::repeat_n(v, n));
    }
}

/// Tensors at least this large write their quantized output with streaming stores.
const STREAM_OUTPUT: usize = 1 << 22;

/// Run `f(first_row, x_rows, out_rows)` over groups of whole rows (`row` elements each; the
/// last chunk may be shorter when `x` is not a multiple of `row`), in parallel when large.
fn par_rows<A: Sync, B: Send>(
    x: &[A],
    out: &mut [B],
    row: usize,
    f: impl Fn(usize, &[A], &mut [B]) -> Result<()> + Sync + Send,
) -> Result<()> {
    debug_assert_eq!(x.len(), out.len());
    if x.is_empty() || row == 0 {
        return Ok(());
    }
    let nrows = x.len().div_ceil(row);
    let threads = parallel::num_threads();
    let min_rows = MIN_TASK.div_ceil(row).max(1);
    if threads <= 1 || nrows <= min_rows {
        return f(0, x, out);
    }
    let group = nrows.div_ceil(threads * 4).max(min_rows);
    let chunk = group * row;
    parallel::install(|| {
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .enumerate()
            .try_for_each(|(g, (o, xs))| f(g * group, xs, o))
    })
}

/// The flat index and value of the first NaN / infinity of `x`, as an error.
fn non_finite(x: &[f32], what: &str) -> Error {
    match reduce::first_non_finite(x) {
        Some(index) => Error::NonFinite {
            what: what.to_string(),
            index,
            value: x[index],
        },
        None => Error::arg(format!("{what} contains a non-finite value")),
    }
}

/// Check given scales: finite, positive and normal.
pub fn check_scales(scale: &[f32], name: &str) -> Result<()> {
    if let Some(i) = scale
        .iter()
        .position(|s| !(s.is_finite() && *s >= f32::MIN_POSITIVE))
    {
        return Err(Error::arg(format!(
            "`{name}` must be positive, finite and not subnormal; found {:e} at index {i}",
            scale[i]
        )));
    }
    Ok(())
}

/// Quantize `x` (laid out as `lay`) with per-unit `factor` / `zp` into unpacked bytes.
/// The input, output and parameter lengths `apply` / `apply_dequantize` need for `lay`.
fn check_lengths(lay: &Layout, input: usize, out: usize, scales: usize, zps: usize) -> Result<()> {
    if input != lay.numel() || out != input {
        return Err(Error::arg(format!(
            "`out` has {out} elements, expected {}",
            lay.numel()
        )));
    }
    if scales != lay.units() || zps != lay.units() {
        return Err(Error::arg(format!(
            "{scales} scales and {zps} zero points given, expected {}",
            lay.units()
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn apply(
    x: &[f32],
    out: &mut [u8],
    lay: &Layout,
    factor: &[f32],
    zp: &[i32],
    rounding: qk::Rounding,
    qmin: i32,
    qmax: i32,
) -> Result<()> {
    let (len, inner) = (lay.len, lay.inner);
    check_lengths(lay, x.len(), out.len(), factor.len(), zp.len())?;
    let p = |u: usize| qk::Params {
        rounding,
        factor: factor[u],
        zp: zp[u],
        qmin,
        qmax,
    };
    match lay.gran {
        Granularity::Tensor => par_rows(x, out, MIN_TASK, |_, xs, o| qk::quantize(xs, o, &p(0))),
        Granularity::Axis if inner == 1 => par_rows(x, out, len, |_, xs, o| {
            for (xr, or) in xs.chunks(len).zip(o.chunks_mut(len)) {
                qk::quantize_each(xr, or, factor, zp, rounding, qmin, qmax)?;
            }
            Ok(())
        }),
        Granularity::Axis => par_rows(x, out, inner, |r0, xs, o| {
            for (r, (xr, or)) in xs.chunks(inner).zip(o.chunks_mut(inner)).enumerate() {
                qk::quantize(xr, or, &p((r0 + r) % len))?;
            }
            Ok(())
        }),
        Granularity::Block(bs) if inner == 1 && bs < SMALL_BLOCK => {
            let nb = lay.blocks();
            par_rows(x, out, len, |r0, xs, o| {
                let (mut f, mut z) = (Vec::new(), Vec::new());
                for (r, (xr, or)) in xs.chunks(len).zip(o.chunks_mut(len)).enumerate() {
                    let u = (r0 + r) * nb;
                    expand(&factor[u..u + nb], bs, len, &mut f);
                    expand(&zp[u..u + nb], bs, len, &mut z);
                    qk::quantize_each(xr, or, &f, &z, rounding, qmin, qmax)?;
                }
                Ok(())
            })
        }
        Granularity::Block(bs) if inner == 1 => {
            let nb = lay.blocks();
            par_rows(x, out, len, |r0, xs, o| {
                for (r, (xr, or)) in xs.chunks(len).zip(o.chunks_mut(len)).enumerate() {
                    for (b, (xb, ob)) in xr.chunks(bs).zip(or.chunks_mut(bs)).enumerate() {
                        qk::quantize(xb, ob, &p((r0 + r) * nb + b))?;
                    }
                }
                Ok(())
            })
        }
        Granularity::Block(bs) => {
            let nb = lay.blocks();
            par_rows(x, out, inner, |r0, xs, o| {
                for (r, (xr, or)) in xs.chunks(inner).zip(o.chunks_mut(inner)).enumerate() {
                    let (ob, a) = ((r0 + r) / len, (r0 + r) % len);
                    let u = (ob * nb + a / bs) * inner;
                    qk::quantize_each(
                        xr,
                        or,
                        &factor[u..u + inner],
                        &zp[u..u + inner],
                        rounding,
                        qmin,
                        qmax,
                    )?;
                }
                Ok(())
            })
        }
    }
}

/// Dequantize unpacked bytes `q` (laid out as `lay`) with per-unit `scale` / `zp`.
pub fn apply_dequantize(
    q: &[u8],
    out: &mut [f32],
    lay: &Layout,
    signed: bool,
    scale: &[f32],
    zp: &[i32],
) -> Result<()> {
    let (len, inner) = (lay.len, lay.inner);
    check_lengths(lay, q.len(), out.len(), scale.len(), zp.len())?;
    match lay.gran {
        Granularity::Tensor => par_rows(q, out, MIN_TASK, |_, qs, o| {
            dq::dequantize(qs, o, signed, scale[0], zp[0])
        }),
        Granularity::Axis if inner == 1 => par_rows(q, out, len, |_, qs, o| {
            for (qr, or) in qs.chunks(len).zip(o.chunks_mut(len)) {
                dq::dequantize_each(qr, or, signed, scale, zp)?;
            }
            Ok(())
        }),
        Granularity::Axis => par_rows(q, out, inner, |r0, qs, o| {
            for (r, (qr, or)) in qs.chunks(inner).zip(o.chunks_mut(inner)).enumerate() {
                let u = (r0 + r) % len;
                dq::dequantize(qr, or, signed, scale[u], zp[u])?;
            }
            Ok(())
        }),
        Granularity::Block(bs) if inner == 1 && bs < SMALL_BLOCK => {
            let nb = lay.blocks();
            par_rows(q, out, len, |r0, qs, o| {
                let (mut s, mut z) = (Vec::new(), Vec::new());
                for (r, (qr, or)) in qs.chunks(len).zip(o.chunks_mut(len)).enumerate() {
                    let u = (r0 + r) * nb;
                    expand(&scale[u..u + nb], bs, len, &mut s);
                    expand(&zp[u..u + nb], bs, len, &mut z);
                    dq::dequantize_each(qr, or, signed, &s, &z)?;
                }
                Ok(())
            })
        }
        Granularity::Block(bs) if inner == 1 => {
            let nb = lay.blocks();
            par_rows(q, out, len, |r0, qs, o| {
                for (r, (qr, or)) in qs.chunks(len).zip(o.chunks_mut(len)).enumerate() {
                    for (b, (qb, ob)) in qr.chunks(bs).zip(or.chunks_mut(bs)).enumerate() {
                        let u = (r0 + r) * nb + b;
                        dq::dequantize(qb, ob, signed, scale[u], zp[u])?;
                    }
                }
                Ok(())
            })
        }
        Granularity::Block(bs) => {
            let nb = lay.blocks();
            par_rows(q, out, inner, |r0, qs, o| {
                for (r, (qr, or)) in qs.chunks(inner).zip(o.chunks_mut(inner)).enumerate() {
                    let (ob, a) = ((r0 + r) / len, (r0 + r) % len);
                    let u = (ob * nb + a / bs) * inner;
                    dq::dequantize_each(qr, or, signed, &scale[u..u + inner], &zp[u..u + inner])?;
                }
                Ok(())
            })
        }
    }
}

/// Pack unpacked 4-bit values into `out` in parallel.
fn pack_into(tmp: &[u8], out: &mut [u8]) -> Result<()> {
    if tmp.len() <= 2 * MIN_TASK || parallel::num_threads() <= 1 {
        return pack4::pack(tmp, out);
    }
    // Even-sized input chunks map onto whole output bytes.
    let (t, o) = (tmp, out);
    let chunk = MIN_TASK; // even
    parallel::install(|| {
        o.par_chunks_mut(chunk / 2)
            .zip(t.par_chunks(chunk))
            .try_for_each(|(o, t)| pack4::pack(t, o))
    })
}

/// ONNX QuantizeLinear with given parameters: `q = saturate(rint(x / scale) + zp)`.
/// `out` holds `qtype.storage_len(n)` bytes (4-bit types packed, first element low nibble).
#[allow(clippy::too_many_arguments)]
pub fn quantize_linear(
    x: &[f32],
    shape: &[usize],
    scale: &[f32],
    scale_shape: &[usize],
    zp: Option<(&[i32], &[usize])>,
    qtype: QType,
    axis: i64,
    block_size: i64,
    out: &mut [u8],
) -> Result<()> {
    let lay = params_layout(
        shape,
        scale_shape,
        zp,
        axis,
        block_size,
        "y_scale",
        "y_zero_point",
    )?;
    check_len(x.len(), &lay, "x")?;
    check_scales(scale, "y_scale")?;
    let zps = zp_values(zp, scale.len(), qtype, "y_zero_point")?;
    let want = qtype.storage_len(x.len());
    if out.len() != want {
        return Err(Error::arg(format!(
            "`out` has {} bytes, expected {want} for {} {} values",
            out.len(),
            x.len(),
            qtype.name()
        )));
    }
    let (qmin, qmax) = qtype.range();
    if qtype.bits == 8 {
        apply(x, out, &lay, scale, &zps, qk::Rounding::Div, qmin, qmax)
    } else {
        let mut tmp = vec![0u8; x.len()];
        apply(
            x,
            &mut tmp,
            &lay,
            scale,
            &zps,
            qk::Rounding::Div,
            qmin,
            qmax,
        )?;
        pack_into(&tmp, out)
    }
}

/// ONNX DequantizeLinear: `y = float32(q - zp) * scale`; `q` holds `qtype.storage_len(n)` bytes.
#[allow(clippy::too_many_arguments)]
pub fn dequantize_linear(
    q: &[u8],
    qtype: QType,
    shape: &[usize],
    scale: &[f32],
    scale_shape: &[usize],
    zp: Option<(&[i32], &[usize])>,
    axis: i64,
    block_size: i64,
    out: &mut [f32],
) -> Result<()> {
    let lay = params_layout(
        shape,
        scale_shape,
        zp,
        axis,
        block_size,
        "x_scale",
        "x_zero_point",
    )?;
    let n = lay.numel();
    if q.len() != qtype.storage_len(n) {
        return Err(Error::arg(format!(
            "quantized data has {} bytes, expected {} for {n} {} values of shape {}",
            q.len(),
            qtype.storage_len(n),
            qtype.name(),
            shape_str(shape)
        )));
    }
    if out.len() != n {
        return Err(Error::arg(format!(
            "`out` has {} elements, expected {n}",
            out.len()
        )));
    }
    check_scales(scale, "x_scale")?;
    let zps = zp_values(zp, scale.len(), qtype, "x_zero_point")?;
    if qtype.bits == 8 {
        apply_dequantize(q, out, &lay, qtype.signed, scale, &zps)
    } else {
        let mut tmp = vec![0u8; n];
        pack4::unpack(q, &mut tmp, qtype.signed)?;
        apply_dequantize(&tmp, out, &lay, qtype.signed, scale, &zps)
    }
}

fn params_layout(
    shape: &[usize],
    scale_shape: &[usize],
    zp: Option<(&[i32], &[usize])>,
    axis: i64,
    block_size: i64,
    sname: &str,
    zname: &str,
) -> Result<Layout> {
    let lay = Layout::from_params(shape, scale_shape, sname, axis, block_size)?;
    if let Some((z, zs)) = zp {
        let same =
            zs == scale_shape || (lay.gran == Granularity::Tensor && z.len() == 1 && zs.len() <= 1);
        if !same {
            return Err(Error::arg(format!(
                "`{zname}` has shape {}, expected {} (the shape of `{sname}`)",
                shape_str(zs),
                shape_str(scale_shape)
            )));
        }
    }
    Ok(lay)
}

fn check_len(n: usize, lay: &Layout, what: &str) -> Result<()> {
    if n != lay.numel() {
        return Err(Error::arg(format!(
            "`{what}` has {n} elements, expected {} for shape {}",
            lay.numel(),
            shape_str(&lay.shape)
        )));
    }
    Ok(())
}

fn zp_values(
    zp: Option<(&[i32], &[usize])>,
    units: usize,
    qtype: QType,
    name: &str,
) -> Result<Vec<i32>> {
    match zp {
        Some((z, _)) => {
            qtype.check_zp(z, name)?;
            Ok(z.to_vec())
        }
        None => Ok(vec![0; units]),
    }
}

/// Min / max of a whole tensor, in parallel chunks.
fn minmax_all(x: &[f32]) -> reduce::MinMax {
    let threads = parallel::num_threads();
    if threads <= 1 || x.len() <= 4 * MIN_TASK {
        return reduce::minmax(x);
    }
    let chunk = x.len().div_ceil(threads * 4).max(MIN_TASK);
    let parts: Vec<reduce::MinMax> =
        parallel::install(|| x.par_chunks(chunk).map(reduce::minmax).collect());
    parts.into_iter().fold(
        reduce::MinMax {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            nan: false,
        },
        |a, b| reduce::MinMax {
            min: a.min.min(b.min),
            max: a.max.max(b.max),
            nan: a.nan | b.nan,
        },
    )
}

/// `max |x|` of a whole tensor, in parallel chunks.
fn absmax_all(x: &[f32]) -> (f32, bool) {
    let threads = parallel::num_threads();
    if threads <= 1 || x.len() <= 4 * MIN_TASK {
        return reduce::absmax(x);
    }
    let chunk = x.len().div_ceil(threads * 4).max(MIN_TASK);
    let parts: Vec<(f32, bool)> =
        parallel::install(|| x.par_chunks(chunk).map(reduce::absmax).collect());
    parts
        .into_iter()
        .fold((0.0, false), |a, b| (a.0.max(b.0), a.1 | b.1))
}

/// ONNX DynamicQuantizeLinear: uint8, range widened to include 0, `scale = (max - min) / 255`
/// (1.0 when max == min, as ONNX Runtime), `zp = rint(clamp(-min / scale, 0, 255))`, all float32.
/// Returns `(scale, zp)`; `out` receives the quantized values.
pub fn dynamic_quantize_linear(x: &[f32], out: &mut [u8]) -> Result<(f32, u8)> {
    if out.len() != x.len() {
        return Err(Error::arg(format!(
            "`out` has {} elements, expected {}",
            out.len(),
            x.len()
        )));
    }
    let mm = minmax_all(x);
    if mm.nan || mm.min == f32::NEG_INFINITY || mm.max == f32::INFINITY {
        return Err(non_finite(x, "`x`"));
    }
    let min = mm.min.min(0.0);
    let max = mm.max.max(0.0);
    let scale = if max == min {
        1.0f32
    } else {
        (max - min) / 255.0f32
    };
    if !scale.is_finite() {
        return Err(Error::arg(format!(
            "the range of `x` [{min:e}, {max:e}] overflows float32: no uint8 scale exists"
        )));
    }
    if scale < f32::MIN_POSITIVE {
        return Err(Error::arg(format!(
            "the range of `x` [{min:e}, {max:e}] is too small: its uint8 scale {scale:e} would be subnormal"
        )));
    }
    let izp = 0.0f32 - min / scale;
    let zp = izp.clamp(0.0, 255.0).round_ties_even() as i32;
    let lay = Layout::new(&[x.len()], 0, Granularity::Tensor, "`x`")?;
    apply(x, out, &lay, &[scale], &[zp], qk::Rounding::Div, 0, 255)?;
    Ok((scale, zp as u8))
}

/// The parameters [`quantize_into`] derived.
#[derive(Clone, Debug, PartialEq)]
pub struct Derivation {
    /// Scales, `param_shape` in C order.
    pub scale: Vec<f32>,
    /// Zero points, same shape.
    pub zero_point: Vec<i32>,
    /// The shape of `scale` / `zero_point`.
    pub param_shape: Vec<usize>,
    /// The stored type.
    pub qtype: QType,
}

/// The result of [`quantize`].
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    /// Stored bytes (int8 / uint8, or packed 4-bit).
    pub data: Vec<u8>,
    /// Scales, `param_shape` in C order.
    pub scale: Vec<f32>,
    /// Zero points, same shape.
    pub zero_point: Vec<i32>,
    /// The shape of `scale` / `zero_point`.
    pub param_shape: Vec<usize>,
    /// The stored type.
    pub qtype: QType,
}

/// Derive parameters from `x` (shape `shape`) and quantize it, in one call.
/// `axis = None`: per tensor; `Some(k)`: per channel along `k` (negative counts from the end);
/// with `block_size`: per block of that many elements along `k`.
pub fn quantize(
    x: &[f32],
    shape: &[usize],
    axis: Option<i64>,
    block_size: Option<i64>,
    spec: &Spec,
) -> Result<Quantized> {
    let mut data = vec![0u8; spec.qtype().storage_len(x.len())];
    let d = quantize_into(x, shape, axis, block_size, spec, &mut data)?;
    Ok(Quantized {
        data,
        scale: d.scale,
        zero_point: d.zero_point,
        param_shape: d.param_shape,
        qtype: d.qtype,
    })
}

/// The layout of a derive-and-quantize call.
pub fn derive_layout(
    shape: &[usize],
    axis: Option<i64>,
    block_size: Option<i64>,
) -> Result<Layout> {
    match (axis, block_size) {
        (None, None) => Layout::new(shape, 0, Granularity::Tensor, "`x`"),
        (None, Some(_)) => Err(Error::arg(
            "`block_size` needs an `axis` to block along; pass axis=k (e.g. axis=-1)",
        )),
        (Some(a), None) => {
            let ax = normalize_axis(a, shape.len(), "`x`")?;
            Layout::new(shape, ax, Granularity::Axis, "`x`")
        }
        (Some(a), Some(bs)) => {
            let ax = normalize_axis(a, shape.len(), "`x`")?;
            if bs < 1 {
                return Err(Error::arg(format!("`block_size` must be >= 1, found {bs}")));
            }
            let bs = usize::try_from(bs)
                .map_err(|_| Error::limit(format!("`block_size` = {bs} is too large")))?;
            Layout::new(shape, ax, Granularity::Block(bs), "`x`")
        }
    }
}

/// [`quantize`] into a caller's buffer of `spec.qtype().storage_len(x.len())` bytes.
pub fn quantize_into(
    x: &[f32],
    shape: &[usize],
    axis: Option<i64>,
    block_size: Option<i64>,
    spec: &Spec,
    out: &mut [u8],
) -> Result<Derivation> {
    spec.validate()?;
    let lay = derive_layout(shape, axis, block_size)?;
    check_len(x.len(), &lay, "x")?;
    let qtype = spec.qtype();
    let (qmin, qmax) = spec.qrange();
    let units = lay.units();
    let n = x.len();
    if out.len() != qtype.storage_len(n) {
        return Err(Error::arg(format!(
            "`out` has {} bytes, expected {} for {n} {} values",
            out.len(),
            qtype.storage_len(n),
            qtype.name()
        )));
    }
    let mut tmp = Vec::new();
    let bytes: &mut [u8] = if qtype.bits == 8 {
        out
    } else {
        tmp.resize(n, 0u8);
        &mut tmp
    };
    let mut scale = vec![0f32; units];
    let mut zp = vec![0i32; units];

    let fused = spec.calibration == Calibration::MinMax
        && n > 0
        && match lay.gran {
            Granularity::Axis => lay.outer == 1,
            Granularity::Block(_) => lay.inner == 1,
            Granularity::Tensor => false,
        };
    if fused {
        fused_quantize(x, bytes, &lay, spec, &mut scale, &mut zp)?;
    } else {
        let ranges = ranges(x, &lay, spec)?;
        let mut factor = vec![0f32; units];
        for (u, &(a, b)) in ranges.iter().enumerate() {
            let d = derive(a, b, qmin, qmax, spec);
            scale[u] = d.scale;
            zp[u] = d.zp;
            factor[u] = d.factor;
        }
        apply(
            x,
            bytes,
            &lay,
            &factor,
            &zp,
            spec.convention.rounding(),
            qmin,
            qmax,
        )?;
    }
    params::check_f16_scales(spec, &scale)?;
    if qtype.bits == 4 {
        pack_into(&tmp, out)?;
    }
    Ok(Derivation {
        scale,
        zero_point: zp,
        param_shape: lay.param_shape(),
        qtype,
    })
}

/// One pass: each contiguous unit's range is found and applied while it is in cache.
fn fused_quantize(
    x: &[f32],
    out: &mut [u8],
    lay: &Layout,
    spec: &Spec,
    scale: &mut [f32],
    zp: &mut [i32],
) -> Result<()> {
    let (qmin, qmax) = spec.qrange();
    let rounding = spec.convention.rounding();
    // Rows: one unit each (axis with outer == 1) or `nb` blocks each (blocks, inner == 1).
    let (row, per_row, bs) = match lay.gran {
        Granularity::Axis => (lay.inner, 1, lay.inner.max(1)),
        Granularity::Block(bs) => (lay.len, lay.blocks(), bs),
        Granularity::Tensor => (x.len(), 1, x.len().max(1)), // not used: per tensor is two passes
    };
    if row == 0 {
        // Empty units: scale 1, zero point 0 (the range [0, 0]).
        for u in 0..scale.len() {
            let d = derive(0.0, 0.0, qmin, qmax, spec);
            scale[u] = d.scale;
            zp[u] = d.zp;
        }
        return Ok(());
    }
    let nrows = x.len() / row;
    let threads = parallel::num_threads();
    let group = if threads <= 1 {
        nrows
    } else {
        nrows
            .div_ceil(threads * 4)
            .max(MIN_TASK.div_ceil(row))
            .max(1)
    };
    // Outputs much larger than the caches are streamed (no read-for-ownership).
    let stream = x.len() >= STREAM_OUTPUT;
    let body = |xs: &[f32], o: &mut [u8], s: &mut [f32], z: &mut [i32]| -> Result<()> {
        // Units in order: `row`-long rows cut into blocks of `bs` (the last may be partial).
        let units = xs.len() / row * per_row;
        let span = |u: usize| {
            let (r, b) = (u / per_row, u % per_row);
            let start = r * row + b * bs;
            (start, bs.min(row - b * bs))
        };
        let (s0, l0) = span(0);
        let mut cur = reduce::minmax(&xs[s0..s0 + l0]);
        for u in 0..units {
            let (st, len) = span(u);
            if cur.nan || cur.min == f32::NEG_INFINITY || cur.max == f32::INFINITY {
                return Err(Error::arg("non-finite"));
            }
            let d = derive(cur.min, cur.max, qmin, qmax, spec);
            s[u] = d.scale;
            z[u] = d.zp;
            let p = qk::Params {
                rounding,
                factor: d.factor,
                zp: d.zp,
                qmin,
                qmax,
            };
            // The next unit is reduced while this one is quantized from cache.
            let next: &[f32] = if u + 1 < units {
                let (ns, nl) = span(u + 1);
                &xs[ns..ns + nl]
            } else {
                &[]
            };
            let ahead: &[f32] = if u + 2 < units {
                let (ns, nl) = span(u + 2);
                &xs[ns..ns + nl]
            } else {
                &[]
            };
            cur = qk::quantize_reduce_next(
                &xs[st..st + len],
                &mut o[st..st + len],
                &p,
                next,
                ahead,
                stream,
            )?;
        }
        if stream {
            qk::fence(); // once per task, not per row
        }
        Ok(())
    };
    // Small blocks: per row, the block ranges, then one per-element kernel call for the row.
    let small = |xs: &[f32], o: &mut [u8], s: &mut [f32], z: &mut [i32]| -> Result<()> {
        let (mut f, mut fe, mut ze) = (vec![0f32; per_row], Vec::new(), Vec::new());
        for (r, (xr, or)) in xs.chunks(row).zip(o.chunks_mut(row)).enumerate() {
            for (b, xb) in xr.chunks(bs).enumerate() {
                let m = reduce::minmax(xb);
                if m.nan || m.min == f32::NEG_INFINITY || m.max == f32::INFINITY {
                    return Err(Error::arg("non-finite"));
                }
                let d = derive(m.min, m.max, qmin, qmax, spec);
                let u = r * per_row + b;
                s[u] = d.scale;
                z[u] = d.zp;
                f[b] = d.factor;
            }
            expand(&f, bs, row, &mut fe);
            expand(&z[r * per_row..(r + 1) * per_row], bs, row, &mut ze);
            qk::quantize_each(xr, or, &fe, &ze, rounding, qmin, qmax)?;
        }
        Ok(())
    };
    let is_small = matches!(lay.gran, Granularity::Block(b) if b < SMALL_BLOCK);
    let body = |xs: &[f32], o: &mut [u8], s: &mut [f32], z: &mut [i32]| -> Result<()> {
        if is_small {
            small(xs, o, s, z)
        } else {
            body(xs, o, s, z)
        }
    };
    let r = if group >= nrows {
        body(x, out, scale, zp)
    } else {
        parallel::install(|| {
            out.par_chunks_mut(group * row)
                .zip(x.par_chunks(group * row))
                .zip(scale.par_chunks_mut(group * per_row))
                .zip(zp.par_chunks_mut(group * per_row))
                .try_for_each(|(((o, xs), s), z)| body(xs, o, s, z))
        })
    };
    r.map_err(|e| match reduce::first_non_finite(x) {
        Some(_) => non_finite(x, "`x`"),
        None => e,
    })
}

/// Per-unit clipping ranges under the spec's calibration (non-fused path).
fn ranges(x: &[f32], lay: &Layout, spec: &Spec) -> Result<Vec<(f32, f32)>> {
    let units = lay.units();
    if x.is_empty() {
        return Ok(vec![(0.0, 0.0); units]);
    }
    match spec.calibration {
        Calibration::MinMax => {
            let bad = || non_finite(x, "`x`");
            match lay.gran {
                Granularity::Tensor => {
                    if spec.symmetric {
                        let (a, nan) = absmax_all(x);
                        if nan || !a.is_finite() {
                            return Err(bad());
                        }
                        Ok(vec![(-a, a)])
                    } else {
                        let m = minmax_all(x);
                        if m.nan || m.min == f32::NEG_INFINITY || m.max == f32::INFINITY {
                            return Err(bad());
                        }
                        Ok(vec![(m.min, m.max)])
                    }
                }
                _ => {
                    // Column-wise accumulation over rows of `inner` (or `len` when inner == 1).
                    let mut lo = vec![f32::INFINITY; units];
                    let mut hi = vec![f32::NEG_INFINITY; units];
                    let (len, inner) = (lay.len, lay.inner);
                    let mut nan = false;
                    match lay.gran {
                        Granularity::Axis if inner == 1 => {
                            // Row groups in parallel, each with its own accumulators.
                            let rows = x.len() / len.max(1);
                            let threads = parallel::num_threads();
                            let group = rows.div_ceil(threads).max(MIN_TASK.div_ceil(len.max(1)));
                            let part = |xs: &[f32]| -> Result<ColumnRanges> {
                                let mut l = vec![f32::INFINITY; len];
                                let mut h = vec![f32::NEG_INFINITY; len];
                                let mut nan = false;
                                for xr in xs.chunks(len.max(1)) {
                                    nan |= reduce::minmax_columns(xr, &mut l, &mut h)?;
                                }
                                Ok((l, h, nan))
                            };
                            let parts: Vec<Result<ColumnRanges>> = if threads <= 1 || group >= rows
                            {
                                vec![part(x)]
                            } else {
                                parallel::install(|| x.par_chunks(group * len).map(part).collect())
                            };
                            for p in parts {
                                let (l, h, n) = p?;
                                nan |= n;
                                for j in 0..len {
                                    lo[j] = lo[j].min(l[j]);
                                    hi[j] = hi[j].max(h[j]);
                                }
                            }
                        }
                        Granularity::Axis => {
                            for (r, xr) in x.chunks(inner).enumerate() {
                                let u = r % len;
                                let m = reduce::minmax(xr);
                                nan |= m.nan;
                                lo[u] = lo[u].min(m.min);
                                hi[u] = hi[u].max(m.max);
                            }
                        }
                        Granularity::Block(bs) => {
                            let nb = lay.blocks();
                            if inner == 1 {
                                for (r, xr) in x.chunks(len.max(1)).enumerate() {
                                    for (b, xb) in xr.chunks(bs).enumerate() {
                                        let m = reduce::minmax(xb);
                                        nan |= m.nan;
                                        lo[r * nb + b] = m.min;
                                        hi[r * nb + b] = m.max;
                                    }
                                }
                            } else {
                                for (r, xr) in x.chunks(inner).enumerate() {
                                    let (o, a) = (r / len, r % len);
                                    let u = (o * nb + a / bs) * inner;
                                    nan |= reduce::minmax_columns(
                                        xr,
                                        &mut lo[u..u + inner],
                                        &mut hi[u..u + inner],
                                    )?;
                                }
                            }
                        }
                        Granularity::Tensor => {} // handled above
                    }
                    // lo starts at +Inf and hi at -Inf: -Inf / +Inf there come from the data.
                    if nan || lo.contains(&f32::NEG_INFINITY) || hi.contains(&f32::INFINITY) {
                        return Err(bad());
                    }
                    Ok(lo.into_iter().zip(hi).collect())
                }
            }
        }
        Calibration::Percentile(p) => {
            if reduce::first_non_finite(x).is_some() {
                return Err(non_finite(x, "`x`"));
            }
            let f = |u: usize| {
                let mut buf = Vec::new();
                lay.gather(x, u, &mut buf);
                params::percentile_range(&mut buf, p, spec.symmetric)
            };
            Ok(parallel::install(|| {
                (0..units).into_par_iter().map(f).collect()
            }))
        }
        Calibration::Mse => {
            if reduce::first_non_finite(x).is_some() {
                return Err(non_finite(x, "`x`"));
            }
            let f = |u: usize| {
                let mut buf = Vec::new();
                lay.gather(x, u, &mut buf);
                let m = crate::kernels::reduce::scalar::minmax(&buf);
                params::mse_range(&buf, m.min, m.max, spec)
            };
            Ok(parallel::install(|| {
                (0..units).into_par_iter().map(f).collect()
            }))
        }
    }
}

/// Divide `x` (shape `shape`, C order) by a per-input-channel scale along `in_axis`, in place:
/// `x[.., j, ..] = x[.., j, ..] / in_scale[j]` in f32 (a division, not a multiplication by the
/// reciprocal). This is the last step of decoding an AWQ-scaled `quant` tensor (FORMAT.md
/// section 5): `x' = (f32(q - zero_point) * scale) / in_scale`.
///
/// numpy: `x / np.expand_dims(in_scale, tuple(i for i in range(x.ndim) if i != in_axis))`.
///
/// `in_scale` must hold `shape[in_axis]` values, each finite, positive and normal.
pub fn divide_in_scale(
    x: &mut [f32],
    shape: &[usize],
    in_axis: usize,
    in_scale: &[f32],
) -> Result<()> {
    if in_axis >= shape.len() {
        return Err(Error::arg(format!(
            "`in_axis` {in_axis} is out of range for shape {}",
            shape_str(shape)
        )));
    }
    let len = shape[in_axis];
    if in_scale.len() != len {
        return Err(Error::arg(format!(
            "`in_scale` has {} values, expected {len} (dimension {in_axis} of shape {})",
            in_scale.len(),
            shape_str(shape)
        )));
    }
    check_scales(in_scale, "in_scale")?;
    let inner: usize = shape[in_axis + 1..].iter().product();
    let n: usize = shape.iter().product();
    if x.len() != n {
        return Err(Error::arg(format!(
            "`out` has {} elements, expected {n} for shape {}",
            x.len(),
            shape_str(shape)
        )));
    }
    let row = len * inner;
    if row == 0 {
        return Ok(());
    }
    let body = |chunk: &mut [f32]| {
        for r in chunk.chunks_mut(row) {
            if inner == 1 {
                for (v, &s) in r.iter_mut().zip(in_scale) {
                    *v /= s;
                }
            } else {
                for (run, &s) in r.chunks_mut(inner).zip(in_scale) {
                    for v in run {
                        *v /= s;
                    }
                }
            }
        }
    };
    let rows_per_task = MIN_TASK.div_ceil(row).max(1);
    if parallel::num_threads() <= 1 || n <= MIN_TASK {
        body(x);
    } else {
        parallel::install(|| x.par_chunks_mut(rows_per_task * row).for_each(body));
    }
    Ok(())
}
