//! int8 matrix multiplication: ONNX `MatMulInteger` / `QLinearMatMul` semantics and the fused
//! float epilogue of `QuantizedLinear`.
//!
//! `C = (A - a_zp) @ (B - b_zp)` with A (M, K) and B (K, N) int8 or uint8, computed in wrapping
//! int32 arithmetic, so it equals the int64 product whenever that fits in int32; [`k_limit`]
//! gives the largest K for which that is guaranteed for the operands' dtypes and zero points,
//! and every entry refuses a larger K.
//!
//! How the kernels get there (`vpdpbusd` multiplies uint8 by int8):
//! * A is read as unsigned `Au = A` (uint8) or `Au = A ^ 0x80 = A + 128` (int8), so
//!   `A - a_zp = Au - a'` with `a' = a_zp + (128 if int8 else 0)`;
//! * B is packed as signed `Bs` ([`pack`]), so `B - b_zp = Bs - b'` with
//!   `b' = b_zp - (128 if uint8 else 0)`;
//! * `C = Au@Bs - a'[m] colsum(Bs)[n] - b'[n] rowsum(Au)[m] + K a'[m] b'[n]`: the microkernels
//!   compute `Au@Bs`, the epilogue adds the rest (and a bias, and the float or requantizing
//!   output transform) per tile, while the tile is in L1.
//!
//! `scalar.rs` holds the twin that defines the semantics on plain B and the portable path;
//! `avx512.rs` (VNNI, zmm), `avxvnni.rs` (VNNI, ymm) and `avx2.rs` (exact int16 products with
//! `vpmaddwd`) the SIMD ones; `direct.rs` drives the plain-B kernels for small M.

pub mod linear;
pub mod pack;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avxvnni;
#[cfg(target_arch = "x86_64")]
mod direct;

#[cfg(test)]
mod tests;

pub use pack::PackedMatrix;
use pack::{SyncPtr, PANEL};

use crate::bail_arg;
use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa};

/// Element type of an int8 operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// uint8, 0..=255.
    U8,
    /// int8, -128..=127 (stored as its two's-complement byte).
    I8,
}

impl Dtype {
    /// numpy's name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
        }
    }
    /// Smallest and largest value.
    pub fn range(self) -> (i32, i32) {
        match self {
            Dtype::U8 => (0, 255),
            Dtype::I8 => (-128, 127),
        }
    }
    /// The value of byte `b`.
    #[inline(always)]
    pub fn value(self, b: u8) -> i32 {
        match self {
            Dtype::U8 => b as i32,
            Dtype::I8 => b as i8 as i32,
        }
    }
}

/// The left operand: `rows` x `k` bytes, row-major and contiguous.
#[derive(Clone, Copy, Debug)]
pub struct Lhs<'a> {
    /// The bytes (int8 as two's complement).
    pub data: &'a [u8],
    /// M.
    pub rows: usize,
    /// K.
    pub k: usize,
    /// Element type.
    pub dtype: Dtype,
}

/// Check a zero point (empty = none, one value, or `len` values) against `dtype`.
pub(crate) fn check_zero_points(
    name: &str,
    zp: &[i64],
    len: usize,
    what: &str,
    dtype: Dtype,
) -> Result<Vec<i32>> {
    if zp.len() > 1 && zp.len() != len {
        return Err(Error::arg(format!(
            "`{name}` has {} values, expected a scalar or {len} (one per {what})",
            zp.len()
        )));
    }
    let (lo, hi) = dtype.range();
    if let Some((i, &z)) = zp
        .iter()
        .enumerate()
        .find(|(_, &z)| z < lo as i64 || z > hi as i64)
    {
        return Err(Error::arg(format!(
            "`{name}` value {z} at index {i} is out of range for {} ({lo}..={hi})",
            dtype.name()
        )));
    }
    Ok(zp.iter().map(|&z| z as i32).collect())
}

/// A row-major (K, N) B of `dtype` bytes: its length, and its zero point (empty, one value or
/// N values) checked against `dtype`; returns the zero point.
pub(crate) fn check_b(
    b: &[u8],
    k: usize,
    n: usize,
    dtype: Dtype,
    zero_point: &[i64],
) -> Result<Vec<i32>> {
    let total = k
        .checked_mul(n)
        .ok_or_else(|| Error::limit(format!("`b` shape ({k}, {n}) overflows")))?;
    if b.len() != total {
        return Err(Error::arg(format!(
            "`b` holds {} elements, expected K*N = {k}*{n} = {total}",
            b.len()
        )));
    }
    check_zero_points("b_zero_point", zero_point, n, "N (columns of `b`)", dtype)
}

/// The largest K for which `(A - a_zp) @ (B - b_zp)` is guaranteed to fit in int32 for any
/// operands of these dtypes with these zero points (empty = 0).
pub fn k_limit(a_dtype: Dtype, a_zp: &[i32], b_dtype: Dtype, b_zp: &[i32]) -> usize {
    let span = |d: Dtype, zp: &[i32]| -> (i64, i64) {
        let (lo, hi) = d.range();
        let zmin = zp.iter().copied().min().unwrap_or(0);
        let zmax = zp.iter().copied().max().unwrap_or(0);
        ((lo - zmax) as i64, (hi - zmin) as i64)
    };
    let (a0, a1) = span(a_dtype, a_zp);
    let (b0, b1) = span(b_dtype, b_zp);
    let corners = [a0 * b0, a0 * b1, a1 * b0, a1 * b1];
    let max_pos = corners.iter().copied().max().unwrap_or(0).max(0);
    let max_neg = -corners.iter().copied().min().unwrap_or(0).min(0);
    let mut lim = u64::MAX;
    if max_pos > 0 {
        lim = lim.min((i32::MAX as i64 / max_pos) as u64);
    }
    if max_neg > 0 {
        lim = lim.min(((1i64 << 31) / max_neg) as u64);
    }
    usize::try_from(lim).unwrap_or(usize::MAX)
}

fn check_k(a: &Lhs, a_zp: &[i32], b: &PackedMatrix) -> Result<()> {
    check_k_parts(a, a_zp, b.k(), b.dtype(), b.zero_point())
}

/// A against a B of `k` rows: K agrees, A's length, and the exact-int32 K limit.
fn check_k_parts(a: &Lhs, a_zp: &[i32], k: usize, b_dtype: Dtype, b_zp: &[i32]) -> Result<()> {
    if a.k != k {
        return Err(Error::arg(format!(
            "`a` has K={} columns but `b` has K={k} rows",
            a.k
        )));
    }
    let need = a
        .rows
        .checked_mul(a.k)
        .ok_or_else(|| Error::limit(format!("`a` shape ({}, {}) overflows", a.rows, a.k)))?;
    if a.data.len() != need {
        return Err(Error::arg(format!(
            "`a` holds {} elements, expected M*K = {}*{} = {need}",
            a.data.len(),
            a.rows,
            a.k
        )));
    }
    let lim = k_limit(a.dtype, a_zp, b_dtype, b_zp);
    if a.k > lim {
        return Err(Error::limit(format!(
            "K={} exceeds {lim}, the largest K for which a {} x {} product with these zero points \
             is guaranteed to fit in int32 (exact results only); split K and sum in int64",
            a.k,
            a.dtype.name(),
            b_dtype.name()
        )));
    }
    Ok(())
}

pub(crate) fn check_scale(name: &str, s: &[f32]) -> Result<()> {
    if let Some((i, v)) = s
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(Error::arg(format!(
            "`{name}` must be finite and > 0, found {v} at index {i}"
        )));
    }
    Ok(())
}

/// How the epilogue writes a finished int32 tile.
#[derive(Clone, Copy)]
pub(crate) enum Out<'a> {
    /// `out[m, n] = c` (int32).
    I32(SyncPtr<i32>),
    /// `out[m, n] = float32(c) * (row_scale[m] * col_scale[n]) (+ bias[n])`.
    F32 {
        ptr: SyncPtr<f32>,
        row_scale: &'a [f32],
        col_scale: &'a [f32],
        bias: Option<&'a [f32]>,
    },
    /// `out[m, n] = clamp(rint(float32(c) * mult[n]), lo - zp, hi - zp) + zp` (bytes).
    Q8 {
        ptr: SyncPtr<u8>,
        mult: &'a [f32],
        zp: i32,
        lo: i32,
        hi: i32,
    },
}

/// One multiplication: operands, precomputed correction terms and the output.
pub(crate) struct Job<'a> {
    /// A rows (bytes before the XOR when `flip`), stride `lda >= kp`, readable for `m * lda`.
    pub a: &'a [u8],
    pub lda: usize,
    pub m: usize,
    /// A is int8: the kernels XOR each byte with 0x80 (`Au = A + 128`).
    pub flip: bool,
    pub b: &'a PackedMatrix,
    /// Added to every column: `bias_i32[n] - a' colsum[n]` (scalar a') or `bias_i32[n]`.
    pub col_add: &'a [i32],
    /// Per-row `a'[m]` when the A zero point is per row (then `- a'[m] colsum[n]`).
    pub row_a: Option<&'a [i32]>,
    /// `K a'[m] - rowsum(Au)[m]`, multiplied by `b'[n]` when B has one.
    pub row_r: &'a [i32],
    pub out: Out<'a>,
}

/// Finish rows `m0..m0+rows` of panel `p` from the raw tile (row stride [`PANEL`]): add the
/// correction terms, transform and store. Plain Rust so each ISA shell vectorizes it.
#[inline(always)]
pub(crate) fn finish_rows(job: &Job, m0: usize, rows: usize, p: usize, tile: &mut [i32]) {
    let n = job.b.n();
    let n0 = p * PANEL;
    let nc = (n - n0).min(PANEL);
    let cs = &job.b.col_sums()[n0..n0 + nc];
    let ca = &job.col_add[n0..n0 + nc];
    let bp = job.b.b_prime().map(|v| &v[n0..n0 + nc]);
    for r in 0..rows {
        let m = m0 + r;
        let t = &mut tile[r * PANEL..r * PANEL + nc];
        // `col_add` is added in the output loops below (one pass; no memcpy for int32).
        if let Some(ra) = job.row_a {
            let ra = ra[m];
            for (x, &c) in t.iter_mut().zip(cs) {
                *x = x.wrapping_sub(ra.wrapping_mul(c));
            }
        }
        if let Some(bp) = bp {
            let rr = job.row_r[m];
            for (x, &c) in t.iter_mut().zip(bp) {
                *x = x.wrapping_add(c.wrapping_mul(rr));
            }
        }
        let at = m * n + n0;
        match job.out {
            Out::I32(ptr) => {
                // SAFETY: row m, columns n0..n0+nc of the M x N output; tiles are disjoint.
                let o = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(at), nc) };
                for ((o, &x), &c) in o.iter_mut().zip(t.iter()).zip(ca) {
                    *o = x.wrapping_add(c);
                }
            }
            Out::F32 {
                ptr,
                row_scale,
                col_scale,
                bias,
            } => {
                // SAFETY: as above.
                let o = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(at), nc) };
                let rs = row_scale[if row_scale.len() == 1 { 0 } else { m }];
                let cs = &col_scale[n0..n0 + nc];
                match bias {
                    Some(b) => {
                        for ((((o, &x), &c), &s), &b) in o
                            .iter_mut()
                            .zip(t.iter())
                            .zip(ca)
                            .zip(cs)
                            .zip(&b[n0..n0 + nc])
                        {
                            *o = x.wrapping_add(c) as f32 * (rs * s) + b;
                        }
                    }
                    None => {
                        for (((o, &x), &c), &s) in o.iter_mut().zip(t.iter()).zip(ca).zip(cs) {
                            *o = x.wrapping_add(c) as f32 * (rs * s);
                        }
                    }
                }
            }
            Out::Q8 {
                ptr,
                mult,
                zp,
                lo,
                hi,
            } => {
                // SAFETY: as above.
                let o = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(at), nc) };
                let (flo, fhi) = ((lo - zp) as f32, (hi - zp) as f32);
                for (((o, &x), &c), &s) in
                    o.iter_mut().zip(t.iter()).zip(ca).zip(&mult[n0..n0 + nc])
                {
                    let q = (x.wrapping_add(c) as f32 * s)
                        .max(flo)
                        .min(fhi)
                        .round_ties_even();
                    // SAFETY: q is an integer within lo-zp..=hi-zp (max/min send NaN to a
                    // bound), representable in i32.
                    *o = (unsafe { q.to_int_unchecked::<i32>() } + zp) as u8;
                }
            }
        }
    }
}

/// The row tiles of rows `m0..m1` of an M-row matrix, as `f(first_row, height)`: one tile up to
/// 6 rows, two or three of near-equal height up to 16, else 6-row tiles from row 0 (see
/// [`tile_of_row`]; `m0` must start one).
#[inline(always)]
pub(crate) fn row_tiles(m: usize, m0: usize, m1: usize, mut f: impl FnMut(usize, usize)) {
    let mut r = m0;
    while r < m1 {
        let (r0, h) = tile_of_row(m, r);
        debug_assert_eq!(r0, r);
        f(r, h);
        r += h;
    }
}

/// Which block kernel runs (the one dispatch of this op).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512,
    /// The AVX-VNNI kernel with the AVX-512VL encoding (tests on hosts without AVX-VNNI).
    #[cfg(test)]
    AvxVnniViaVl,
}

impl Kernel {
    pub(crate) fn for_isa(isa: Isa) -> Kernel {
        if isa.includes(Isa::Avx512) {
            Kernel::Avx512
        } else if isa.includes(Isa::AvxVnni) {
            Kernel::AvxVnni
        } else if isa.includes(Isa::Avx2) {
            Kernel::Avx2
        } else {
            Kernel::Scalar
        }
    }
}

fn run_block(kernel: Kernel, job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx512 level implies avx512f/bw/vl/vnni (isa.rs); callers pass only
        // levels from `isa::detected()` or `isa::active()`.
        Kernel::Avx512 => unsafe { avx512::gemm_block(job, m0, m1, p0, p1) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AvxVnni level implies avx2 + avxvnni.
        Kernel::AvxVnni => unsafe { avxvnni::gemm_block(job, m0, m1, p0, p1) },
        #[cfg(all(test, target_arch = "x86_64"))]
        // SAFETY: tests pick this only when the Avx512 level is detected.
        Kernel::AvxVnniViaVl => unsafe { avxvnni::gemm_block_vl(job, m0, m1, p0, p1) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx2 level implies avx2 + bmi2.
        Kernel::Avx2 => unsafe { avx2::gemm_block(job, m0, m1, p0, p1) },
        _ => scalar::gemm_block(job, m0, m1, p0, p1),
    }
}

/// How [`run`] splits the output: row blocks of `mc` rows (the last may be shorter) times
/// panel blocks of `pc` panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Partition {
    pub mc: usize,
    pub mblocks: usize,
    pub pc: usize,
    pub pblocks: usize,
}

/// Largest time a thread spends on `p`'s items (in row x panel units) when `threads` threads
/// take them longest first, about what taking them in turn from a shared counter does for
/// items of near-equal size.
fn makespan(m: usize, panels: usize, p: &Partition, threads: usize) -> usize {
    let mut items: Vec<usize> = (0..p.mblocks)
        .flat_map(|mb| {
            let rows = (m - mb * p.mc).min(p.mc);
            (0..p.pblocks).map(move |pb| rows * (panels - pb * p.pc).min(p.pc))
        })
        .collect();
    items.sort_unstable_by(|x, y| y.cmp(x));
    let mut load = vec![0usize; threads.max(1)];
    for it in items {
        let t = (0..load.len()).min_by_key(|&t| load[t]).unwrap_or(0);
        load[t] += it;
    }
    load.into_iter().max().unwrap_or(0)
}

/// Largest A (bytes, M x K padded) multiplied as one row block (half of this machine's L2).
const ONE_BLOCK_A: usize = 512 * 1024;

/// Blocks for an M x (64 * panels) output with K padded to `kp`, on `threads` threads.
///
/// Rows: blocks whose A part (~256 KiB) stays in L2 while panels of B stream past it, all of
/// near-equal height (a multiple of 6, the row tile, so that tiles never straddle blocks);
/// an A of up to [`ONE_BLOCK_A`] is one block, so that B streams past it once (64 x 4096 x
/// 4096 was two blocks of 36 and 28 rows, each reading all 16 MB of B: 5.70 -> 5.18 ms).
/// With several threads the panels are split too, into the number of blocks (at least 4 per
/// thread) whose largest per-thread share is smallest: 512 x 1024 x 1024 on 2 threads was 9
/// blocks of unequal size, 3 vs 2 chunks per thread, 1.54x one thread (now 12 equal blocks).
pub(crate) fn partition(m: usize, panels: usize, kp: usize, threads: usize) -> Partition {
    let (mc, mblocks) = if m <= 16 {
        (m.max(1), 1)
    } else {
        let whole = m.div_ceil(6) * 6;
        let mc_max = if m.saturating_mul(kp) <= ONE_BLOCK_A {
            whole
        } else {
            ((256 * 1024 / kp.max(64)) / 6 * 6).clamp(6, whole)
        };
        let mblocks = m.div_ceil(mc_max);
        let mc = m.div_ceil(mblocks).div_ceil(6) * 6;
        (mc, m.div_ceil(mc))
    };
    let one = Partition {
        mc,
        mblocks,
        pc: panels.max(1),
        pblocks: 1,
    };
    if threads <= 1 || panels <= 1 {
        return one;
    }
    let lo = (4 * threads).div_ceil(mblocks).clamp(1, panels);
    let mut best = one;
    let mut best_span = usize::MAX;
    for want in lo..=(2 * lo).min(panels) {
        let pc = panels.div_ceil(want);
        let cand = Partition {
            mc,
            mblocks,
            pc,
            pblocks: panels.div_ceil(pc),
        };
        let span = makespan(m, panels, &cand, threads);
        if span < best_span {
            (best, best_span) = (cand, span);
        }
    }
    best
}

/// Run `job` on the kernel threads, the caller included: blocks of rows x panels
/// ([`partition`]), disjoint outputs, taken one at a time from a shared counter so that the
/// threads even out ([`crate::parallel::for_each_index`]).
fn run(kernel: Kernel, job: &Job) {
    let m = job.m;
    let panels = job.b.np() / PANEL;
    if m == 0 || panels == 0 {
        return;
    }
    let work = (m as u64) * (job.b.kp() as u64) * (panels as u64) * 64;
    let threads = if work < (1 << 22) {
        1
    } else {
        crate::parallel::num_threads()
    };
    let part = partition(m, panels, job.b.kp(), threads);
    let block = |it: usize| {
        let (mb, pb) = (it / part.pblocks, it % part.pblocks);
        let (m0, p0) = (mb * part.mc, pb * part.pc);
        run_block(
            kernel,
            job,
            m0,
            (m0 + part.mc).min(m),
            p0,
            (p0 + part.pc).min(panels),
        );
    };
    let items = part.mblocks * part.pblocks;
    if threads <= 1 || items <= 1 {
        (0..items).for_each(block);
    } else {
        crate::parallel::for_each_index(items, block);
    }
}

/// The row tile holding row `r` of an M-row matrix: (first row, height). The same tiling
/// [`row_tiles`] produces for the whole matrix, and for every block of [`run`] (blocks start
/// at multiples of 6 when M > 16).
#[inline(always)]
pub(crate) fn tile_of_row(m: usize, r: usize) -> (usize, usize) {
    if m <= 6 {
        (0, m)
    } else if m <= 16 {
        // 2 or 3 tiles of near-equal height (at most 6: a tile reads whole k-groups of its
        // panel, 256 contiguous bytes; 8-row tiles took the panel in halves and M = 8 on a
        // packed 4096 x 4096 B ran at 1.5-2.1 ms instead of 0.9-1.0).
        let t = m.div_ceil(6);
        let (base, extra) = (m / t, m % t);
        let big = extra * (base + 1);
        if r < big {
            (r / (base + 1) * (base + 1), base + 1)
        } else {
            (big + (r - big) / base * base, base)
        }
    } else {
        let r0 = r / 6 * 6;
        (r0, (m - r0).min(6))
    }
}

/// Up to this many rows, int8 A is converted to `Au = A ^ 0x80` once (a copy of M*K bytes)
/// instead of in the kernels: small-M kernels issue one XOR per broadcast for few `vpdpbusd`.
const PRE_FLIP_ROWS: usize = 16;

/// Whether [`kernel_a`] copies A (so the scratch it needs is `rows * kp` bytes).
fn a_needs_copy(a: &Lhs, kp: usize) -> bool {
    kp > 0 && (a.k != kp || (a.dtype == Dtype::I8 && a.rows <= PRE_FLIP_ROWS))
}

/// A as the kernels read it: (bytes, row stride, XOR 0x80 in the kernel). In place when K is
/// a multiple of 4 and no pre-flip applies; else copied into `buf` with rows padded to `kp`
/// (padding multiplies packed B's zero rows, so its value does not matter; it is written as
/// the value that becomes 0 after the XOR).
fn kernel_a<'a>(a: &Lhs<'a>, kp: usize, buf: &'a mut [u8]) -> (&'a [u8], usize, bool) {
    let signed = a.dtype == Dtype::I8;
    if !a_needs_copy(a, kp) {
        return (a.data, kp, signed);
    }
    let pre_flip = signed && a.rows <= PRE_FLIP_ROWS;
    let x = if pre_flip { 0x80u8 } else { 0 };
    let fill = if signed && !pre_flip { 0x80u8 } else { 0 };
    for (dst, src) in buf
        .chunks_exact_mut(kp)
        .zip(a.data.chunks_exact(a.k.max(1)))
    {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v ^ x;
        }
        dst[a.k..].fill(fill);
    }
    (&buf[..a.rows * kp], kp, signed && !pre_flip)
}

/// `rowsum(Au)` per row (wrapping).
fn row_sums(a: &Lhs) -> Vec<u32> {
    let flip = if a.dtype == Dtype::I8 { 0x80u8 } else { 0 };
    a.data
        .chunks_exact(a.k.max(1))
        .take(a.rows)
        .map(|row| row.iter().map(|&x| (x ^ flip) as u32).sum::<u32>())
        .chain(std::iter::repeat(0))
        .take(a.rows)
        .collect()
}

thread_local! {
    /// Per-thread scratch (padded A, quantized activations), reused across calls: fresh pages
    /// cost a page fault each, which at small shapes costs more than the multiplication.
    static SCRATCH: std::cell::RefCell<[Vec<u8>; 4]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()]) };
}

/// Largest scratch buffer kept between calls.
const SCRATCH_KEEP: usize = 16 << 20;

/// Run `f` with this thread's scratch buffer `slot` (0: padded A, 1: quantized activations,
/// 2: a block's partial sums, 3: a block of A flipped to uint8) of
/// at least `len` bytes; contents are arbitrary.
pub(crate) fn with_scratch<R>(slot: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let mut v = SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut()[slot]));
    if v.len() < len {
        v = vec![0u8; len];
    }
    let r = f(&mut v[..len]);
    if v.len() <= SCRATCH_KEEP {
        SCRATCH.with(|s| s.borrow_mut()[slot] = v);
    }
    r
}

struct Prepared {
    col_add: Vec<i32>,
    row_a: Option<Vec<i32>>,
    row_r: Vec<i32>,
}

fn prepare(
    a: &Lhs,
    a_zp: &[i32],
    b: &PackedMatrix,
    bias_i32: Option<&[i32]>,
    rowsums: &[u32],
) -> Prepared {
    let offset = if a.dtype == Dtype::I8 { 128 } else { 0 };
    let per_row = a_zp.len() > 1;
    let a0 = if per_row {
        0
    } else {
        a_zp.first().copied().unwrap_or(0) + offset
    };
    let np = b.np();
    let mut col_add = vec![0i32; np];
    for (n, v) in col_add.iter_mut().enumerate() {
        let bias = bias_i32.map_or(0, |bb| if n < bb.len() { bb[n] } else { 0 });
        *v = bias.wrapping_sub(a0.wrapping_mul(b.col_sums()[n]));
    }
    let a_row = |m: usize| -> i32 {
        if per_row {
            a_zp[m] + offset
        } else {
            a0
        }
    };
    let row_a = per_row.then(|| (0..a.rows).map(a_row).collect());
    let row_r = if b.b_prime().is_some() {
        let k = a.k as i32;
        (0..a.rows)
            .map(|m| k.wrapping_mul(a_row(m)).wrapping_sub(rowsums[m] as i32))
            .collect()
    } else {
        Vec::new()
    };
    Prepared {
        col_add,
        row_a,
        row_r,
    }
}

fn execute(
    kernel: Kernel,
    a: &Lhs,
    a_zp: &[i32],
    b: &PackedMatrix,
    bias_i32: Option<&[i32]>,
    out: Out,
) {
    let kp = b.kp();
    let scratch = if a_needs_copy(a, kp) { a.rows * kp } else { 0 };
    with_scratch(0, scratch, |buf| {
        let rowsums = if b.b_prime().is_some() {
            row_sums(a)
        } else {
            Vec::new()
        };
        let p = prepare(a, a_zp, b, bias_i32, &rowsums);
        let (data, lda, flip) = kernel_a(a, kp, buf);
        let job = Job {
            a: data,
            lda,
            m: a.rows,
            flip,
            b,
            col_add: &p.col_add,
            row_a: p.row_a.as_deref(),
            row_r: &p.row_r,
            out,
        };
        run(kernel, &job);
    });
}

fn validate(a: &Lhs, a_zp: &[i64], b: &PackedMatrix) -> Result<Vec<i32>> {
    let zp = check_zero_points("a_zero_point", a_zp, a.rows, "row of `a`", a.dtype)?;
    check_k(a, &zp, b)?;
    Ok(zp)
}

fn alloc_len(m: usize, n: usize) -> Result<usize> {
    m.checked_mul(n)
        .filter(|&l| l <= isize::MAX as usize / 8)
        .ok_or_else(|| Error::limit(format!("output shape ({m}, {n}) is too large")))
}

/// Ask for transparent huge pages on the whole 2 MiB pages inside a large fresh allocation
/// (what numpy does for its arrays): in `madvise` mode a 64 MiB result then faults 32 times
/// instead of 16384 (4096 x 512 x 4096 into int32: 81 ms without, 61 ms with; the Python entries
/// that return int32 / float32 use recycled buffers instead, 44 ms; see BENCHMARKS.md).
fn advise_huge_pages(p: *mut u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        if bytes < 2 * HUGE {
            return;
        }
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: [start, end) lies inside the allocation; MADV_HUGEPAGE is advice only (it
            // never changes the contents or the validity of the memory) and failure is ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, bytes);
}

/// An output buffer the kernels overwrite completely (every row, every column of every panel),
/// so it is not zeroed first: zeroing costs a pass over memory the kernels write anyway.
/// The reservation is fallible: (2^20 x 1) @ (1 x 2^20) asks 4 TiB from 2 MiB of operands,
/// which is an error, not an abort.
fn alloc_output<T: Copy>(m: usize, n: usize, fill: impl FnOnce(*mut T)) -> Result<Vec<T>> {
    let len = alloc_len(m, n)?;
    let mut v: Vec<std::mem::MaybeUninit<T>> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::limit(format!(
            "output of shape ({m}, {n}) needs {} bytes, which cannot be allocated",
            len as u128 * std::mem::size_of::<T>() as u128
        ))
    })?;
    // SAFETY: MaybeUninit needs no initialisation; capacity is at least len.
    unsafe { v.set_len(len) };
    advise_huge_pages(v.as_mut_ptr().cast(), len * std::mem::size_of::<T>());
    fill(v.as_mut_ptr().cast::<T>());
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `fill` ran the kernels, which write all m*n elements (`run` covers every row
    // block and every panel, `finish_rows` every row and column of its tile); MaybeUninit<T>
    // has T's layout, so the allocation is a valid Vec<T> of the same length and capacity.
    Ok(unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) })
}

/// `(A - a_zp) @ (B - b_zp)` as int32 (M x N, row-major), on [`isa::active`].
pub fn matmul_integer(a: &Lhs, a_zp: &[i64], b: &PackedMatrix) -> Result<Vec<i32>> {
    matmul_integer_with(isa::active(), a, a_zp, b)
}

/// [`matmul_integer`] with a plain row-major (K, N) B of `b_dtype` and zero point `b_zp`:
/// up to 16 rows on the AVX2 and AVX-512 levels, 8 on AVX-VNNI (`DirectKernel::max_rows`),
/// multiplied straight from B's bytes (`direct.rs`); otherwise packed for this call only
/// (storage recycled per thread).
#[allow(clippy::too_many_arguments)]
pub fn matmul_integer_unpacked_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &[u8],
    k: usize,
    n: usize,
    b_dtype: Dtype,
    b_zp: &[i64],
) -> Result<Vec<i32>> {
    let mut v = zeroed_output::<i32>(a.rows, n)?;
    matmul_integer_unpacked_into_with(isa, a, a_zp, b, k, n, b_dtype, b_zp, &mut v)?;
    Ok(v)
}

/// [`matmul_integer_unpacked_with`] into a caller's M x N buffer.
#[allow(clippy::too_many_arguments)]
pub fn matmul_integer_unpacked_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &[u8],
    k: usize,
    n: usize,
    b_dtype: Dtype,
    b_zp: &[i64],
    out: &mut [i32],
) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if isa.includes(Isa::Avx2) && k > 0 && n > 0 {
        let kernel = if isa.includes(Isa::Avx512) {
            direct::DirectKernel::Avx512
        } else if isa.includes(Isa::AvxVnni) {
            direct::DirectKernel::AvxVnni
        } else {
            direct::DirectKernel::Avx2
        };
        if (1..=kernel.max_rows()).contains(&a.rows) {
            // SAFETY: the Avx512 level implies avx512f/bw/vl/vnni/vbmi, AvxVnni avx2 +
            // avxvnni, the others Avx2 (isa.rs); callers pass only levels from
            // `isa::detected()` or `isa::active()`.
            return unsafe { direct::matmul_into(kernel, a, a_zp, b, k, n, b_dtype, b_zp, out) };
        }
    }
    PackedMatrix::with_temporary(isa, b, k, n, b_dtype, b_zp, |packed| {
        matmul_integer_into_with(isa, a, a_zp, packed, out)
    })?
}

/// [`matmul_integer_unpacked_with`] on [`isa::active`].
pub fn matmul_integer_unpacked(
    a: &Lhs,
    a_zp: &[i64],
    b: &[u8],
    k: usize,
    n: usize,
    b_dtype: Dtype,
    b_zp: &[i64],
) -> Result<Vec<i32>> {
    matmul_integer_unpacked_with(isa::active(), a, a_zp, b, k, n, b_dtype, b_zp)
}

/// [`matmul_integer_unpacked_into_with`] on [`isa::active`].
#[allow(clippy::too_many_arguments)]
pub fn matmul_integer_unpacked_into(
    a: &Lhs,
    a_zp: &[i64],
    b: &[u8],
    k: usize,
    n: usize,
    b_dtype: Dtype,
    b_zp: &[i64],
    out: &mut [i32],
) -> Result<()> {
    matmul_integer_unpacked_into_with(isa::active(), a, a_zp, b, k, n, b_dtype, b_zp, out)
}

/// [`matmul_integer`] on a given ISA level (tests).
pub fn matmul_integer_with(isa: Isa, a: &Lhs, a_zp: &[i64], b: &PackedMatrix) -> Result<Vec<i32>> {
    let zp = validate(a, a_zp, b)?;
    alloc_output::<i32>(a.rows, b.n(), |p| {
        execute(Kernel::for_isa(isa), a, &zp, b, None, Out::I32(SyncPtr(p)))
    })
}

/// [`matmul_integer`] into a caller's M x N buffer (no fresh output pages).
pub fn matmul_integer_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    out: &mut [i32],
) -> Result<()> {
    let zp = validate(a, a_zp, b)?;
    if Some(out.len()) != a.rows.checked_mul(b.n()) {
        bail_arg!(
            "`out` holds {} elements, expected M*N = {}*{}",
            out.len(),
            a.rows,
            b.n()
        );
    }
    execute(
        Kernel::for_isa(isa),
        a,
        &zp,
        b,
        None,
        Out::I32(SyncPtr(out.as_mut_ptr())),
    );
    Ok(())
}

/// [`matmul_integer`] on a given block kernel (tests).
#[cfg(test)]
pub(crate) fn matmul_integer_kernel(
    kernel: Kernel,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
) -> Result<Vec<i32>> {
    let zp = validate(a, a_zp, b)?;
    alloc_output::<i32>(a.rows, b.n(), |p| {
        execute(kernel, a, &zp, b, None, Out::I32(SyncPtr(p)))
    })
}

/// [`matmul_integer_into_with`] on [`isa::active`].
pub fn matmul_integer_into(a: &Lhs, a_zp: &[i64], b: &PackedMatrix, out: &mut [i32]) -> Result<()> {
    matmul_integer_into_with(isa::active(), a, a_zp, b, out)
}

/// Checks of [`matmul_scaled_with`]'s arguments; returns A's zero point.
#[allow(clippy::too_many_arguments)]
fn check_scaled(
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    row_scale: &[f32],
    col_scale: &[f32],
    bias_i32: Option<&[i32]>,
    bias: Option<&[f32]>,
) -> Result<Vec<i32>> {
    let zp = validate(a, a_zp, b)?;
    let n = b.n();
    if row_scale.len() != 1 && row_scale.len() != a.rows {
        bail_arg!(
            "row scale has {} values, expected 1 or M={}",
            row_scale.len(),
            a.rows
        );
    }
    if col_scale.len() != n {
        bail_arg!(
            "column scale has {} values, expected N={n}",
            col_scale.len()
        );
    }
    if bias.is_some_and(|v| v.len() != n) || bias_i32.is_some_and(|v| v.len() != n) {
        bail_arg!("`bias` must have N={n} values");
    }
    Ok(zp)
}

/// `float32(C + bias_i32[n]) * (row_scale[m] * col_scale[n]) (+ bias[n])`, no int32 matrix in
/// between. `row_scale` has 1 or M values, `col_scale` N, biases N.
#[allow(clippy::too_many_arguments)]
pub fn matmul_scaled_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    row_scale: &[f32],
    col_scale: &[f32],
    bias_i32: Option<&[i32]>,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let zp = check_scaled(a, a_zp, b, row_scale, col_scale, bias_i32, bias)?;
    alloc_output::<f32>(a.rows, b.n(), |p| {
        let o = Out::F32 {
            ptr: SyncPtr(p),
            row_scale,
            col_scale,
            bias,
        };
        execute(Kernel::for_isa(isa), a, &zp, b, bias_i32, o)
    })
}

/// [`matmul_scaled_with`] into a caller's M x N buffer.
#[allow(clippy::too_many_arguments)]
pub fn matmul_scaled_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    row_scale: &[f32],
    col_scale: &[f32],
    bias_i32: Option<&[i32]>,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let zp = check_scaled(a, a_zp, b, row_scale, col_scale, bias_i32, bias)?;
    if Some(out.len()) != a.rows.checked_mul(b.n()) {
        bail_arg!(
            "`out` holds {} elements, expected M*N = {}*{}",
            out.len(),
            a.rows,
            b.n()
        );
    }
    let o = Out::F32 {
        ptr: SyncPtr(out.as_mut_ptr()),
        row_scale,
        col_scale,
        bias,
    };
    execute(Kernel::for_isa(isa), a, &zp, b, bias_i32, o);
    Ok(())
}

/// `clamp(rint(float32(C + bias_i32[n]) * mult[n]) + y_zp)` as `y_dtype` bytes, into a
/// caller's M x N buffer (every element written).
#[allow(clippy::too_many_arguments)]
pub fn matmul_requant_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    mult: &[f32],
    bias_i32: Option<&[i32]>,
    y_zp: i64,
    y_dtype: Dtype,
    out: &mut [u8],
) -> Result<()> {
    let zp = validate(a, a_zp, b)?;
    let n = b.n();
    if mult.len() != n {
        bail_arg!(
            "requantization multiplier has {} values, expected N={n}",
            mult.len()
        );
    }
    if bias_i32.is_some_and(|v| v.len() != n) {
        bail_arg!("`bias` must have N={n} values");
    }
    let yz = check_zero_points("y_zero_point", &[y_zp], 1, "tensor", y_dtype)?[0];
    if Some(out.len()) != a.rows.checked_mul(n) {
        bail_arg!(
            "`out` holds {} elements, expected M*N = {}*{n}",
            out.len(),
            a.rows
        );
    }
    let (lo, hi) = y_dtype.range();
    let o = Out::Q8 {
        ptr: SyncPtr(out.as_mut_ptr()),
        mult,
        zp: yz,
        lo,
        hi,
    };
    execute(Kernel::for_isa(isa), a, &zp, b, bias_i32, o);
    Ok(())
}

/// A zeroed M x N result for the allocating twins of the `_into` entries (fallible: a huge
/// shape is an error, not an abort).
pub(crate) fn zeroed_output<T: Copy + Default>(m: usize, n: usize) -> Result<Vec<T>> {
    let len = alloc_len(m, n)?;
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::limit(format!(
            "output of shape ({m}, {n}) needs {} bytes, which cannot be allocated",
            len as u128 * std::mem::size_of::<T>() as u128
        ))
    })?;
    v.resize(len, T::default());
    Ok(v)
}

/// ONNX `QLinearMatMul`: `y = saturate(rint(float32(C) * (a_scale * b_scale[n] / y_scale)) + y_zp)`
/// where C is [`matmul_integer`]; `b_scale` has 1 or N values; `y_dtype` bytes into a caller's
/// M x N buffer.
#[allow(clippy::too_many_arguments)]
pub fn qlinear_matmul_into_with(
    isa: Isa,
    a: &Lhs,
    a_scale: f32,
    a_zp: &[i64],
    b: &PackedMatrix,
    b_scale: &[f32],
    y_scale: f32,
    y_zp: i64,
    y_dtype: Dtype,
    out: &mut [u8],
) -> Result<()> {
    check_scale("a_scale", &[a_scale])?;
    check_scale("b_scale", b_scale)?;
    check_scale("y_scale", &[y_scale])?;
    let n = b.n();
    if b_scale.len() != 1 && b_scale.len() != n {
        bail_arg!(
            "`b_scale` has {} values, expected a scalar or N={n}",
            b_scale.len()
        );
    }
    let mult: Vec<f32> = (0..n)
        .map(|j| a_scale * b_scale[if b_scale.len() == 1 { 0 } else { j }] / y_scale)
        .collect();
    matmul_requant_into_with(isa, a, a_zp, b, &mult, None, y_zp, y_dtype, out)
}

/// [`qlinear_matmul_into_with`] into a new buffer.
#[allow(clippy::too_many_arguments)]
pub fn qlinear_matmul_with(
    isa: Isa,
    a: &Lhs,
    a_scale: f32,
    a_zp: &[i64],
    b: &PackedMatrix,
    b_scale: &[f32],
    y_scale: f32,
    y_zp: i64,
    y_dtype: Dtype,
) -> Result<Vec<u8>> {
    let mut out = zeroed_output(a.rows, b.n())?;
    qlinear_matmul_into_with(
        isa, a, a_scale, a_zp, b, b_scale, y_scale, y_zp, y_dtype, &mut out,
    )?;
    Ok(out)
}

/// [`qlinear_matmul_into_with`] on [`isa::active`].
#[allow(clippy::too_many_arguments)]
pub fn qlinear_matmul_into(
    a: &Lhs,
    a_scale: f32,
    a_zp: &[i64],
    b: &PackedMatrix,
    b_scale: &[f32],
    y_scale: f32,
    y_zp: i64,
    y_dtype: Dtype,
    out: &mut [u8],
) -> Result<()> {
    qlinear_matmul_into_with(
        isa::active(),
        a,
        a_scale,
        a_zp,
        b,
        b_scale,
        y_scale,
        y_zp,
        y_dtype,
        out,
    )
}
