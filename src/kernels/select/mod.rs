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
use crate::kernels::isa::{self, Avx512Only, Isa};
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

/// Result of a split pass over a range.
#[derive(Debug, Default)]
struct Split {
    /// Indices of the candidates (`lo <= key <= hi`), in index order.
    idx: Vec<u64>,
    /// Their keys.
    key: Vec<u32>,
    /// How many keys were below `lo`.
    below: usize,
    /// Whether a NaN key (> `0x7f80_0000`) was seen.
    nan: bool,
}

/// Split pass over `a..a + keep.len()`: `keep[i] = key > hi`; collect the candidates
/// `lo <= key <= hi`; count the keys below `lo`.
fn split_pass(
    isa: Isa,
    src: &dyn KeySource,
    a: usize,
    keep: &mut [bool],
    lo: u32,
    hi: u32,
    expect: f64,
) -> Split {
    let mut out = Split::default();
    // size the candidate lists once for the expected share (+ slack), grow if needed
    let first = ((keep.len() as f64 * expect * 1.25) as usize + BLOCK).min(keep.len() + BLOCK);
    out.idx = vec![0; first];
    out.key = vec![0; first];
    let mut c = 0usize;
    let mut keys = [0u32; BLOCK];
    let mut s = 0;
    while s < keep.len() {
        let n = (keep.len() - s).min(BLOCK);
        src.fill(a + s, &mut keys[..n]);
        if out.idx.len() < c + n {
            let want = (c + n).max(2 * out.idx.len());
            out.idx.resize(want, 0);
            out.key.resize(want, 0);
        }
        let base = (a + s) as u64;
        let kb = &mut keep[s..s + n];
        let st = match isa::kernels(isa).select {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is supported (checked by the caller); `idx`/`key` have room for
            // `n` more candidates after `c`.
            Avx512Only::Avx512 => unsafe {
                avx512::split_block(&keys[..n], base, lo, hi, kb, &mut out.idx, &mut out.key, c)
            },
            Avx512Only::Scalar => {
                scalar::split_block(&keys[..n], base, lo, hi, kb, &mut out.idx, &mut out.key, c)
            }
        };
        c = st.0;
        out.below += st.1;
        out.nan |= st.2;
        s += n;
    }
    out.idx.truncate(c);
    out.key.truncate(c);
    out
}

/// Run [`split_pass`] over the whole input, in parallel chunks when that pays.
fn split_all(
    isa: Isa,
    src: &dyn KeySource,
    keep: &mut [bool],
    (lo, hi): (u32, u32),
    expect: f64,
    par: bool,
) -> Split {
    if !par {
        return split_pass(isa, src, 0, keep, lo, hi, expect);
    }
    use rayon::prelude::*;
    let parts: Vec<Split> = parallel::install(|| {
        keep.par_chunks_mut(PAR_CHUNK)
            .enumerate()
            .map(|(c, kc)| split_pass(isa, src, c * PAR_CHUNK, kc, lo, hi, expect))
            .collect()
    });
    let mut all = Split::default();
    for p in parts {
        all.idx.extend(p.idx);
        all.key.extend(p.key);
        all.below += p.below;
        all.nan |= p.nan;
    }
    all
}

/// The first NaN key, as an error.
fn nan_error(src: &dyn KeySource, what: &str, base: usize) -> Result<()> {
    let n = src.len();
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
    Ok(())
}

/// Inputs at least this long first try the sampled single pass.
const SAMPLE_MIN: usize = 1 << 16;
const SAMPLE_BLOCKS: usize = 128;
const SAMPLE_BLOCK: usize = 512;

/// Key window `[lo, hi]` that holds the `k`-th smallest key with high probability, from a
/// sample of `SAMPLE_BLOCKS` evenly spread blocks, and the expected share of candidates;
/// `None` if the sample holds a NaN.
fn sample_window(src: &dyn KeySource, k: usize) -> Option<((u32, u32), f64)> {
    let n = src.len();
    let mut sample = vec![0u32; SAMPLE_BLOCKS * SAMPLE_BLOCK];
    for b in 0..SAMPLE_BLOCKS {
        let start = (b * (n - SAMPLE_BLOCK)) / (SAMPLE_BLOCKS - 1).max(1);
        src.fill(start, &mut sample[b * SAMPLE_BLOCK..(b + 1) * SAMPLE_BLOCK]);
    }
    if sample.iter().any(|&k| k > 0x7f80_0000) {
        return None;
    }
    let m = sample.len();
    let p = k as f64 / n as f64;
    // 4.5 standard deviations of the sample quantile, plus a little for block correlation
    // (a miss only costs the exact fallback)
    let delta = 4.5 * (p * (1.0 - p) / m as f64).sqrt() + 8.0 / m as f64;
    let r_lo = ((p - delta) * m as f64).floor();
    let r_hi = ((p + delta) * m as f64).ceil();
    let lo = if r_lo < 0.0 {
        0
    } else {
        *sample.select_nth_unstable(r_lo as usize).1
    };
    let hi = if r_hi >= (m - 1) as f64 {
        u32::MAX
    } else {
        *sample.select_nth_unstable(r_hi as usize).1
    };
    Some(((lo, hi), (r_hi.min(m as f64) - r_lo.max(0.0)) / m as f64))
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
    let par = threads > 1 && n >= 2 * PAR_CHUNK;
    // Sampled single pass: guess a narrow key window around the k-th smallest, decide
    // everything outside it in one pass, and check the guess (exact fallback otherwise).
    if n >= SAMPLE_MIN && k > 0 && k < n {
        if let Some((window, expect)) = sample_window(src, k) {
            let sp = split_all(isa, src, keep, window, expect, par);
            if sp.nan {
                return nan_error(src, what, base);
            }
            if sp.below <= k && k - sp.below <= sp.idx.len() {
                resolve(&sp.idx, &sp.key, k - sp.below, keep, &FULL_DIGITS);
                return Ok(());
            }
        }
    }
    // Exact two passes. Pass 1: histogram of the top digit.
    let chunk_hists: Vec<Vec<u32>> = if par {
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
        nan_error(src, what, base)?;
    }
    if k == 0 {
        keep.fill(true);
        return Ok(());
    }
    let (bin, below) = find_bin(&hist, k);
    // Pass 2: decide everything outside the bin, collect the bin (in index order).
    let lo = bin << TOP_BITS;
    let hi = lo | ((1 << TOP_BITS) - 1);
    let expect = hist[bin as usize] as f64 / n as f64;
    let sp = split_all(isa, src, keep, (lo, hi), expect, par);
    debug_assert_eq!(sp.below, below);
    resolve(&sp.idx, &sp.key, k - below, keep, &LOW_DIGITS);
    Ok(())
}

/// Digits (shift, bits) of a whole 31-bit key, and of the key below the top digit.
const FULL_DIGITS: [(u32, u32); 3] = [(20, 11), (10, 10), (0, 10)];
const LOW_DIGITS: [(u32, u32); 2] = [(10, 10), (0, 10)];

/// Among the candidates (index order; equal in the digits above `digits`), prune the `need`
/// smallest under `(key, index)` and keep the rest, resolving one radix digit at a time.
fn resolve(idx: &[u64], keys: &[u32], need: usize, keep: &mut [bool], digits: &[(u32, u32)]) {
    if need == 0 {
        for &i in idx {
            keep[i as usize] = true;
        }
        return;
    }
    let mut need = need;
    let mut ci: Vec<u64> = Vec::new();
    let mut ck: Vec<u32> = Vec::new();
    let mut first = true;
    for &(shift, bits) in digits {
        let (ii, kk): (&[u64], &[u32]) = if first { (idx, keys) } else { (&ci, &ck) };
        let mask = (1u32 << bits) - 1;
        let mut hist = vec![0u32; 1 << bits];
        for &k in kk {
            hist[((k >> shift) & mask) as usize] += 1;
        }
        let (b, below) = find_bin(&hist, need);
        let cnt = hist[b as usize] as usize;
        let mut ni = Vec::with_capacity(cnt);
        let mut nk = Vec::with_capacity(cnt);
        for (&i, &k) in ii.iter().zip(kk) {
            let d = (k >> shift) & mask;
            if d == b {
                ni.push(i);
                nk.push(k);
            } else {
                keep[i as usize] = d > b;
            }
        }
        need -= below;
        ci = ni;
        ck = nk;
        first = false;
    }
    // All remaining candidates share one key: prune the first `need` by index.
    for (j, &i) in ci.iter().enumerate() {
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
