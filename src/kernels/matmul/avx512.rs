//! AVX-512 VNNI: `vpdpbusd` on zmm. The microkernel holds an MR x (16 NV) block of int32
//! accumulators in registers (6 x 64 = 24 zmm for the main tile, so 24 independent
//! `vpdpbusd` chains per k-group keep both VNNI pipes busy), broadcasts 4 bytes of each A row
//! and loads NV 64-byte lines of packed B per k-group. Small M (up to 16 rows) runs as one or
//! two row tiles per panel, so B streams through once.

use std::arch::x86_64::*;

use super::pack::PANEL;
use super::{finish_rows, row_tiles, Job};

/// `tile[r][0 .. NV*16] (+)= sum_g Au[r, 4g..4g+4] . Bs[4g..4g+4, cols]` (`+=` when
/// `accumulate`, else `=`).
///
/// # Safety
/// avx512f/bw/vnni available; `a` readable for `(MR-1)*lda + 4*groups` bytes; `b` readable for
/// `(NV-1)*sstride + 64*groups` bytes; `tile` writable for MR rows of PANEL int32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn micro<const MR: usize, const NV: usize, const FLIP: bool>(
    a: *const u8,
    lda: usize,
    b: *const u8,
    sstride: usize,
    groups: usize,
    tile: *mut i32,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_si512(); NV]; MR];
    if accumulate {
        for (r, accr) in acc.iter_mut().enumerate() {
            for (v, x) in accr.iter_mut().enumerate() {
                // SAFETY: row r, columns v*16..v*16+16 of the tile (caller contract).
                *x = unsafe { _mm512_loadu_si512(tile.add(r * PANEL + v * 16).cast()) };
            }
        }
    }
    let flip = _mm512_set1_epi8(0x80u8 as i8);
    for g in 0..groups {
        let mut bv = [_mm512_setzero_si512(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: line g of strip v is within the packed buffer (caller contract).
            *x = unsafe { _mm512_loadu_si512(b.add(v * sstride + g * 64).cast()) };
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            // SAFETY: bytes 4g..4g+4 of row r are within A (caller contract).
            let w = unsafe { a.add(r * lda + 4 * g).cast::<i32>().read_unaligned() };
            let mut av = _mm512_set1_epi32(w);
            if FLIP {
                av = _mm512_xor_si512(av, flip);
            }
            for (x, &bb) in accr.iter_mut().zip(&bv) {
                *x = _mm512_dpbusd_epi32(*x, av, bb);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (v, &x) in accr.iter().enumerate() {
            // SAFETY: row r, columns v*16..v*16+16 of the tile (caller contract).
            unsafe { _mm512_storeu_si512(tile.add(r * PANEL + v * 16).cast(), x) };
        }
    }
}

macro_rules! tile_call {
    ($flip:literal, $rows:expr, $a:expr, $lda:expr, $b:expr, $ss:expr, $g:expr, $t:expr, $acc:expr) => {
        // SAFETY: forwarded caller contract of `micro`.
        unsafe {
            match $rows {
                1 => micro::<1, 4, $flip>($a, $lda, $b, $ss, $g, $t, $acc),
                2 => micro::<2, 4, $flip>($a, $lda, $b, $ss, $g, $t, $acc),
                3 => micro::<3, 4, $flip>($a, $lda, $b, $ss, $g, $t, $acc),
                4 => micro::<4, 4, $flip>($a, $lda, $b, $ss, $g, $t, $acc),
                5 => micro::<5, 4, $flip>($a, $lda, $b, $ss, $g, $t, $acc),
                6 => micro::<6, 4, $flip>($a, $lda, $b, $ss, $g, $t, $acc),
                7 => {
                    micro::<7, 2, $flip>($a, $lda, $b, $ss, $g, $t, $acc);
                    micro::<7, 2, $flip>($a, $lda, $b.add(2 * $ss), $ss, $g, $t.add(32), $acc);
                }
                _ => {
                    micro::<8, 2, $flip>($a, $lda, $b, $ss, $g, $t, $acc);
                    micro::<8, 2, $flip>($a, $lda, $b.add(2 * $ss), $ss, $g, $t.add(32), $acc);
                }
            }
        }
    };
}

/// k-groups (4 bytes of K each) per K block: a 64-column panel of B is then 64 x 4*KC bytes
/// (16 KiB), which stays in L1 while every row tile of the block passes over it.
const KC_GROUPS: usize = 64;

/// Rows `m0..m1` x panels `p0..p1` of `job`. Beyond 16 rows, K is blocked ([`KC_GROUPS`]) and
/// partial sums live in a per-thread buffer of (m1 - m0) x 64 int32 until the last block.
///
/// # Safety
/// The CPU supports avx512f/bw/vl/vnni.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm_block(job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    let kp = job.b.kp();
    let groups = kp / 4;
    let sstride = kp * 16;
    let data = job.b.data();
    let lda = job.lda;
    debug_assert!(job.a.len() >= job.m * lda && lda >= kp);
    let kcg = if job.m <= 16 {
        groups.max(1)
    } else {
        KC_GROUPS
    };
    let rows_blk = m1 - m0;
    super::with_scratch(2, rows_blk * PANEL * 4 + 64, |buf| {
        // SAFETY: every bit pattern is a valid i32; the aligned middle part is used.
        let (_, acc, _) = unsafe { buf.align_to_mut::<i32>() };
        let acc = &mut acc[..rows_blk * PANEL];
        for p in p0..p1 {
            // SAFETY: panel p (4 strips) is inside the packed buffer: p < np / PANEL.
            let bp = unsafe { data.as_ptr().add(p * 4 * sstride) };
            let mut g0 = 0;
            loop {
                let g1 = (g0 + kcg).min(groups);
                let last = g1 == groups;
                row_tiles(job.m, m0, m1, |m, rows| {
                    let at = (m - m0) * PANEL;
                    // SAFETY: rows m..m+rows < job.m, each `lda >= kp` bytes, from byte 4*g0;
                    // k-groups g0..g1 of the panel's strips; tile rows inside `acc`.
                    let (ap, bpk, tp) = unsafe {
                        (
                            job.a.as_ptr().add(m * lda + 4 * g0),
                            bp.add(g0 * 64),
                            acc.as_mut_ptr().add(at),
                        )
                    };
                    if job.flip {
                        tile_call!(true, rows, ap, lda, bpk, sstride, g1 - g0, tp, g0 > 0);
                    } else {
                        tile_call!(false, rows, ap, lda, bpk, sstride, g1 - g0, tp, g0 > 0);
                    }
                    if last {
                        finish_rows(job, m, rows, p, &mut acc[at..at + rows * PANEL]);
                    }
                });
                if last {
                    break;
                }
                g0 = g1;
            }
        }
    });
}
