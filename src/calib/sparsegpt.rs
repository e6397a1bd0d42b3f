//! SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
//! Pruned in One-Shot"), optionally with joint quantization on a fixed grid.
//!
//! The GPTQ machinery ([`crate::calib::gptq`]) in the natural column order (no activation
//! order: N:M groups and blocks are runs of consecutive input channels). A weight that is
//! pruned becomes exactly 0 and its error `w / U[p, p]` is spread over the columns not yet
//! processed; a kept weight stays (updated) or, with a grid, is rounded to it. The mask is
//! adaptive: it is chosen from the *updated* weights as the solver reaches them, with the OBS
//! score `w^2 / U[p, p]^2` (`U[p, p]^2 = 1 / [H^-1]_pp` after the earlier columns are
//! eliminated):
//!
//! * `Unstructured`: at the start of each lazy batch (`block` columns), over the batch's
//!   `out x bs` weights. The counts are exact: with `R = round_half_even` and `N_b` the number
//!   of weights in the batches up to and including batch `b`, batch `b` prunes
//!   `R(s * N_b) - R(s * N_{b-1})` weights, so the whole weight loses exactly
//!   `R(s * out * in)` (as `edgepack.prune.magnitude_mask`), each batch within one weight of
//!   its share. Ties: lower flat index (row-major within the batch) first.
//! * `Nm { n, m }`: keep `n` of every `m` consecutive input channels in each row (the `n`
//!   largest scores, ties: lower index pruned first), chosen when the solver reaches the
//!   group's first column; a partial last group of `r < m` keeps `ceil(n * r / m)`, as
//!   `edgepack.prune.nm_mask`. The batch length is rounded down to a multiple of `m`.
//! * `Block { br, bc }`: tiles of `br x bc` (edge tiles may be partial, as
//!   `edgepack.prune.block_mask`) scored by the sum of their weights' scores, chosen per
//!   batch with the exact counts of the unstructured case counted in tiles: the whole weight
//!   loses `R(s * tiles)`. The batch length is rounded down to a multiple of `bc`.
//!
//! With a grid the pruned weights have code `zero_point` (the grid requires it in
//! `[qmin, qmax]`), which decodes to exactly 0.

use rayon::prelude::*;

use crate::calib::gptq::{check_block, permuted, solve_with, spread, SUB};
use crate::calib::grid::{check_weight, quantize_one, Grid};
use crate::calib::hessian;
use crate::error::{Error, Result};
use crate::kernels::select;
use crate::parallel;
use crate::prune::{check_nm, count_to_prune, nm_keep};

/// The sparsity pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure {
    /// Any weights.
    Unstructured,
    /// `n` kept of every `m` consecutive input channels.
    Nm {
        /// Kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
    /// Whole tiles of `br` rows by `bc` input channels.
    Block {
        /// Tile rows.
        br: usize,
        /// Tile columns.
        bc: usize,
    },
}

/// The result of [`sparsegpt`].
#[derive(Debug)]
pub struct SparseGptResult {
    /// The pruned and updated weight (on the grid when one is given), `(out, in)`.
    pub w: Vec<f32>,
    /// `true` = kept.
    pub keep: Vec<bool>,
    /// Codes when a grid is given.
    pub codes: Option<Vec<i32>>,
    /// The relative damping that made the factorisation succeed.
    pub damp_used: f64,
}

/// SparseGPT of `w` (`(out, inp)` f32) with Hessian `h` (`(inp, inp)` f64); `sparsity` in
/// `[0, 1)` (ignored by `Nm`, whose sparsity is `1 - n / m`).
#[allow(clippy::too_many_arguments)]
pub fn sparsegpt(
    w: &[f32],
    out: usize,
    inp: usize,
    h: &[f64],
    sparsity: f64,
    structure: Structure,
    grid: Option<&Grid<'_>>,
    damp: f64,
    block: usize,
) -> Result<SparseGptResult> {
    check_weight(w, out, inp, "`w`")?;
    hessian::check_h(h, inp)?;
    check_block(block)?;
    count_to_prune(sparsity, 0)?;
    let unit = match structure {
        Structure::Unstructured => 1,
        Structure::Nm { n, m } => {
            check_nm(n, m)?;
            m
        }
        Structure::Block { br, bc } => {
            if br == 0 || bc == 0 {
                return Err(Error::arg(format!(
                    "`block_shape` sizes must be >= 1, found ({br}, {bc})"
                )));
            }
            bc
        }
    };
    let bs = if block >= unit {
        block - block % unit
    } else {
        unit
    };
    // Sub-batches hold whole N:M groups.
    let sub = match structure {
        Structure::Nm { m, .. } => SUB.div_ceil(m) * m,
        _ => SUB,
    };
    parallel::install(|| {
        let prep = hessian::prepare(h, inp, damp, false)?;
        let total = out * inp;
        if total == 0 {
            return Ok(SparseGptResult {
                w: Vec::new(),
                keep: Vec::new(),
                codes: grid.map(|_| Vec::new()),
                damp_used: prep.damp_used,
            });
        }
        let n = inp;
        let mut wp = permuted(w, out, inp, &prep.perm);
        let diag: Vec<f64> = (0..n).map(|p| prep.u[p * n + p]).collect();
        let mut done = 0usize; // weights (or tiles) in earlier batches
        let start = |i1: usize, i2: usize, wt: &[f64]| Mask {
            keep: batch_mask(wt, out, i1, i2, &diag, sparsity, structure, &mut done),
            i1,
            bs: i2 - i1,
        };
        let ctx = Ctx {
            u: &prep.u,
            n,
            structure,
        };
        let codes = match grid {
            Some(g) => {
                let mut codes = vec![0i32; total];
                let colg = g.col_groups(&prep.perm);
                solve_with(
                    &mut wp,
                    out,
                    &prep,
                    bs,
                    sub,
                    start,
                    |mask, r, i1, row, err, crow| {
                        let (srow, zrow) = g.row(r);
                        ctx.batch(mask, r, i1, row, err, |p, v| {
                            let (s, z) = (srow[colg[p]], zrow.map_or(0, |z| z[colg[p]]));
                            let (q, deq) = match v {
                                Some(x) => quantize_one(x as f32, s, z, g.qmin, g.qmax),
                                None => (z, 0.0),
                            };
                            crow[p] = q;
                            deq
                        })
                    },
                    &mut codes,
                );
                Some(codes)
            }
            None => {
                let mut none = vec![(); total];
                solve_with(
                    &mut wp,
                    out,
                    &prep,
                    bs,
                    sub,
                    start,
                    |mask, r, i1, row, err, _: &mut [()]| {
                        ctx.batch(mask, r, i1, row, err, |_, v| v.map_or(0.0, |x| x as f32))
                    },
                    &mut none,
                );
                None
            }
        };
        // The working columns hold the outputs, NaN where pruned.
        let mut wout = vec![0f32; total];
        let mut keep = vec![false; total];
        wout.par_chunks_mut(n)
            .zip(keep.par_chunks_mut(n))
            .enumerate()
            .for_each(|(r, (wo, ko))| {
                for (p, (o, k)) in wo.iter_mut().zip(ko.iter_mut()).enumerate() {
                    let x = wp[p * out + r];
                    *k = !x.is_nan();
                    *o = if *k { x as f32 } else { 0.0 };
                }
            });
        Ok(SparseGptResult {
            w: wout,
            keep,
            codes,
            damp_used: prep.damp_used,
        })
    })
}

/// The keep mask of a batch (unstructured / block), `(out, bs)` row-major.
struct Mask {
    keep: Vec<bool>,
    i1: usize,
    bs: usize,
}

/// What a row of a batch needs.
struct Ctx<'a> {
    u: &'a [f64],
    n: usize,
    structure: Structure,
}

impl Ctx<'_> {
    /// One row of one batch: choose the N:M groups as they come, prune or keep (`emit(p,
    /// Some(w))` gives the kept value written out: `w` itself or its grid value; `emit(p,
    /// None)` for a pruned weight must give 0), spread the error. The output value replaces
    /// `row[p]` (NaN marks a pruned weight).
    fn batch(
        &self,
        mask: &Mask,
        r: usize,
        j1: usize,
        row: &mut [f64],
        err: &mut [f64],
        mut emit: impl FnMut(usize, Option<f64>) -> f32,
    ) {
        let n = self.n;
        let j2 = j1 + err.len();
        let mut group_keep = [true; 256];
        for p in j1..j2 {
            let t = p - j1;
            let d = self.u[p * n + p];
            let kept = match self.structure {
                Structure::Nm { n: nk, m } => {
                    let g = t % m;
                    if g == 0 {
                        let len = m.min(j2 - p);
                        nm_group(
                            &row[t..t + len],
                            self.u,
                            n,
                            p,
                            nk,
                            m,
                            &mut group_keep[..len],
                        );
                    }
                    group_keep[g]
                }
                _ => mask.keep[r * mask.bs + p - mask.i1],
            };
            let w = row[t];
            let v = emit(p, kept.then_some(w));
            let e = (w - v as f64) / d;
            err[t] = e;
            spread(&mut row[t + 1..], &self.u[p * n + p + 1..p * n + j2], e);
            row[t] = if kept { v as f64 } else { f64::NAN };
        }
    }
}

/// The keep flags of one N:M group starting at column `p` (`ws` = its current weights):
/// keep the [`nm_keep`] largest scores, ties: the lower index is pruned first.
fn nm_group(ws: &[f64], u: &[f64], n: usize, p: usize, nk: usize, m: usize, keep: &mut [bool]) {
    let r = ws.len();
    let prune = r - nm_keep(nk, m, r);
    let mut keys = [0f64; 256];
    for (t, &x) in ws.iter().enumerate() {
        keys[t] = score(x, u[(p + t) * n + p + t]);
    }
    for t in 0..r {
        let kt = keys[t];
        let rank = (0..r)
            .filter(|&v| keys[v] < kt || (keys[v] == kt && v < t))
            .count();
        keep[t] = rank >= prune;
    }
}

/// The keep mask (`out x (i2 - i1)`, row-major) of one batch (`wt` = the working weight,
/// column-major) for the unstructured and block patterns
/// (all kept for N:M, chosen per group later); `done` counts the weights (tiles) of earlier
/// batches and is advanced.
#[allow(clippy::too_many_arguments)]
fn batch_mask(
    wt: &[f64],
    out: usize,
    i1: usize,
    i2: usize,
    diag: &[f64],
    sparsity: f64,
    structure: Structure,
    done: &mut usize,
) -> Vec<bool> {
    let b = i2 - i1;
    // `count_to_prune` cannot fail here: `sparsity` was checked.
    let share = |done: usize, items: usize| {
        count_to_prune(sparsity, done + items).unwrap_or(0)
            - count_to_prune(sparsity, done).unwrap_or(0)
    };
    match structure {
        Structure::Nm { .. } => vec![true; out * b],
        Structure::Unstructured => {
            let items = out * b;
            let k = share(*done, items).min(items);
            *done += items;
            let mut keys = vec![0u64; items];
            keys.par_chunks_mut(b).enumerate().for_each(|(r, kr)| {
                for (t, kv) in kr.iter_mut().enumerate() {
                    *kv = score(wt[(i1 + t) * out + r], diag[i1 + t]).to_bits();
                }
            });
            select::keep_mask_u64(&keys, k)
        }
        Structure::Block { br, bc } => {
            let tc = b.div_ceil(bc);
            let tile_rows = out.div_ceil(br);
            let items = tile_rows * tc;
            let k = share(*done, items).min(items);
            *done += items;
            let mut sums = vec![0f64; items];
            sums.par_chunks_mut(tc).enumerate().for_each(|(tr, sr)| {
                for r in tr * br..((tr + 1) * br).min(out) {
                    for t in 0..b {
                        sr[t / bc] += score(wt[(i1 + t) * out + r], diag[i1 + t]);
                    }
                }
            });
            let keys: Vec<u64> = sums.iter().map(|s| s.to_bits()).collect();
            let tk = select::keep_mask_u64(&keys, k);
            let mut bk = vec![true; out * b];
            bk.par_chunks_mut(b).enumerate().for_each(|(r, kr)| {
                let tr = r / br;
                for (j, kv) in kr.iter_mut().enumerate() {
                    *kv = tk[tr * tc + j / bc];
                }
            });
            bk
        }
    }
}

/// The OBS pruning score `w^2 / d^2` of a weight with `d = U[p, p]`.
#[inline]
fn score(w: f64, d: f64) -> f64 {
    let s = w / d;
    s * s
}
