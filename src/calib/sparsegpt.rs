//! SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
//! Pruned in One-Shot"), optionally with joint quantization on a fixed grid.
//!
//! The GPTQ algorithm ([`crate::calib::gptq`]) in the natural column order (no activation
//! order: N:M groups and blocks are runs of consecutive input channels), with the same lazy
//! batches, sub-batches and matrix products as [`crate::calib::gptq::solve_with`], but its
//! own driver (`Solve::run`): inside a sub-batch the columns are processed in place on the
//! column-major working copy, for blocks of rows at a time (each weight sees exactly the
//! operations, in the same order, that GPTQ's row-by-row driver would apply). A weight that is
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

use crate::calib::gptq::{check_block, SUB};
use crate::calib::grid::{check_weight, quantize_one, Grid};
use crate::calib::hessian::{self, Precision, Prepared, Work};
use crate::error::{Error, Result};
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
    precision: Precision,
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
    let args = Args {
        w,
        out,
        inp,
        h,
        sparsity,
        structure,
        grid,
        damp,
        bs,
        sub,
    };
    match precision.for_hessian(h, inp) {
        Precision::F64 => parallel::install(|| solve::<f64>(&args)),
        Precision::F32 => parallel::install(|| solve::<f32>(&args)),
    }
}

/// The checked arguments of [`sparsegpt`] (`bs`: the batch length, `sub`: the sub-batch).
struct Args<'a, 'g> {
    w: &'a [f32],
    out: usize,
    inp: usize,
    h: &'a [f64],
    sparsity: f64,
    structure: Structure,
    grid: Option<&'a Grid<'g>>,
    damp: f64,
    bs: usize,
    sub: usize,
}

/// [`sparsegpt`] with the working data in `F`.
fn solve<F: Work>(a: &Args<'_, '_>) -> Result<SparseGptResult> {
    let Args {
        w,
        out,
        inp,
        h,
        sparsity,
        structure,
        grid,
        damp,
        bs,
        sub,
    } = *a;
    {
        let prep = hessian::prepare_as::<F>(h, inp, damp, false)?;
        let total = out * inp;
        if total == 0 {
            return Ok(SparseGptResult {
                w: Vec::new(),
                keep: Vec::new(),
                codes: grid.map(|_| Vec::new()),
                damp_used: prep.damp_used,
            });
        }
        // The processing order is the identity (no activation order).
        let mut wt = transposed::<F>(w, out, inp);
        let cfg = Solve {
            out,
            prep: &prep,
            block: bs,
            sub,
            sparsity,
            structure,
        };
        let codes = match grid {
            Some(g) => {
                let mut codes = vec![0i32; total];
                let colg = g.col_groups(&prep.perm);
                // The scale row of each weight row, as `Grid::row`.
                let rowoff: Vec<usize> = (0..out).map(|r| (r / g.row_block) * g.cg).collect();
                cfg.run(
                    &mut wt,
                    |r, p, v, c: &mut i32| {
                        let a = rowoff[r] + colg[p];
                        let (s, z) = (g.scale[a], g.zero_point.map_or(0, |z| z[a]));
                        let (q, deq) = match v {
                            Some(x) => quantize_one(x.to_f32(), s, z, g.qmin, g.qmax),
                            None => (z, 0.0),
                        };
                        *c = q;
                        deq
                    },
                    &mut codes,
                );
                Some(codes)
            }
            None => {
                let mut none = vec![(); total];
                cfg.run(
                    &mut wt,
                    |_, _, v: Option<F>, _: &mut ()| v.map_or(0.0, |x| x.to_f32()),
                    &mut none,
                );
                None
            }
        };
        // The working columns hold the outputs, NaN where pruned.
        let (wout, keep) = outputs(&wt, out, inp);
        Ok(SparseGptResult {
            w: wout,
            keep,
            codes,
            damp_used: prep.damp_used,
        })
    }
}

/// Side of the square tiles of the transpositions. Each tile goes through a small buffer:
/// the rows (columns) of a tile lie `inp` (`out`) values apart, which for power-of-two sizes
/// map to the same few cache sets, so a tile is read in runs and written in runs.
const TILE: usize = 32;

/// `W^T` as f64: the `(inp, out)` row-major buffer `Wt[p, r] = W[r, p]` (a column of `W` is a
/// contiguous run), transposed by tiles.
fn transposed<F: Work>(w: &[f32], out: usize, inp: usize) -> Vec<F> {
    let mut t = hessian::zeros::<F>(out * inp);
    t.par_chunks_mut(TILE * out)
        .enumerate()
        .for_each(|(ct, dst)| {
            let c0 = ct * TILE;
            let cols = dst.len() / out;
            let mut buf = [0f32; TILE * TILE];
            for r0 in (0..out).step_by(TILE) {
                let r1 = (r0 + TILE).min(out);
                for (r, b) in (r0..r1).zip(buf.chunks_mut(TILE)) {
                    b[..cols].copy_from_slice(&w[r * inp + c0..r * inp + c0 + cols]);
                }
                for k in 0..cols {
                    let d = &mut dst[k * out + r0..k * out + r1];
                    for (j, v) in d.iter_mut().enumerate() {
                        *v = F::of_f32(buf[j * TILE + k]);
                    }
                }
            }
        });
    t
}

/// The outputs from the working copy `wt` (`(inp, out)` row-major, NaN = pruned): the weight
/// `(out, inp)` row-major (0 where pruned) and the keep mask, transposed by tiles.
fn outputs<F: Work>(wt: &[F], out: usize, inp: usize) -> (Vec<f32>, Vec<bool>) {
    let mut wout = hessian::zeros::<f32>(out * inp);
    let mut keep = vec![false; out * inp];
    wout.par_chunks_mut(TILE * inp)
        .zip(keep.par_chunks_mut(TILE * inp))
        .enumerate()
        .for_each(|(rt, (wo, ko))| {
            let r0 = rt * TILE;
            let rows = wo.len() / inp;
            let mut buf = [F::of_f64(0.0); TILE * TILE];
            for p0 in (0..inp).step_by(TILE) {
                let p1 = (p0 + TILE).min(inp);
                for (p, b) in (p0..p1).zip(buf.chunks_mut(TILE)) {
                    b[..rows].copy_from_slice(&wt[p * out + r0..p * out + r0 + rows]);
                }
                for k in 0..rows {
                    let o = &mut wo[k * inp + p0..k * inp + p1];
                    let kk = &mut ko[k * inp + p0..k * inp + p1];
                    for (j, (o, kv)) in o.iter_mut().zip(kk.iter_mut()).enumerate() {
                        let x = buf[j * TILE + k];
                        *kv = !x.nan();
                        *o = if *kv { x.to_f32() } else { 0.0 };
                    }
                }
            }
        });
    (wout, keep)
}

/// The rows of one task (or block) in each column of a sub-batch.
type Columns<'a, F> = Vec<&'a mut [F]>;

/// Rows per block inside a sub-batch (a block's columns stay in L1).
const ROWS: usize = 128;

/// The solver's settings.
struct Solve<'a, F> {
    out: usize,
    prep: &'a Prepared<F>,
    /// Columns per lazy batch (a multiple of the structure's unit).
    block: usize,
    /// Columns per sub-batch (whole N:M groups).
    sub: usize,
    sparsity: f64,
    structure: Structure,
}

impl<F: Work> Solve<'_, F> {
    /// The lazy-batch driver on `wt` = `W` column-major (`(n, out)` row-major), as
    /// [`crate::calib::gptq::solve_with`] with the same matrix products: for each batch
    /// `[i1, i2)` the keep mask is chosen ([`Selector::batch_mask`]); each sub-batch `[j1, j2)`
    /// is processed in place, in blocks of [`ROWS`] rows in parallel ([`Solve::rows`]), then
    /// `W[:, j2:i2] -= E_sub @ U[j1:j2, j2:i2]`; at the end of the batch `W[:, i2:] -= E @
    /// U[i1:i2, i2:]`. `emit(r, p, v, out)` gives the value written for weight `(r, p)`: `v =
    /// Some(w)` when kept (`w` or its grid value), `None` when pruned (must give 0); `out` is
    /// its slot in `outputs` (`(out, n)` row-major).
    fn run<T: Send>(
        &self,
        wt: &mut [F],
        emit: impl Fn(usize, usize, Option<F>, &mut T) -> f32 + Sync,
        outputs: &mut [T],
    ) {
        let (out, n) = (self.out, self.prep.n);
        let u = &self.prep.u[..];
        let par = hessian::par();
        let block = self.block;
        let sub = self.sub.min(block);
        let diag: Vec<f64> = (0..n).map(|p| u[p * n + p].to_f64()).collect();
        // The batch's errors, column-major (out, bs).
        let mut e = vec![F::of_f64(0.0); out * block.min(n)];
        let mut sel = Selector::default();
        // Rows per task: a few tasks per thread, whole blocks of `ROWS`.
        let task_rows = out
            .div_ceil(4 * parallel::num_threads().max(1))
            .div_ceil(ROWS)
            .max(1)
            * ROWS;
        let mut done = 0usize; // weights (or tiles) in earlier batches
        let mut i1 = 0;
        while i1 < n {
            let i2 = (i1 + block).min(n);
            let keep = sel.batch_mask(
                wt,
                out,
                i1,
                i2,
                &diag,
                self.sparsity,
                self.structure,
                &mut done,
            );
            let mut j1 = i1;
            while j1 < i2 {
                let j2 = (j1 + sub).min(i2);
                let sbs = j2 - j1;
                {
                    let cols = &mut wt[j1 * out..j2 * out];
                    let ecols = &mut e[(j1 - i1) * out..(j2 - i1) * out];
                    // Each task: its rows of every column of the sub-batch.
                    let nb = out.div_ceil(task_rows);
                    let mut tasks: Vec<(Columns<F>, Columns<F>)> = (0..nb)
                        .map(|_| (Vec::with_capacity(sbs), Vec::with_capacity(sbs)))
                        .collect();
                    for col in cols.chunks_mut(out) {
                        for (task, c) in tasks.iter_mut().zip(col.chunks_mut(task_rows)) {
                            task.0.push(c);
                        }
                    }
                    for col in ecols.chunks_mut(out) {
                        for (task, c) in tasks.iter_mut().zip(col.chunks_mut(task_rows)) {
                            task.1.push(c);
                        }
                    }
                    tasks
                        .into_par_iter()
                        .zip(outputs.par_chunks_mut(task_rows * n))
                        .enumerate()
                        .for_each(|(b, ((mut ws, mut es), outs))| {
                            // By blocks of `ROWS` rows (their columns stay in L1).
                            let len = ws.first().map_or(0, |c| c.len());
                            for (a, outs) in (0..len).step_by(ROWS).zip(outs.chunks_mut(ROWS * n)) {
                                let z = (a + ROWS).min(len);
                                let mut wb: Vec<&mut [F]> =
                                    ws.iter_mut().map(|c| &mut c[a..z]).collect();
                                let mut eb: Vec<&mut [F]> =
                                    es.iter_mut().map(|c| &mut c[a..z]).collect();
                                let r0 = b * task_rows + a;
                                self.rows(r0, i1, j1, keep, &mut wb, &mut eb, outs, &emit);
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

    /// Rows `r0..r0 + len` of the sub-batch starting at column `j1` of the batch starting at
    /// `i1`: `ws[t]` / `es[t]` = their weights / error slots in column `j1 + t`, `outs` = their
    /// output rows. Column by column: choose the N:M groups as they come (else read `keep`,
    /// column-major `(out, bs)`), prune or keep, and spread the error over the later columns
    /// of the sub-batch (`W[:, p+1..j2] -= e * U[p, p+1..j2]`, one column at a time: for each
    /// weight the same operations in the same order as a row-by-row pass). The output value
    /// replaces the weight (NaN marks a pruned one).
    #[allow(clippy::too_many_arguments)]
    fn rows<T>(
        &self,
        r0: usize,
        i1: usize,
        j1: usize,
        keep: &[bool],
        ws: &mut [&mut [F]],
        es: &mut [&mut [F]],
        outs: &mut [T],
        emit: &impl Fn(usize, usize, Option<F>, &mut T) -> f32,
    ) {
        let (out, n, u) = (self.out, self.prep.n, &self.prep.u[..]);
        let sbs = ws.len();
        let len = ws.first().map_or(0, |c| c.len());
        let j2 = j1 + sbs;
        let nm = match self.structure {
            Structure::Nm { n: nk, m } => Some((nk, m)),
            _ => None,
        };
        // N:M: the keep flags of the current group, `(len, m)` row-major, and scratch.
        let gm = nm.map_or(0, |(_, m)| m);
        let mut gk = vec![true; len * gm];
        let mut vals = vec![F::of_f64(0.0); gm];
        let mut keys = vec![0f64; gm];
        for t in 0..sbs {
            let p = j1 + t;
            let d = u[p * n + p];
            let (head, tail) = ws.split_at_mut(t + 1);
            let wcol = &mut *head[t];
            let ecol = &mut *es[t];
            match nm {
                Some((nk, m)) => {
                    let g = t % m;
                    if g == 0 {
                        let glen = m.min(j2 - p);
                        for (row, gkr) in gk.chunks_mut(m).enumerate() {
                            vals[0] = wcol[row];
                            for (v, c) in vals[1..glen].iter_mut().zip(tail.iter()) {
                                *v = c[row];
                            }
                            nm_group(&vals[..glen], u, n, p, nk, m, &mut keys, &mut gkr[..glen]);
                        }
                    }
                    for (row, (x, ev)) in wcol.iter_mut().zip(ecol.iter_mut()).enumerate() {
                        let kept = gk[row * m + g];
                        let w = *x;
                        let v = emit(r0 + row, p, kept.then_some(w), &mut outs[row * n + p]);
                        *ev = (w - F::of_f32(v)) / d;
                        *x = if kept { F::of_f32(v) } else { F::NAN };
                    }
                }
                None => {
                    let kc = &keep[(p - i1) * out + r0..(p - i1) * out + r0 + len];
                    for (row, ((x, ev), &kept)) in
                        wcol.iter_mut().zip(ecol.iter_mut()).zip(kc).enumerate()
                    {
                        let w = *x;
                        let v = emit(r0 + row, p, kept.then_some(w), &mut outs[row * n + p]);
                        *ev = (w - F::of_f32(v)) / d;
                        *x = if kept { F::of_f32(v) } else { F::NAN };
                    }
                }
            }
            let urow = &u[p * n + p + 1..p * n + j2];
            let ecol = &*ecol;
            for (col, &c) in tail.iter_mut().zip(urow) {
                for (x, &ev) in col.iter_mut().zip(ecol) {
                    *x -= ev * c;
                }
            }
        }
    }
}

/// The keep flags of one N:M group starting at column `p` (`ws` = its current weights):
/// keep the [`nm_keep`] largest scores, ties: the lower index is pruned first (`keys`:
/// scratch of at least `ws.len()` values).
#[allow(clippy::too_many_arguments)]
fn nm_group<F: Work>(
    ws: &[F],
    u: &[F],
    n: usize,
    p: usize,
    nk: usize,
    m: usize,
    keys: &mut [f64],
    keep: &mut [bool],
) {
    let r = ws.len();
    let prune = r - nm_keep(nk, m, r);
    for (t, &x) in ws.iter().enumerate() {
        keys[t] = score(x.to_f64(), u[(p + t) * n + p + t].to_f64());
    }
    let keys = &keys[..r];
    for t in 0..r {
        let kt = keys[t];
        let rank = (0..r)
            .filter(|&v| keys[v] < kt || (keys[v] == kt && v < t))
            .count();
        keep[t] = rank >= prune;
    }
}

/// The buffers of the batch masks, reused from batch to batch.
#[derive(Default)]
struct Selector {
    keys: Vec<u64>,
    /// One histogram per chunk of keys.
    hists: Vec<Vec<u32>>,
    sums: Vec<f64>,
    tiles: Vec<bool>,
    keep: Vec<bool>,
}

impl Selector {
    /// The keep mask (`out x (i2 - i1)`, column-major) of one batch (`wt` = the working
    /// weight, column-major) for the unstructured and block patterns (empty for N:M, chosen
    /// per group later); `done` counts the weights (tiles) of earlier batches and is advanced.
    /// The pruned weights (tiles) are the `k` smallest under (score, row-major index in the
    /// batch).
    #[allow(clippy::too_many_arguments)]
    fn batch_mask<F: Work>(
        &mut self,
        wt: &[F],
        out: usize,
        i1: usize,
        i2: usize,
        diag: &[f64],
        sparsity: f64,
        structure: Structure,
        done: &mut usize,
    ) -> &[bool] {
        let b = i2 - i1;
        // `count_to_prune` cannot fail here: `sparsity` was checked.
        let share = |done: usize, items: usize| {
            count_to_prune(sparsity, done + items).unwrap_or(0)
                - count_to_prune(sparsity, done).unwrap_or(0)
        };
        let keep = &mut self.keep;
        match structure {
            Structure::Nm { .. } => keep.clear(),
            Structure::Unstructured => {
                let items = out * b;
                let k = share(*done, items).min(items);
                *done += items;
                let keys = &mut self.keys;
                keys.resize(items, 0);
                // The keys and their histogram, by chunks of whole columns.
                let chunk = b.div_ceil(parallel::num_threads().max(1)) * out;
                let chunks = items.div_ceil(chunk);
                self.hists.resize_with(chunks, || vec![0; BINS]);
                keys.par_chunks_mut(chunk)
                    .zip(self.hists.par_iter_mut())
                    .enumerate()
                    .for_each(|(ci, (kc, h))| {
                        h.fill(0);
                        for (tt, kcol) in kc.chunks_mut(out).enumerate() {
                            let t = ci * (chunk / out) + tt;
                            let (col, d) = (&wt[(i1 + t) * out..(i1 + t + 1) * out], diag[i1 + t]);
                            // Keys first (a loop that vectorizes), then their histogram.
                            for (kv, &x) in kcol.iter_mut().zip(col) {
                                *kv = score(x.to_f64(), d).to_bits();
                            }
                            for &key in kcol.iter() {
                                h[bin_of(key)] += 1;
                            }
                        }
                    });
                let hist = merge(&mut self.hists[..chunks]);
                // Position `t * out + r` is row-major index `r * b + t`.
                let cut = kth_smallest(keys, hist, chunk, k, |i| (i % out) * b + i / out);
                keep.resize(items, false);
                keep.par_chunks_mut(out)
                    .zip(keys.par_chunks(out))
                    .enumerate()
                    .for_each(|(t, (kc, kk))| {
                        for (r, (kv, &key)) in kc.iter_mut().zip(kk).enumerate() {
                            *kv = cut.is_none_or(|c| (key, r * b + t) > c);
                        }
                    });
            }
            Structure::Block { br, bc } => {
                let tc = b.div_ceil(bc);
                let tile_rows = out.div_ceil(br);
                let items = tile_rows * tc;
                let k = share(*done, items).min(items);
                *done += items;
                let sums = &mut self.sums;
                sums.clear();
                sums.resize(items, 0.0);
                sums.par_chunks_mut(tc).enumerate().for_each(|(tr, sr)| {
                    for r in tr * br..((tr + 1) * br).min(out) {
                        for t in 0..b {
                            sr[t / bc] += score(wt[(i1 + t) * out + r].to_f64(), diag[i1 + t]);
                        }
                    }
                });
                let keys = &mut self.keys;
                keys.clear();
                keys.extend(sums.iter().map(|s| s.to_bits()));
                let chunk = items.div_ceil(parallel::num_threads().max(1)).max(1);
                let chunks = items.div_ceil(chunk);
                self.hists.resize_with(chunks, || vec![0; BINS]);
                keys.par_chunks(chunk)
                    .zip(self.hists.par_iter_mut())
                    .for_each(|(kc, h)| {
                        h.fill(0);
                        for &key in kc {
                            h[bin_of(key)] += 1;
                        }
                    });
                let hist = merge(&mut self.hists[..chunks]);
                let cut = kth_smallest(keys, hist, chunk, k, |i| i);
                let tiles = &mut self.tiles;
                tiles.clear();
                tiles.extend(
                    keys.iter()
                        .enumerate()
                        .map(|(i, &key)| cut.is_none_or(|c| (key, i) > c)),
                );
                let tiles = &*tiles;
                keep.resize(out * b, false);
                keep.par_chunks_mut(out).enumerate().for_each(|(t, kc)| {
                    let j = t / bc;
                    for (r, kv) in kc.iter_mut().enumerate() {
                        *kv = tiles[(r / br) * tc + j];
                    }
                });
            }
        }
        &self.keep
    }
}

/// Bins of the selection histogram: the top 16 bits of a key.
const BINS: usize = 1 << 16;

/// The histogram bin of a key (monotone in the key).
#[inline]
fn bin_of(key: u64) -> usize {
    (key >> 48) as usize
}

/// The sum of the histograms (into the first; empty when there is none).
fn merge(hists: &mut [Vec<u32>]) -> &[u32] {
    match hists.split_first_mut() {
        Some((first, rest)) => {
            for h in rest.iter() {
                for (x, y) in first.iter_mut().zip(h) {
                    *x += y;
                }
            }
            first
        }
        None => &[],
    }
}

/// The `k`-th smallest (1-based) of the pairs `(keys[i], index(i))` (`index` one-to-one), or
/// `None` when `k == 0`: the `k` smallest pairs are those `<=` it. `hist` = the histogram of
/// [`bin_of`] over `keys` (counted in chunks of `chunk` keys, below 2^32 each); the `k`-th
/// smallest is selected among the keys of the bin that holds it.
fn kth_smallest(
    keys: &[u64],
    hist: &[u32],
    chunk: usize,
    k: usize,
    index: impl Fn(usize) -> usize + Sync,
) -> Option<(u64, usize)> {
    if k == 0 || keys.is_empty() {
        return None;
    }
    let k = k.min(keys.len());
    let mut below = 0usize;
    let mut bin = 0usize;
    for (i, &c) in hist.iter().enumerate() {
        if below + c as usize >= k {
            bin = i;
            break;
        }
        below += c as usize;
    }
    let need = k - below; // in 1..=hist[bin]
    let parts: Vec<Vec<(u64, usize)>> = keys
        .par_chunks(chunk.max(1))
        .enumerate()
        .map(|(ci, kc)| {
            let base = ci * chunk;
            kc.iter()
                .enumerate()
                .filter(|&(_, &key)| bin_of(key) == bin)
                .map(|(j, &key)| (key, index(base + j)))
                .collect()
        })
        .collect();
    let mut cand = parts.concat();
    if need == 0 || need > cand.len() {
        return None; // unreachable: the histogram counts every key
    }
    let (_, &mut kth, _) = cand.select_nth_unstable(need - 1);
    Some(kth)
}

/// The OBS pruning score `w^2 / d^2` of a weight with `d = U[p, p]`.
#[inline]
fn score(w: f64, d: f64) -> f64 {
    let s = w / d;
    s * s
}
