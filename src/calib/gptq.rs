//! GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training
//! Quantization for Generative Pre-trained Transformers"), on a fixed grid.
//!
//! Columns of `W` (`(out, in)`) are quantized one at a time in the processing order of
//! [`hessian::prepare`] (activation order: descending `diag H`); the error of each column,
//! divided by the diagonal of the upper Cholesky factor `U` of `H^-1`, is spread over the
//! columns not yet quantized (`W[:, j] -= err * U[p, j]`). Updates are lazy: inside a batch of
//! `block` columns (128) they are applied column by column within sub-batches of [`SUB`] columns
//! (per row, in parallel over rows) and by a small matrix product from each sub-batch to the
//! rest of its batch; the batch's accumulated error reaches the rest of the matrix as one matrix
//! product `W[:, i2:] -= E @ U[i1:i2, i2:]` (faer, threaded). Static groups: element `(r, c)`
//! uses the grid's parameters of its ORIGINAL column `c` whatever the order.
//!
//! Precision ([`Precision`]): `H`, its damping and its Cholesky factorisation are float64 in
//! both modes, and the rounding is done in float32 on `f32(w)`, exactly as the file decodes
//! ([`Grid::quantize`]). `F64` does everything else in float64 too (the numpy oracles' exact
//! arithmetic). `F32` (the default) does as the papers' PyTorch code: the triangular inverse
//! giving `U`, the working copy of `W`, the errors and the matrix products in float32, about
//! 1.5x faster (half the memory traffic, twice the SIMD lanes). On MiniLM's 18 linear layers
//! (real activations) and heavy-tailed synthetic layers, the output error of `F32` is within
//! the noise of `F64`'s (relative differences <= 6e-4 for GPTQ, where perturbing `W` by one
//! float32 ulp moves it by up to 2e-3; <= 1e-4 for SparseGPT); a float32 *Cholesky* was not:
//! up to 5e-3 on one layer, so the factorisation stays float64.

use rayon::prelude::*;

use crate::calib::grid::{check_weight, quantize_one, Grid};
use crate::calib::hessian::{self, Precision, Prepared, Work};
use crate::error::{Error, Result};
use crate::parallel;

/// Options of [`gptq`].
#[derive(Clone, Copy, Debug)]
pub struct GptqOptions {
    /// Relative damping (`lambda = damp * mean(diag H)`), > 0.
    pub damp: f64,
    /// Process columns by descending `diag H`.
    pub act_order: bool,
    /// Columns per lazy batch (>= 1; 128 in the paper).
    pub block: usize,
    /// The working precision of the weight updates (see [`Precision`]).
    pub precision: Precision,
}

impl Default for GptqOptions {
    fn default() -> Self {
        GptqOptions {
            damp: 0.01,
            act_order: true,
            block: 128,
            precision: Precision::default(),
        }
    }
}

/// The result of [`gptq`].
#[derive(Debug)]
pub struct GptqResult {
    /// Codes, `(out, in)` row-major, in `[qmin, qmax]`.
    pub codes: Vec<i32>,
    /// The relative damping that made the Cholesky factorisation succeed.
    pub damp_used: f64,
}

/// Check the `block` option.
pub fn check_block(block: usize) -> Result<()> {
    if block == 0 || block > 1 << 16 {
        return Err(Error::arg(format!(
            "`block` must be in 1..=65536 columns, found {block}"
        )));
    }
    Ok(())
}

/// GPTQ codes of `w` (`(out, inp)` row-major f32) on `grid` for the Hessian `h`
/// (`(inp, inp)` row-major f64).
pub fn gptq(
    w: &[f32],
    out: usize,
    inp: usize,
    h: &[f64],
    grid: &Grid<'_>,
    opts: GptqOptions,
) -> Result<GptqResult> {
    check_weight(w, out, inp, "`w`")?;
    hessian::check_h(h, inp)?;
    check_block(opts.block)?;
    match opts.precision.for_hessian(h, inp) {
        Precision::F64 => parallel::install(|| solve::<f64>(w, out, inp, h, grid, opts)),
        Precision::F32 => parallel::install(|| solve::<f32>(w, out, inp, h, grid, opts)),
    }
}

/// [`gptq`] with the working data in `F`, on checked arguments.
fn solve<F: Work>(
    w: &[f32],
    out: usize,
    inp: usize,
    h: &[f64],
    grid: &Grid<'_>,
    opts: GptqOptions,
) -> Result<GptqResult> {
    {
        let prep = hessian::prepare_as::<F>(h, inp, opts.damp, opts.act_order)?;
        let mut codes = vec![0i32; out * inp];
        if out == 0 || inp == 0 {
            return Ok(GptqResult {
                codes,
                damp_used: prep.damp_used,
            });
        }
        let mut wp = permuted::<F>(w, out, inp, &prep.perm);
        let colg = grid.col_groups(&prep.perm);
        solve_with(
            &mut wp,
            out,
            &prep,
            opts.block,
            SUB,
            |_, _, _| (),
            |_, r, j1, row, err, crow| quantize_batch(r, j1, row, err, crow, &prep, grid, &colg),
            &mut codes,
        );
        Ok(GptqResult {
            codes,
            damp_used: prep.damp_used,
        })
    }
}

/// `W[:, perm]` in column-major order: the `(inp, out)` row-major buffer `Wt` with
/// `Wt[p, r] = W[r, perm[p]]` (a column of `W` is a contiguous run).
pub(crate) fn permuted<F: Work>(w: &[f32], out: usize, inp: usize, perm: &[usize]) -> Vec<F> {
    const TILE: usize = 64;
    // W^T by 64 x 64 tiles (both sides read and written in runs), then its rows permuted.
    let mut t = hessian::zeros::<f32>(out * inp);
    t.par_chunks_mut(TILE * out)
        .enumerate()
        .for_each(|(ct, dst)| {
            let c0 = ct * TILE;
            let cols = dst.len() / out;
            for r0 in (0..out).step_by(TILE) {
                let r1 = (r0 + TILE).min(out);
                for k in 0..cols {
                    let d = &mut dst[k * out + r0..k * out + r1];
                    for (v, r) in d.iter_mut().zip(r0..r1) {
                        *v = w[r * inp + c0 + k];
                    }
                }
            }
        });
    let mut wt = hessian::zeros::<F>(out * inp);
    wt.par_chunks_mut(out)
        .zip(perm.par_iter())
        .for_each(|(d, &c)| {
            for (v, &x) in d.iter_mut().zip(&t[c * out..(c + 1) * out]) {
                *v = F::of_f32(x);
            }
        });
    wt
}

/// Columns per sub-batch: inside a lazy batch the error is spread column by column only within
/// a sub-batch; it reaches the rest of the batch by a (small) matrix product per sub-batch,
/// which keeps the scalar work at `out * in * SUB / 2` multiply-adds.
pub(crate) const SUB: usize = 16;

/// The lazy-batch driver shared by GPTQ and SparseGPT, on `wt` = `W` in the processing order,
/// column-major (see [`permuted`]). For each batch `[i1, i2)` of `block` columns:
/// `s = batch_start(i1, i2, wt)` (SparseGPT chooses its mask there); then for each sub-batch
/// `[j1, j2)` of `sub` columns (`block` and `sub` are multiples of the caller's unit) its
/// columns are copied out row by row into `B` (`(out, j2 - j1)` row-major) and
/// `batch(&s, r, j1, brow, err, out_row)` processes row `r` (`brow` = its weights in the
/// sub-batch, updated in place; `err` = its error slots; `out_row` = its `n` outputs `T`),
/// rows in parallel; `B` and the errors are copied back, and `W[:, j2:i2] -= E_sub @
/// U[j1:j2, j2:i2]`. At the end of the batch `W[:, i2:] -= E @ U[i1:i2, i2:]`. The products
/// are faer's (threaded) on contiguous column-major blocks of `wt`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn solve_with<F: Work, S: Sync, T: Send>(
    wt: &mut [F],
    out: usize,
    prep: &Prepared<F>,
    block: usize,
    sub: usize,
    mut batch_start: impl FnMut(usize, usize, &[F]) -> S,
    batch: impl Fn(&S, usize, usize, &mut [F], &mut [F], &mut [T]) + Sync,
    outputs: &mut [T],
) {
    let n = prep.n;
    let u = &prep.u[..];
    let par = hessian::par();
    let sub = sub.min(block);
    let zero = F::of_f64(0.0);
    let mut b = vec![zero; out * sub.min(n)];
    let mut eb = vec![zero; out * sub.min(n)];
    // The batch's errors, column-major (out, bs).
    let mut e = vec![zero; out * block.min(n)];
    let mut i1 = 0;
    while i1 < n {
        let i2 = (i1 + block).min(n);
        let s = batch_start(i1, i2, wt);
        let mut j1 = i1;
        while j1 < i2 {
            let j2 = (j1 + sub).min(i2);
            let sbs = j2 - j1;
            let (b, eb) = (&mut b[..out * sbs], &mut eb[..out * sbs]);
            {
                let src = &wt[j1 * out..j2 * out];
                b.par_chunks_mut(sbs).enumerate().for_each(|(r, br)| {
                    for (t, v) in br.iter_mut().enumerate() {
                        *v = src[t * out + r];
                    }
                });
            }
            b.par_chunks_mut(sbs)
                .zip(eb.par_chunks_mut(sbs))
                .zip(outputs.par_chunks_mut(n))
                .enumerate()
                .for_each(|(r, ((br, er), orow))| batch(&s, r, j1, br, er, orow));
            {
                let (b, eb) = (&*b, &*eb);
                wt[j1 * out..j2 * out]
                    .par_chunks_mut(out)
                    .zip(e[(j1 - i1) * out..(j2 - i1) * out].par_chunks_mut(out))
                    .enumerate()
                    .for_each(|(t, (col, ecol))| {
                        for (r, (v, ev)) in col.iter_mut().zip(ecol.iter_mut()).enumerate() {
                            *v = b[r * sbs + t];
                            *ev = eb[r * sbs + t];
                        }
                    });
            }
            hessian::sub_batch_update(wt, &e, u, n, out, (i1, i2), (j1, j2), par);
            j1 = j2;
        }
        hessian::batch_update(wt, &e, u, n, out, (i1, i2), par);
        i1 = i2;
    }
}

/// Spread `err` (the scaled error of position `p` in its batch) over the rest of the batch:
/// `row[p + 1..i2] -= err * U[p, p + 1..i2]`.
#[inline]
pub(crate) fn spread<F: Work>(row: &mut [F], urow: &[F], err: F) {
    for (x, &u) in row.iter_mut().zip(urow) {
        *x -= err * u;
    }
}

/// One row of one GPTQ sub-batch (`colg[p]` = the column group of position `p`).
#[allow(clippy::too_many_arguments)]
fn quantize_batch<F: Work>(
    r: usize,
    j1: usize,
    row: &mut [F],
    err: &mut [F],
    crow: &mut [i32],
    prep: &Prepared<F>,
    grid: &Grid<'_>,
    colg: &[usize],
) {
    let n = prep.n;
    let j2 = j1 + err.len();
    let (srow, zrow) = grid.row(r);
    for (p, (&c, &g)) in prep.perm.iter().zip(colg).enumerate().take(j2).skip(j1) {
        let t = p - j1;
        let w = row[t];
        let (q, deq) = quantize_one(
            w.to_f32(),
            srow[g],
            zrow.map_or(0, |z| z[g]),
            grid.qmin,
            grid.qmax,
        );
        crow[c] = q;
        let d = prep.u[p * n + p];
        let e = (w - F::of_f32(deq)) / d;
        err[t] = e;
        spread(&mut row[t + 1..], &prep.u[p * n + p + 1..p * n + j2], e);
    }
}
