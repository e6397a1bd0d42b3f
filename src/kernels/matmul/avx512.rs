//! AVX-512 VNNI: `vpdpbusd` on zmm. The microkernel holds an MR x (16 NV) block of int32
//! accumulators in registers (6 x 64 = 24 zmm for the main tile, so 24 independent
//! `vpdpbusd` chains per k-group keep both VNNI pipes busy), broadcasts 4 bytes of each A row
//! and loads NV 64-byte lines of packed B per k-group. Small M (up to 16 rows) runs as one or
//! two row tiles per panel, so B streams through once.

use std::arch::x86_64::*;

use super::pack::PANEL;
use super::{finish_rows, row_tiles, Job};

#[repr(C, align(64))]
struct Tile([i32; 8 * PANEL]);

/// `tile[r][v0*16 .. (v0+NV)*16] = sum_g Au[r, 4g..4g+4] . Bs[4g..4g+4, cols]`.
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
) {
    let mut acc = [[_mm512_setzero_si512(); NV]; MR];
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
    ($flip:literal, $rows:expr, $a:expr, $lda:expr, $b:expr, $ss:expr, $g:expr, $t:expr) => {
        // SAFETY: forwarded caller contract of `micro`.
        unsafe {
            match $rows {
                1 => micro::<1, 4, $flip>($a, $lda, $b, $ss, $g, $t),
                2 => micro::<2, 4, $flip>($a, $lda, $b, $ss, $g, $t),
                3 => micro::<3, 4, $flip>($a, $lda, $b, $ss, $g, $t),
                4 => micro::<4, 4, $flip>($a, $lda, $b, $ss, $g, $t),
                5 => micro::<5, 4, $flip>($a, $lda, $b, $ss, $g, $t),
                6 => micro::<6, 4, $flip>($a, $lda, $b, $ss, $g, $t),
                7 => {
                    micro::<7, 2, $flip>($a, $lda, $b, $ss, $g, $t);
                    micro::<7, 2, $flip>($a, $lda, $b.add(2 * $ss), $ss, $g, $t.add(32));
                }
                _ => {
                    micro::<8, 2, $flip>($a, $lda, $b, $ss, $g, $t);
                    micro::<8, 2, $flip>($a, $lda, $b.add(2 * $ss), $ss, $g, $t.add(32));
                }
            }
        }
    };
}

/// Rows `m0..m1` x panels `p0..p1` of `job`.
///
/// # Safety
/// The CPU supports avx512f/bw/vl/vnni.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm_block(job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    let kp = job.b.kp();
    let groups = kp / 4;
    let sstride = kp * 16;
    let data = job.b.data();
    debug_assert!(job.a.len() >= job.m * job.lda && job.lda >= kp);
    let mut tile = Tile([0; 8 * PANEL]);
    for p in p0..p1 {
        // SAFETY: panel p (4 strips) is inside the packed buffer: p < np / PANEL.
        let bp = unsafe { data.as_ptr().add(p * 4 * sstride) };
        row_tiles(job.m, m0, m1, |m, rows| {
            // SAFETY: rows m..m+rows < job.m, each `lda >= kp` bytes long.
            let ap = unsafe { job.a.as_ptr().add(m * job.lda) };
            let tp = tile.0.as_mut_ptr();
            if job.flip {
                tile_call!(true, rows, ap, job.lda, bp, sstride, groups, tp);
            } else {
                tile_call!(false, rows, ap, job.lda, bp, sstride, groups, tp);
            }
            finish_rows(job, m, rows, p, &mut tile.0);
        });
    }
}
