//! Data-free refinement of a quantization grid after HQQ (Badri & Shaji 2023, "Half-Quadratic
//! Quantization of Large Machine Learning Models"), with integer zero points.
//!
//! HQQ minimises `||W - Q^-1(Q(W))||_p^p` (`p < 1`, robust to outliers) by half-quadratic
//! splitting: an auxiliary error `W_e` takes the `lp` part and the grid a quadratic part. Per
//! group of elements sharing one `(scale, zero point)`, with per-element weights `c_j` (the
//! weight of the element's input column, 1 when none are given), each iteration:
//!
//! 1. codes `q = clamp(round_ties_even(w / s) + z, qmin, qmax)` (the file's rounding);
//! 2. shrinkage `W_e = shrink_p(w - (q - z) s, beta)` with
//!    `shrink_p(x, beta) = sign(x) max(|x| - |x|^(p-1) / beta, 0)`;
//! 3. weighted least squares of the target `t = w - W_e` on the codes: `t ~= s q + a` gives
//!    `s` and `z = -a / s`, rounded to the nearest integer (ties to even) and clamped to
//!    `[qmin, qmax]`; then `s` is refit for that integer `z`:
//!    `s = sum c (q - z) t / sum c (q - z)^2`. Symmetric grids (no zero point) fit `s` only;
//! 4. `beta *= 1.01` (from 10, the paper's schedule).
//!
//! Which iterate is kept: per group, the one with the smallest *weighted l2* error
//! `sum_j c_j (w_j - w'_j)^2` (what a layer's output sees; with `c = diag H` it is the
//! calibrated objective of a diagonal Hessian), the input grid included, so the result is
//! never worse than the input on that error, group by group. Scales stay positive, finite and
//! normal f32; zero points stay integers in `[qmin, qmax]`.

use rayon::prelude::*;

use crate::calib::grid::{check_finite_f64, check_weight, quantize_one, Grid};
use crate::error::{Error, Result};
use crate::parallel;

/// Options of [`hqq`].
#[derive(Clone, Copy, Debug)]
pub struct HqqOptions {
    /// Iterations (0 = return the input grid).
    pub iters: usize,
    /// The `lp` exponent of the shrinkage, in `(0, 1]`.
    pub p: f64,
}

impl Default for HqqOptions {
    fn default() -> Self {
        HqqOptions { iters: 20, p: 0.7 }
    }
}

/// The refined grid: scales `(rg, cg)` and zero points (when the input had them).
#[derive(Debug)]
pub struct HqqResult {
    /// Scales, row-major `(rg, cg)`.
    pub scale: Vec<f32>,
    /// Zero points, or `None` for a symmetric grid.
    pub zero_point: Option<Vec<i32>>,
}

/// `sign(x) max(|x| - |x|^(p-1) / beta, 0)`.
#[inline]
fn shrink(x: f64, beta: f64, p: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let a = x.abs();
    let v = (a - a.powf(p - 1.0) / beta).max(0.0);
    v.copysign(x)
}

/// Codes `q` and dequantized values `dq` of the group under `(s, z)`, and its weighted
/// squared error.
#[allow(clippy::too_many_arguments)]
fn encode(
    w: &[f32],
    c: &[f64],
    s: f32,
    z: i32,
    qmin: i32,
    qmax: i32,
    q: &mut [f64],
    dq: &mut [f64],
) -> f64 {
    let mut e = 0f64;
    for (((&x, &cj), qj), dj) in w.iter().zip(c).zip(q.iter_mut()).zip(dq.iter_mut()) {
        let (code, deq) = quantize_one(x, s, z, qmin, qmax);
        *qj = code as f64;
        *dj = deq as f64;
        let d = x as f64 - *dj;
        e += cj * d * d;
    }
    e
}

/// Refine `grid` for `w` (`(out, inp)` f32); `col_weight` (`inp`, finite, >= 0) weights the
/// input columns.
pub fn hqq(
    w: &[f32],
    out: usize,
    inp: usize,
    grid: &Grid<'_>,
    col_weight: Option<&[f64]>,
    opts: HqqOptions,
) -> Result<HqqResult> {
    check_weight(w, out, inp, "`w`")?;
    if opts.iters > 10_000 {
        return Err(Error::arg(format!(
            "`iters` must be at most 10000, found {}",
            opts.iters
        )));
    }
    if !(opts.p > 0.0 && opts.p <= 1.0) {
        return Err(Error::arg(format!(
            "`p` must be in (0, 1], found {}",
            opts.p
        )));
    }
    if let Some(cw) = col_weight {
        if cw.len() != inp {
            return Err(Error::arg(format!(
                "`col_weight` has length {}, expected {inp} (the input channels of `w`)",
                cw.len()
            )));
        }
        check_finite_f64(cw, "`col_weight`")?;
        if let Some(i) = cw.iter().position(|&v| v < 0.0) {
            return Err(Error::arg(format!(
                "`col_weight` must be non-negative, found {} at index {i}",
                cw[i]
            )));
        }
    }
    let rg = out.div_ceil(grid.row_block);
    let cg = grid.cg;
    let (qmin, qmax) = (grid.qmin, grid.qmax);
    let affine = grid.zero_point.is_some();
    let groups: Vec<(f32, i32)> = parallel::install(|| {
        (0..rg * cg)
            .into_par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(gw, gc): &mut (Vec<f32>, Vec<f64>), g| {
                    let (a, b) = (g / cg, g % cg);
                    gw.clear();
                    gc.clear();
                    let cols = b * grid.col_block..((b + 1) * grid.col_block).min(inp);
                    for r in a * grid.row_block..((a + 1) * grid.row_block).min(out) {
                        gw.extend_from_slice(&w[r * inp + cols.start..r * inp + cols.end]);
                        match col_weight {
                            Some(cw) => gc.extend_from_slice(&cw[cols.clone()]),
                            None => gc.extend(std::iter::repeat_n(1.0, cols.len())),
                        }
                    }
                    let (s0, z0) = (grid.scale[g], grid.zero_point.map_or(0, |z| z[g]));
                    refine(gw, gc, s0, z0, affine, qmin, qmax, opts)
                },
            )
            .collect()
    });
    Ok(HqqResult {
        scale: groups.iter().map(|g| g.0).collect(),
        zero_point: affine.then(|| groups.iter().map(|g| g.1).collect()),
    })
}

/// One group's iterations; returns the best `(scale, zero point)`.
#[allow(clippy::too_many_arguments)]
fn refine(
    w: &[f32],
    c: &[f64],
    s0: f32,
    z0: i32,
    affine: bool,
    qmin: i32,
    qmax: i32,
    opts: HqqOptions,
) -> (f32, i32) {
    let mut q = vec![0f64; w.len()];
    let mut dq = vec![0f64; w.len()];
    let mut t = vec![0f64; w.len()];
    let e0 = encode(w, c, s0, z0, qmin, qmax, &mut q, &mut dq);
    let mut best = (s0, z0, e0);
    let (mut s, mut z) = (s0, z0);
    let mut beta = 10.0f64;
    for _ in 0..opts.iters {
        // `q`, `dq`: the codes and values of the current grid `(s, z)`.
        for ((&x, &d), tj) in w.iter().zip(&dq).zip(t.iter_mut()) {
            *tj = x as f64 - shrink(x as f64 - d, beta, opts.p);
        }
        beta *= 1.01;
        let mut z_new = z;
        if affine {
            let sw: f64 = c.iter().sum();
            if sw <= 0.0 {
                break;
            }
            let mq = c.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>() / sw;
            let mt = c.iter().zip(&t).map(|(a, b)| a * b).sum::<f64>() / sw;
            let (mut cov, mut var) = (0f64, 0f64);
            for ((&cj, &qj), &tj) in c.iter().zip(&q).zip(&t) {
                cov += cj * (qj - mq) * (tj - mt);
                var += cj * (qj - mq) * (qj - mq);
            }
            if var > 0.0 && cov > 0.0 {
                let s_fit = cov / var;
                let zf = -(mt - s_fit * mq) / s_fit;
                if zf.is_finite() {
                    z_new = (zf.round_ties_even().clamp(qmin as f64, qmax as f64)) as i32;
                }
            }
        }
        let zf = z_new as f64;
        let (mut num, mut den) = (0f64, 0f64);
        for ((&cj, &qj), &tj) in c.iter().zip(&q).zip(&t) {
            num += cj * (qj - zf) * tj;
            den += cj * (qj - zf) * (qj - zf);
        }
        let s_new = if den > 0.0 { (num / den) as f32 } else { s };
        if !(s_new.is_finite() && s_new >= f32::MIN_POSITIVE) || (s_new == s && z_new == z) {
            continue; // no new grid: the codes stay, only beta grows
        }
        s = s_new;
        z = z_new;
        let e = encode(w, c, s, z, qmin, qmax, &mut q, &mut dq);
        if e < best.2 {
            best = (s, z, e);
        }
    }
    (best.0, best.1)
}
