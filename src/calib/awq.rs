//! AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han 2023, "AWQ: Activation-aware Weight
//! Quantization for LLM Compression and Acceleration"): a per-input-channel scale search.
//!
//! Input channels that carry large activations matter more; scaling them up before rounding
//! (`W' = W diag(s)`) and down after (`W_hat = dequant(RTN(W')) diag(1/s)`) lowers their
//! relative rounding error at the expense of the others. The paper searches
//! `s = mean|x|^alpha` over a grid of `alpha` and keeps the scale with the smallest output
//! error on the calibration data; here the output error is the calibrated objective
//! `tr((W - W_hat) H (W - W_hat)^T)` ([`objective`]), with the full `H` when the statistics
//! hold it, else its diagonal.
//!
//! Scales (FORMAT.md / the paper's reference code, `auto_scale.py`), in f64 then rounded to f32:
//! for the live channels (`mean_abs_j > 0`) `p_j = max(mean_abs_j^alpha, 1e-4)`,
//! `s_j = clamp(p_j / sqrt(max(p) min(p)), 1e-4, 1e4)` (max / min over live channels);
//! dead channels (`mean_abs_j = 0`, never active in calibration) get `s_j = 1`.
//! `alpha = g / n_grid` for `g = 0..n_grid` (the paper: `n_grid = 20`); `alpha = 0` gives
//! `s = 1`, plain round to nearest, so the result is never worse than RTN on the objective
//! (ties keep the smaller alpha).
//!
//! The grid for each candidate is derived from `W'` exactly as plain round to nearest derives
//! it ([`crate::quant::quantize`] with the same scheme and spec), and `W_hat` is decoded
//! exactly as the `.epk` file decodes it: `(f32(q - zp) * scale) / s` in f32.

use crate::calib::grid::{check_finite_f64, check_weight};
use crate::calib::objective::{objective, Hessian};
use crate::error::{Error, Result};
use crate::quant::{self, Spec};

/// Smallest `mean_abs^alpha` before normalisation (the reference code's clamp).
pub const P_MIN: f64 = 1e-4;
/// Scales are clamped to `[1 / S_MAX, S_MAX]` after normalisation.
pub const S_MAX: f64 = 1e4;
/// Largest accepted `n_grid`.
pub const MAX_GRID: usize = 1000;

/// The AWQ scales for one `alpha` (see the module docs).
///
/// numpy: `live = m > 0; p = np.maximum(m[live] ** alpha, 1e-4);
/// s = np.ones(n, np.float32); s[live] = np.clip(p / np.sqrt(p.max() * p.min()), 1e-4, 1e4)`.
pub fn awq_scales(mean_abs: &[f64], alpha: f64) -> Result<Vec<f32>> {
    check_mean_abs(mean_abs)?;
    if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
        return Err(Error::arg(format!(
            "`alpha` must be a number in [0, 1], found {alpha}"
        )));
    }
    let p: Vec<f64> = mean_abs
        .iter()
        .map(|&m| {
            if m > 0.0 {
                m.powf(alpha).max(P_MIN)
            } else {
                0.0
            }
        })
        .collect();
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for &v in p.iter().filter(|&&v| v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == 0.0 {
        return Ok(vec![1.0; mean_abs.len()]);
    }
    let norm = (hi * lo).sqrt();
    Ok(p.iter()
        .map(|&v| {
            if v > 0.0 {
                (v / norm).clamp(1.0 / S_MAX, S_MAX) as f32
            } else {
                1.0
            }
        })
        .collect())
}

fn check_mean_abs(mean_abs: &[f64]) -> Result<()> {
    check_finite_f64(mean_abs, "`mean_abs`")?;
    if let Some(i) = mean_abs.iter().position(|&v| v < 0.0) {
        return Err(Error::arg(format!(
            "`mean_abs` must be >= 0 (a mean of |x|), found {} at index {i}",
            mean_abs[i]
        )));
    }
    Ok(())
}

/// The quantization scheme of a weight of shape `(rows, cols)` as given (not transposed):
/// the arguments of [`quant::quantize`].
#[derive(Clone, Copy, Debug)]
pub struct Scheme {
    /// `None`: per tensor; `Some(k)`: per channel / per block along `k`.
    pub axis: Option<i64>,
    /// Block size along `axis`.
    pub block_size: Option<i64>,
    /// Bits, symmetry, range calibration.
    pub spec: Spec,
}

/// The result of [`awq`].
#[derive(Debug)]
pub struct AwqResult {
    /// The best scales, one per input channel.
    pub scale: Vec<f32>,
    /// The alpha that gave them.
    pub alpha: f64,
    /// Its objective.
    pub error: f64,
    /// The objective of every candidate, `errors[g]` for `alpha = g / n_grid` (`errors[0]` is
    /// plain round to nearest).
    pub errors: Vec<f64>,
}

/// `W_hat` of one candidate: `W' = W * s` along `in_axis`, round to nearest on the grid derived
/// from `W'`, decoded as the file decodes it, divided by `s`.
pub fn rtn_scaled(
    w: &[f32],
    shape: [usize; 2],
    in_axis: usize,
    s: &[f32],
    scheme: &Scheme,
) -> Result<Vec<f32>> {
    let cols = shape[1];
    let mut ws = w.to_vec();
    if in_axis == 1 {
        for row in ws.chunks_mut(cols.max(1)) {
            for (v, &sj) in row.iter_mut().zip(s) {
                *v *= sj;
            }
        }
    } else {
        for (row, &sj) in ws.chunks_mut(cols.max(1)).zip(s) {
            for v in row {
                *v *= sj;
            }
        }
    }
    let q = quant::quantize(&ws, &shape, scheme.axis, scheme.block_size, &scheme.spec)?;
    let mut out = ws; // reused: every element is overwritten
    let axis = scheme.axis.unwrap_or(0);
    let block = scheme.block_size.unwrap_or(0);
    quant::dequantize_linear(
        &q.data,
        q.qtype,
        &shape,
        &q.scale,
        &q.param_shape,
        Some((&q.zero_point, &q.param_shape)),
        axis,
        block,
        &mut out,
    )?;
    quant::divide_in_scale(&mut out, &shape, in_axis, s)?;
    Ok(out)
}

/// `(rows, cols)` row-major transposed.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// Search the AWQ scales of `w` (`shape = (rows, cols)` row-major f32; the input channels run
/// along `in_axis`: 1 for PyTorch `(out, in)`, 0 for Keras / ONNX MatMul `(in, out)`), with
/// the calibration statistics `h` (full `(in, in)` or its diagonal) and `mean_abs` (`(in,)`,
/// mean `|x|` per input channel), over `alpha = g / n_grid`, `g = 0..n_grid`.
pub fn awq(
    w: &[f32],
    shape: [usize; 2],
    in_axis: usize,
    h: Hessian<'_>,
    mean_abs: &[f64],
    scheme: &Scheme,
    n_grid: usize,
) -> Result<AwqResult> {
    let [rows, cols] = shape;
    check_weight(w, rows, cols, "`w`")?;
    if in_axis > 1 {
        return Err(Error::arg(format!(
            "`in_axis` must be 0 or 1 for a 2-D weight, found {in_axis}"
        )));
    }
    let (out, inp) = if in_axis == 1 {
        (rows, cols)
    } else {
        (cols, rows)
    };
    if mean_abs.len() != inp {
        return Err(Error::arg(format!(
            "`mean_abs` has length {}, expected {inp} (the input channels of `w`, axis {in_axis})",
            mean_abs.len()
        )));
    }
    check_mean_abs(mean_abs)?;
    if n_grid == 0 || n_grid > MAX_GRID {
        return Err(Error::arg(format!(
            "`n_grid` must be in 1..={MAX_GRID}, found {n_grid}"
        )));
    }
    scheme.spec.validate()?;
    let w_oi = if in_axis == 1 {
        None
    } else {
        Some(transpose(w, rows, cols))
    };
    let mut best: Option<(f64, f64, Vec<f32>)> = None;
    let mut errors = Vec::with_capacity(n_grid);
    for g in 0..n_grid {
        let alpha = g as f64 / n_grid as f64;
        let s = awq_scales(mean_abs, alpha)?;
        let w_hat = rtn_scaled(w, shape, in_axis, &s, scheme)?;
        let err = match &w_oi {
            None => objective(w, &w_hat, out, inp, h)?,
            Some(wt) => objective(wt, &transpose(&w_hat, rows, cols), out, inp, h)?,
        };
        errors.push(err);
        if best.as_ref().is_none_or(|b| err < b.0) {
            best = Some((err, alpha, s));
        }
    }
    let (error, alpha, scale) = best.expect("n_grid >= 1");
    Ok(AwqResult {
        scale,
        alpha,
        error,
        errors,
    })
}

/// Largest accepted `max_shrink` of [`clip`].
pub const MAX_SHRINK: f64 = 0.99;

/// AWQ's weight clipping search (the reference code's `auto_clip`), on a `(out, inp)`
/// weight (already scaled by the AWQ scales; `h` is then `diag(1/s) H diag(1/s)`):
/// for every group of one row (`grid.row_block` must be 1: per output channel, or blocks
/// along the input dimension) the range `[min, max]` of the group is shrunk to
/// `[min * f, max * f]` for `f = 1 - max_shrink * k / n_grid`, `k = 0..n_grid`, the scale
/// and zero point derived from it as round to nearest derives them (ONNX Runtime's
/// `compute_scale_zp`), and the `f` with the smallest error of the group's own contribution
/// `e^T H_gg e` (`H_gg`: the group's diagonal block of `H`, or the diagonal of a diagonal
/// `h`) is kept; ties keep the larger `f`, so `k = 0`, the unclipped grid, wins unless
/// clipping helps. Groups are independent (as in the reference), so the gain is measured on
/// the block-diagonal part of the objective.
///
/// Returns the grid's `(scale, zero point)` `(out, cg)` (zero point `None` when symmetric).
pub fn clip(
    w: &[f32],
    out: usize,
    inp: usize,
    h: Hessian<'_>,
    grid: &crate::calib::grid::Grid<'_>,
    n_grid: usize,
    max_shrink: f64,
) -> Result<(Vec<f32>, Option<Vec<i32>>)> {
    use rayon::prelude::*;

    check_weight(w, out, inp, "`w`")?;
    if grid.row_block != 1 {
        return Err(Error::arg(format!(
            "clipping needs groups within one output row (row_block 1), found row_block {}",
            grid.row_block
        )));
    }
    if n_grid == 0 || n_grid > MAX_GRID {
        return Err(Error::arg(format!(
            "`n_grid` must be in 1..={MAX_GRID}, found {n_grid}"
        )));
    }
    if !(max_shrink.is_finite() && (0.0..=MAX_SHRINK).contains(&max_shrink)) {
        return Err(Error::arg(format!(
            "`max_shrink` must be in [0, {MAX_SHRINK}], found {max_shrink}"
        )));
    }
    match h {
        Hessian::Full(hf) => {
            if hf.len() != inp * inp {
                return Err(Error::arg(format!(
                    "`h` holds {} values, expected {} for shape ({inp}, {inp})",
                    hf.len(),
                    inp * inp
                )));
            }
            check_finite_f64(hf, "`h`")?;
        }
        Hessian::Diag(d) => {
            if d.len() != inp {
                return Err(Error::arg(format!(
                    "`h` (diagonal) has length {}, expected {inp}",
                    d.len()
                )));
            }
            check_finite_f64(d, "`h`")?;
        }
    }
    let cg = grid.cg;
    let cb = grid.col_block;
    let symmetric = grid.zero_point.is_none();
    let (qmin, qmax) = (grid.qmin, grid.qmax);
    let mut scale = vec![0f32; out * cg];
    let mut zp = vec![0i32; out * cg];
    if out == 0 || inp == 0 {
        return Ok((scale, (!symmetric).then_some(zp)));
    }
    // The range -> (scale, zero point) rule of `edgepack.quantize` (only `symmetric`, the
    // convention and `scale_f16` matter to `derive`; float16 scales are rounded by the caller).
    let spec = Spec {
        bits: 8,
        symmetric,
        reduce_range: false,
        convention: quant::Convention::Onnx,
        calibration: quant::Calibration::MinMax,
        scale_f16: false,
    };
    crate::parallel::install(|| {
        scale
            .par_chunks_mut(cg)
            .zip(zp.par_chunks_mut(cg))
            .enumerate()
            .for_each(|(r, (srow, zrow))| {
                let row = &w[r * inp..(r + 1) * inp];
                let mut e = vec![0f64; cb.min(inp)];
                for g in 0..cg {
                    let (c0, c1) = (g * cb, ((g + 1) * cb).min(inp));
                    let seg = &row[c0..c1];
                    let lo = seg.iter().copied().fold(f32::INFINITY, f32::min);
                    let hi = seg.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut best: Option<(f64, f32, i32)> = None;
                    for k in 0..n_grid {
                        let f = 1.0 - max_shrink * k as f64 / n_grid as f64;
                        let (a, b) = if k == 0 {
                            (lo, hi)
                        } else {
                            ((lo as f64 * f) as f32, (hi as f64 * f) as f32)
                        };
                        let d = quant::derive(a, b, qmin, qmax, &spec);
                        let e = &mut e[..c1 - c0];
                        for (ev, &x) in e.iter_mut().zip(seg) {
                            let (_, deq) =
                                crate::calib::grid::quantize_one(x, d.scale, d.zp, qmin, qmax);
                            *ev = x as f64 - deq as f64;
                        }
                        let err = match h {
                            Hessian::Diag(dg) => e
                                .iter()
                                .zip(&dg[c0..c1])
                                .map(|(x, dj)| dj * x * x)
                                .sum::<f64>(),
                            Hessian::Full(hf) => {
                                let mut t = 0f64;
                                for (i, &ei) in e.iter().enumerate() {
                                    let hrow = &hf[(c0 + i) * inp + c0..(c0 + i) * inp + c1];
                                    let dot: f64 =
                                        hrow.iter().zip(e.iter()).map(|(a, b)| a * b).sum();
                                    t += ei * dot;
                                }
                                t
                            }
                        };
                        if best.is_none_or(|b| err < b.0) {
                            best = Some((err, d.scale, d.zp));
                        }
                    }
                    let (_, s, z) = best.expect("n_grid >= 1");
                    srow[g] = s;
                    zrow[g] = z;
                }
            })
    });
    Ok((scale, (!symmetric).then_some(zp)))
}
