//! Linear-time selection of the `k` smallest scores, for pruning.
//!
//! Scores are non-negative floats compared through their bit patterns (for a non-negative
//! IEEE float, the order of the bits as unsigned integers is the order of the values; `+Inf`
//! is the largest; a NaN score is an error). The `k` smallest under the order
//! `(score, index)` are pruned: among equal scores the **lower flat index is pruned first**.
//! That is exactly
//!
//! ```text
//! pruned = np.argsort(scores, kind="stable")[:k]      # keep = ~isin(arange(n), pruned)
//! ```
//!
//! Algorithm (no sort): a radix select in three digits of the 31-bit key (11, 10, 10 bits).
//! Pass 1 builds a histogram of the top digit over all scores and finds the bin holding the
//! `k`-th smallest; pass 2 writes `keep = digit > bin` for every element and collects the
//! elements *in* that bin (index order); the two lower digits are resolved on those
//! candidates only. Two passes over the data, O(n + bins). Large inputs split both passes
//! over the thread pool (per-chunk histograms summed; per-chunk candidate lists concatenated
//! in order), which gives the same result as one thread.

use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa};
use crate::parallel;

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod scalar;
#[cfg(test)]
mod tests;

/// Computes the 31-bit keys (non-negative float bit patterns) of a block of elements.
pub trait KeySource: Sync {
    /// Number of elements.
    fn len(&self) -> usize;
    /// Whether there are no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Write the keys of elements `start .. start + dst.len()` into `dst`.
    /// A key above `0x7f80_0000` is a NaN score.
    fn fill(&self, start: usize, dst: &mut [u32]);
    /// The float value of element `i`'s score (for the error message).
    fn value(&self, i: usize) -> f32 {
        let mut k = [0u32];
        self.fill(i, &mut k);
        f32::from_bits(k[0])
    }
}

/// Scores `|x|`.
#[derive(Debug)]
pub struct AbsKeys<'a>(pub &'a [f32]);

impl KeySource for AbsKeys<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn fill(&self, start: usize, dst: &mut [u32]) {
        let n = dst.len();
        for (d, x) in dst.iter_mut().zip(&self.0[start..start + n]) {
            *d = x.to_bits() & 0x7fff_ffff;
        }
    }
}

/// Scores `|x| * importance[i % importance.len()]` (Wanda; `importance` is non-negative).
#[derive(Debug)]
pub struct ScaledKeys<'a> {
    /// The values.
    pub x: &'a [f32],
    /// Per-column importance, repeating every `importance.len()` elements.
    pub importance: &'a [f32],
    /// Offset of `x[0]` within the repeating pattern.
    pub phase: usize,
}

impl KeySource for ScaledKeys<'_> {
    fn len(&self) -> usize {
        self.x.len()
    }
    #[inline]
    fn fill(&self, start: usize, dst: &mut [u32]) {
        let p = self.importance.len();
        let n = dst.len();
        let mut j = (start + self.phase) % p;
        for (d, x) in dst.iter_mut().zip(&self.x[start..start + n]) {
            *d = (x.abs() * self.importance[j]).to_bits() & 0x7fff_ffff;
            j += 1;
            if j == p {
                j = 0;
            }
        }
    }
}

const BLOCK: usize = 2048;
const TOP_BITS: u32 = 20; // top digit = key >> 20 (11 bits, since bit 31 is clear)
const NAN_BIN: usize = 0x7f8; // bins >= this hold +Inf (exactly 0x7f80_0000) and NaNs

/// Elements per parallel chunk in the two full passes.
const PAR_CHUNK: usize = 1 << 18;

fn histogram_top(src: &dyn KeySource, a: usize, b: usize) -> Vec<u32> {
    // Four interleaved tables hide store-to-load conflicts on a hot bin.
    let mut h = vec![0u32; 4 * 2048];
    let mut keys = [0u32; BLOCK];
    let mut s = a;
    while s < b {
        let n = (b - s).min(BLOCK);
        src.fill(s, &mut keys[..n]);
        let mut q = keys[..n].chunks_exact(4);
        for c in &mut q {
            h[(c[0] >> TOP_BITS) as usize] += 1;
            h[2048 + (c[1] >> TOP_BITS) as usize] += 1;
            h[4096 + (c[2] >> TOP_BITS) as usize] += 1;
            h[6144 + (c[3] >> TOP_BITS) as usize] += 1;
        }
        for &k in q.remainder() {
            h[(k >> TOP_BITS) as usize] += 1;
        }
        s += n;
    }
    let (h0, rest) = h.split_at(2048);
    let mut out = h0.to_vec();
    for t in rest.chunks_exact(2048) {
        for (o, v) in out.iter_mut().zip(t) {
            *o += v;
        }
    }
    out
}

/// Pass 2 over `a..a + keep.len()`: `keep[i] = digit > bin`; collect the indices and keys
/// of the elements in `bin`, of which there are exactly `count` (from the pass-1 histogram).
fn split_pass(
    isa: Isa,
    src: &dyn KeySource,
    a: usize,
    keep: &mut [bool],
    bin: u32,
    count: usize,
) -> (Vec<u64>, Vec<u32>) {
    let mut ci = vec![0u64; count];
    let mut ck = vec![0u32; count];
    let mut c = 0usize;
    let mut keys = [0u32; BLOCK];
    let mut s = 0;
    while s < keep.len() {
        let n = (keep.len() - s).min(BLOCK);
        src.fill(a + s, &mut keys[..n]);
        let base = (a + s) as u64;
        let kb = &mut keep[s..s + n];
        c = match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is supported (checked by the caller); `ci`/`ck` have room for
            // every element of the bin (the histogram counted them from the same keys).
            Isa::Avx512 => unsafe {
                avx512::split_block(&keys[..n], base, bin, kb, &mut ci, &mut ck, c)
            },
            _ => scalar::split_block(&keys[..n], base, bin, kb, &mut ci, &mut ck, c),
        };
        s += n;
    }
    debug_assert_eq!(c, count);
    (ci, ck)
}

/// The bin holding the `k`-th smallest (1-based) and how many lie in lower bins.
fn find_bin(hist: &[u32], k: usize) -> (u32, usize) {
    let mut below = 0usize;
    for (b, &c) in hist.iter().enumerate() {
        if below + c as usize >= k {
            return (b as u32, below);
        }
        below += c as usize;
    }
    unreachable!("k <= total count")
}

/// Mark `keep` for the elements of `src`: `false` for the `k` smallest under `(score, index)`,
/// `true` for the rest. Errors on a NaN score (naming `what` and the flat index `base + i`).
pub fn keep_mask(
    src: &dyn KeySource,
    k: usize,
    keep: &mut [bool],
    what: &str,
    base: usize,
) -> Result<()> {
    keep_mask_with(isa::active(), src, k, keep, what, base)
}

/// [`keep_mask`] at a given level.
pub fn keep_mask_with(
    isa: Isa,
    src: &dyn KeySource,
    k: usize,
    keep: &mut [bool],
    what: &str,
    base: usize,
) -> Result<()> {
    if !isa.is_supported() {
        return Err(Error::arg(format!("this CPU does not support {isa}")));
    }
    let n = src.len();
    if keep.len() != n {
        return Err(Error::arg(format!(
            "keep buffer has {} entries, expected {n}",
            keep.len()
        )));
    }
    if k > n {
        return Err(Error::arg(format!("cannot prune {k} of {n} elements")));
    }
    if n == 0 {
        return Ok(());
    }
    let threads = parallel::num_threads();
    let parallel_ok = threads > 1 && n >= 2 * PAR_CHUNK;
    // Pass 1: histogram of the top digit.
    let chunk_hists: Vec<Vec<u32>> = if parallel_ok {
        use rayon::prelude::*;
        let nchunks = n.div_ceil(PAR_CHUNK);
        parallel::install(|| {
            (0..nchunks)
                .into_par_iter()
                .map(|c| histogram_top(src, c * PAR_CHUNK, ((c + 1) * PAR_CHUNK).min(n)))
                .collect()
        })
    } else {
        vec![histogram_top(src, 0, n)]
    };
    let mut hist = chunk_hists[0].clone();
    for h in &chunk_hists[1..] {
        for (x, y) in hist.iter_mut().zip(h) {
            *x += y;
        }
    }
    if hist[NAN_BIN..].iter().any(|&c| c > 0) {
        // Rare path: +Inf is fine, find the first NaN if any.
        let mut keys = [0u32; BLOCK];
        let mut s = 0;
        while s < n {
            let m = (n - s).min(BLOCK);
            src.fill(s, &mut keys[..m]);
            if let Some(j) = keys[..m].iter().position(|&k| k > 0x7f80_0000) {
                return Err(Error::NonFinite {
                    what: what.to_string(),
                    index: base + s + j,
                    value: src.value(s + j),
                });
            }
            s += m;
        }
    }
    if k == 0 {
        keep.fill(true);
        return Ok(());
    }
    let (bin, below) = find_bin(&hist, k);
    // Pass 2: decide everything outside the bin, collect the bin (in index order).
    let cand = if parallel_ok {
        use rayon::prelude::*;
        parallel::install(|| {
            keep.par_chunks_mut(PAR_CHUNK)
                .enumerate()
                .map(|(c, kc)| {
                    let cnt = chunk_hists[c][bin as usize] as usize;
                    split_pass(isa, src, c * PAR_CHUNK, kc, bin, cnt)
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .fold((Vec::new(), Vec::new()), |(mut i, mut k), (ci, ck)| {
            i.extend(ci);
            k.extend(ck);
            (i, k)
        })
    } else {
        split_pass(isa, src, 0, keep, bin, hist[bin as usize] as usize)
    };
    resolve(&cand.0, &cand.1, k - below, keep);
    Ok(())
}

/// Among the candidates (index order, all in one top bin), prune the `need` smallest under
/// `(key, index)` by resolving the two lower digits.
fn resolve(idx: &[u64], keys: &[u32], need: usize, keep: &mut [bool]) {
    let mut cur: Vec<(u64, u32)> = idx.iter().copied().zip(keys.iter().copied()).collect();
    let mut need = need;
    for (shift, bits) in [(10u32, 10u32), (0, 10)] {
        let mask = (1u32 << bits) - 1;
        let mut hist = vec![0u32; 1 << bits];
        for &(_, k) in &cur {
            hist[((k >> shift) & mask) as usize] += 1;
        }
        let (b, below) = find_bin(&hist, need);
        let mut next = Vec::with_capacity(hist[b as usize] as usize);
        for &(i, k) in &cur {
            let d = (k >> shift) & mask;
            if d == b {
                next.push((i, k));
            } else {
                keep[i as usize] = d > b;
            }
        }
        need -= below;
        cur = next;
    }
    // All of `cur` share one key: prune the first `need` by index.
    for (j, &(i, _)) in cur.iter().enumerate() {
        keep[i as usize] = j >= need;
    }
}

/// `keep[i] = false` for the `k` smallest of `keys` under `(key, index)`, `true` otherwise.
/// For the few scores of blocks and channels (selection by `select_nth_unstable`, linear on
/// average; the key includes the index, so the result is unique).
pub fn keep_mask_u64(keys: &[u64], k: usize) -> Vec<bool> {
    let n = keys.len();
    let mut keep = vec![true; n];
    if k == 0 {
        return keep;
    }
    let k = k.min(n);
    let mut pairs: Vec<(u64, usize)> = keys.iter().copied().zip(0..n).collect();
    if k < n {
        pairs.select_nth_unstable(k - 1);
    }
    for &(_, i) in &pairs[..k] {
        keep[i] = false;
    }
    keep
}
