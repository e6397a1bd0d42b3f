//! Pruning masks (the core of `edgepack.prune`; no Python here).
//!
//! Every function returns a *keep* mask (`true` = the weight stays), like
//! `torch.nn.utils.prune`. Counts: a fraction `sparsity` of `n` candidates prunes exactly
//! `k = round_half_even(sparsity * n)` of them (the product in f64, as Python's
//! `round(amount * n)` in torch). Order: candidates are ranked by `(score, flat index)`, and the
//! `k` first are pruned, so among equal scores the lower index is pruned first.
//! A NaN score is an error naming the flat index; `+-Inf` is a valid (largest) score.

use crate::error::{Error, Result};
use crate::kernels::select::{self, AbsKeys, ScaledKeys};
use crate::parallel;

#[cfg(test)]
mod tests;

/// `round_half_even(sparsity * n)` after checking `0 <= sparsity < 1`.
pub fn count_to_prune(sparsity: f64, n: usize) -> Result<usize> {
    if !(sparsity.is_finite() && (0.0..1.0).contains(&sparsity)) {
        return Err(Error::arg(format!(
            "`sparsity` must be in [0, 1), found {sparsity}"
        )));
    }
    let k = (sparsity * n as f64).round_ties_even();
    Ok((k as usize).min(n))
}

fn first_nan(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| v.is_nan())
}

/// Unstructured magnitude pruning of `x` seen as `groups` equal slices (1 = the whole
/// tensor): in each slice, `round_half_even(sparsity * slice_len)` entries with the smallest
/// score are pruned. Score `|x|`, or `|x| * importance[i % p]` (Wanda) when `importance` (length
/// `p`, dividing the slice length or the tensor length, non-negative and finite) is given.
pub fn magnitude_mask(
    x: &[f32],
    groups: usize,
    importance: Option<&[f32]>,
    sparsity: f64,
) -> Result<Vec<bool>> {
    let n = x.len();
    if groups == 0 || !n.is_multiple_of(groups) {
        return Err(Error::arg(format!(
            "cannot split {n} elements into {groups} equal slices"
        )));
    }
    let len = n / groups;
    let k = count_to_prune(sparsity, len)?;
    // (every entry is written below; `false` = zeroed pages from the allocator, no memset)
    if let Some(imp) = importance {
        if imp.is_empty() || !n.is_multiple_of(imp.len()) {
            return Err(Error::arg(format!(
                "`importance` has length {}, which does not divide the {n} elements",
                imp.len()
            )));
        }
        if let Some(i) = imp.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "`importance`".into(),
                index: i,
                value: imp[i],
            });
        }
        if let Some(i) = imp.iter().position(|v| *v < 0.0) {
            return Err(Error::arg(format!(
                "`importance` must be non-negative, found {} at index {i}",
                imp[i]
            )));
        }
    }
    let mut keep = vec![false; n];
    let run = |g: usize, kc: &mut [bool]| -> Result<()> {
        let xs = &x[g * len..(g + 1) * len];
        match importance {
            None => select::keep_mask(&AbsKeys(xs), k, kc, "`x`", g * len),
            Some(imp) => select::keep_mask(
                &ScaledKeys {
                    x: xs,
                    importance: imp,
                    phase: (g * len) % imp.len(),
                },
                k,
                kc,
                "scores |x| * importance",
                g * len,
            ),
        }
    };
    if len == 0 {
        keep.fill(true);
        return Ok(keep);
    }
    if groups == 1 {
        run(0, &mut keep)?;
        return Ok(keep);
    }
    use rayon::prelude::*;
    parallel::install(|| {
        keep.par_chunks_mut(len)
            .enumerate()
            .try_for_each(|(g, kc)| run(g, kc))
    })?;
    Ok(keep)
}

/// How many entries a group of `r` keeps under `n:m`: `n` for a full group, and for a partial
/// last group (`r < m`) `ceil(n * r / m)` (never prunes a tail harder than a full group).
pub fn nm_keep(n: usize, m: usize, r: usize) -> usize {
    if r >= m {
        n
    } else {
        (n * r).div_ceil(m)
    }
}

/// Check `1 <= n <= m <= 256`.
pub fn check_nm(n: usize, m: usize) -> Result<()> {
    if m == 0 || m > 256 {
        return Err(Error::arg(format!("`m` must be in 1..=256, found {m}")));
    }
    if n == 0 || n > m {
        return Err(Error::arg(format!("`n` must be in 1..=m ({m}), found {n}")));
    }
    Ok(())
}

/// N:M pruning of `x` seen as `(outer, len, inner)` (C order) along the middle axis: in every
/// group of `m` consecutive entries along it, keep the `n` largest `|x|` (ties: the higher
/// index is kept, i.e. the lower pruned first); a partial last group keeps [`nm_keep`].
pub fn nm_mask(
    x: &[f32],
    outer: usize,
    len: usize,
    inner: usize,
    n: usize,
    m: usize,
) -> Result<Vec<bool>> {
    check_nm(n, m)?;
    let total = outer
        .checked_mul(len)
        .and_then(|v| v.checked_mul(inner))
        .ok_or_else(|| Error::limit("shape too large"))?;
    if total != x.len() {
        return Err(Error::arg(format!(
            "shape has {total} elements, `x` has {}",
            x.len()
        )));
    }
    if let Some(i) = first_nan(x) {
        return Err(Error::NonFinite {
            what: "`x`".into(),
            index: i,
            value: x[i],
        });
    }
    let mut keep = vec![false; total];
    if total == 0 {
        return Ok(keep);
    }
    let slab = len * inner;
    let do_slab = |o: usize, kc: &mut [bool]| {
        let xs = &x[o * slab..(o + 1) * slab];
        let mut keys = [0u32; 256];
        for i in 0..inner {
            let mut g0 = 0;
            while g0 < len {
                let r = (len - g0).min(m);
                let prune = r - nm_keep(n, m, r);
                for t in 0..r {
                    keys[t] = xs[(g0 + t) * inner + i].to_bits() & 0x7fff_ffff;
                }
                for t in 0..r {
                    // rank of t under (key, index)
                    let kt = keys[t];
                    let mut rank = 0;
                    for (u, &ku) in keys[..r].iter().enumerate() {
                        rank += (ku < kt || (ku == kt && u < t)) as usize;
                    }
                    kc[(g0 + t) * inner + i] = rank >= prune;
                }
                g0 += r;
            }
        }
    };
    if slab == 0 {
        return Ok(keep);
    }
    if fast_nm4(x, &mut keep, len, inner, n, m) {
        return Ok(keep);
    }
    use rayon::prelude::*;
    parallel::install(|| {
        keep.par_chunks_mut(slab)
            .enumerate()
            .for_each(|(o, kc)| do_slab(o, kc))
    });
    Ok(keep)
}

/// 2:4 along a contiguous last axis whose length is a multiple of 4: a branch-free rank
/// computation per group, split over the thread pool. Returns false when it does not apply.
fn fast_nm4(x: &[f32], keep: &mut [bool], len: usize, inner: usize, n: usize, m: usize) -> bool {
    if !(m == 4 && inner == 1 && len.is_multiple_of(4)) {
        return false;
    }
    let prune = 4 - n;
    let body = |xs: &[f32], kc: &mut [bool]| {
        for (g, o) in xs.chunks_exact(4).zip(kc.chunks_exact_mut(4)) {
            let k = [
                g[0].to_bits() & 0x7fff_ffff,
                g[1].to_bits() & 0x7fff_ffff,
                g[2].to_bits() & 0x7fff_ffff,
                g[3].to_bits() & 0x7fff_ffff,
            ];
            // rank(t) = #{u : (k[u], u) < (k[t], t)}
            let r0 = (k[1] < k[0]) as usize + (k[2] < k[0]) as usize + (k[3] < k[0]) as usize;
            let r1 = (k[0] <= k[1]) as usize + (k[2] < k[1]) as usize + (k[3] < k[1]) as usize;
            let r2 = (k[0] <= k[2]) as usize + (k[1] <= k[2]) as usize + (k[3] < k[2]) as usize;
            let r3 = (k[0] <= k[3]) as usize + (k[1] <= k[3]) as usize + (k[2] <= k[3]) as usize;
            o[0] = r0 >= prune;
            o[1] = r1 >= prune;
            o[2] = r2 >= prune;
            o[3] = r3 >= prune;
        }
    };
    const CH: usize = 1 << 16;
    if parallel::num_threads() <= 1 || x.len() < 2 * CH {
        body(x, keep);
    } else {
        use rayon::prelude::*;
        parallel::install(|| {
            keep.par_chunks_mut(CH)
                .zip(x.par_chunks(CH))
                .for_each(|(kc, xs)| body(xs, kc))
        });
    }
    true
}

/// The norm used to rank blocks and channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// Sum of `|x|`.
    L1,
    /// Euclidean norm (ranked by the sum of squares in f64, which orders the same).
    L2,
    /// Largest `|x|`.
    Inf,
}

fn accumulate(norm: Norm, acc: f64, v: f32) -> f64 {
    match norm {
        Norm::L1 => acc + v.abs() as f64,
        Norm::L2 => acc + (v as f64) * (v as f64),
        Norm::Inf => acc.max(v.abs() as f64),
    }
}

/// Whole-block pruning of `x` (C order, `shape`) in blocks of `block` (same rank; edge blocks
/// may be partial and are scored on the entries they hold). Blocks are ranked by the L2 norm
/// (sum of squares in f64, C order within the block) and `round_half_even(sparsity * blocks)`
/// are pruned, ties by block index (C order over the block grid).
pub fn block_mask(x: &[f32], shape: &[usize], block: &[usize], sparsity: f64) -> Result<Vec<bool>> {
    if block.len() != shape.len() {
        return Err(Error::arg(format!(
            "`block` has {} dimensions, `x` has {}",
            block.len(),
            shape.len()
        )));
    }
    if let Some(d) = block.iter().position(|&b| b == 0) {
        return Err(Error::arg(format!(
            "`block` sizes must be >= 1, found 0 in dimension {d}"
        )));
    }
    let total: usize = shape.iter().product();
    if total != x.len() {
        return Err(Error::arg(format!(
            "shape has {total} elements, `x` has {}",
            x.len()
        )));
    }
    let grid: Vec<usize> = shape
        .iter()
        .zip(block)
        .map(|(&s, &b)| s.div_ceil(b))
        .collect();
    let nblocks: usize = grid.iter().product();
    let k = count_to_prune(sparsity, nblocks)?;
    if let Some(i) = first_nan(x) {
        return Err(Error::NonFinite {
            what: "`x`".into(),
            index: i,
            value: x[i],
        });
    }
    let nd = shape.len();
    let mut sums = vec![0f64; nblocks];
    let mut keep = vec![true; total];
    if total == 0 {
        return Ok(keep);
    }
    // Walk every element in C order, accumulate into its block.
    let mut idx = vec![0usize; nd];
    let block_of = |idx: &[usize]| -> usize {
        let mut b = 0;
        for d in 0..nd {
            b = b * grid[d] + idx[d] / block[d];
        }
        b
    };
    // Sum in C order within each block: iterate blocks, then their elements.
    let mut bidx = vec![0usize; nd];
    for (bi, s) in sums.iter_mut().enumerate() {
        let mut r = bi;
        for d in (0..nd).rev() {
            bidx[d] = r % grid[d];
            r /= grid[d];
        }
        let lo: Vec<usize> = (0..nd).map(|d| bidx[d] * block[d]).collect();
        let hi: Vec<usize> = (0..nd).map(|d| (lo[d] + block[d]).min(shape[d])).collect();
        idx.copy_from_slice(&lo);
        let mut acc = 0f64;
        'walk: loop {
            let mut flat = 0;
            for d in 0..nd {
                flat = flat * shape[d] + idx[d];
            }
            acc = accumulate(Norm::L2, acc, x[flat]);
            let mut d = nd;
            loop {
                if d == 0 {
                    break 'walk;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < hi[d] {
                    break;
                }
                idx[d] = lo[d];
            }
        }
        *s = acc;
    }
    let keys: Vec<u64> = sums.iter().map(|s| s.to_bits()).collect();
    let keep_block = select::keep_mask_u64(&keys, k);
    // Expand block decisions to elements.
    idx.fill(0);
    for kv in keep.iter_mut() {
        *kv = keep_block[block_of(&idx)];
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(keep)
}

/// Structured pruning of whole channels: `x` is `(channels, len)` (the channel axis moved to
/// the front). Channels are ranked by `norm` (f64, in order) and
/// `round_half_even(sparsity * channels)` are pruned, ties by channel index. Returns one flag
/// per channel.
pub fn channel_mask(x: &[f32], channels: usize, norm: Norm, sparsity: f64) -> Result<Vec<bool>> {
    if channels == 0 {
        count_to_prune(sparsity, 0)?;
        return Ok(Vec::new());
    }
    if !x.len().is_multiple_of(channels) {
        return Err(Error::arg(format!(
            "cannot split {} elements into {channels} channels",
            x.len()
        )));
    }
    let k = count_to_prune(sparsity, channels)?;
    if let Some(i) = first_nan(x) {
        return Err(Error::NonFinite {
            what: "`x`".into(),
            index: i,
            value: x[i],
        });
    }
    let len = x.len() / channels;
    let keys: Vec<u64> = (0..channels)
        .map(|c| {
            x[c * len..(c + 1) * len]
                .iter()
                .fold(0f64, |a, &v| accumulate(norm, a, v))
                .to_bits()
        })
        .collect();
    Ok(select::keep_mask_u64(&keys, k))
}
