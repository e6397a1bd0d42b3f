//! The packed-B driver: how one multiplication is split into blocks of rows x panels over the
//! kernel threads ([`partition`], [`run`]), what A looks like to the kernels ([`kernel_a`]),
//! the correction terms computed once per call ([`prepare`]), and the one dispatch from the
//! [`Gemm`] family of [`crate::kernels::isa::Kernels`] to a micro-kernel.

use super::blocking::Block;
use super::epilogue::{Job, Out};
use super::layout::{Dtype, Lhs, PANEL};
use super::packed::PackedMatrix;
use super::scalar;
use super::scratch::with_scratch;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512, avxvnni};
use crate::kernels::isa::Gemm;

/// Block `blk` of `job` on `kernel`: the one dispatch of the packed-B kernels.
fn run_block(kernel: Gemm, job: &Job, blk: Block) {
    match kernel {
        Gemm::Scalar => scalar::gemm(job, blk),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx2 family runs only where the CPU has avx2 + bmi2 (`isa::kernels`, or
        // tests that pick it from `isa::detected()`); `run` passes blocks within `job`.
        Gemm::Avx2 => unsafe { avx2::gemm(job, blk) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, avx2 + avxvnni.
        Gemm::AvxVnni => unsafe { avxvnni::gemm(job, blk) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, avx512f/bw/vl/vnni.
        Gemm::Avx512 => unsafe { avx512::gemm(job, blk) },
        #[cfg(all(test, target_arch = "x86_64"))]
        // SAFETY: tests pick this only when the Avx512 level is detected.
        Gemm::AvxVnniViaVl => unsafe { avxvnni::gemm_vl(job, blk) },
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
pub(crate) fn run(kernel: Gemm, job: &Job) {
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
        let blk = Block {
            m0,
            m1: (m0 + part.mc).min(m),
            p0,
            p1: (p0 + part.pc).min(panels),
        };
        run_block(kernel, job, blk);
    };
    let items = part.mblocks * part.pblocks;
    if threads <= 1 || items <= 1 {
        (0..items).for_each(block);
    } else {
        crate::parallel::for_each_index(items, block);
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

pub(crate) fn execute(
    kernel: Gemm,
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
