//! AVX-VNNI: `vpdpbusd` on ymm (Alder Lake and later, Zen 5 client parts), 16 ymm registers.
//! Per strip of 16 columns a row needs 2 accumulators; tiles of up to 4 rows x 1 strip keep
//! 8 accumulators, 2 B lines and a broadcast in registers.
//!
//! This CPU cannot run AVX-VNNI, so the body is shared (`#[inline(always)]`, const `VL`) with a
//! test-only shell that issues the AVX-512VL encoding of the same ymm instruction, which the
//! Rust tests compare with the scalar twin on every shape.

use std::arch::x86_64::*;

use super::pack::PANEL;
use super::{finish_rows, row_tiles, Job};

#[inline(always)]
unsafe fn dp<const VL: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    if VL {
        // SAFETY: the VL shell enables avx512vnni + avx512vl.
        unsafe { _mm256_dpbusd_epi32(acc, a, b) }
    } else {
        // SAFETY: the AVX-VNNI shell enables avxvnni.
        unsafe { _mm256_dpbusd_avx_epi32(acc, a, b) }
    }
}

/// One strip (16 columns) for `MR` rows: `tile[r][0..16] = sum_g Au[r, 4g..] . Bs[4g.., cols]`.
///
/// # Safety
/// avx2 and the `VL` choice's VNNI; `a` readable for `(MR-1)*lda + 4*groups` bytes, `b` for
/// `64*groups`; `tile` writable for MR rows of PANEL int32 at offset 0..16.
#[inline(always)]
unsafe fn micro<const MR: usize, const VL: bool>(
    a: *const u8,
    lda: usize,
    flip: u32,
    b: *const u8,
    groups: usize,
    tile: *mut i32,
) {
    // SAFETY: pointers and features per the caller contract above.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        for g in 0..groups {
            let b0 = _mm256_loadu_si256(b.add(g * 64).cast());
            let b1 = _mm256_loadu_si256(b.add(g * 64 + 32).cast());
            for (r, accr) in acc.iter_mut().enumerate() {
                let w = a.add(r * lda + 4 * g).cast::<u32>().read_unaligned() ^ flip;
                let av = _mm256_set1_epi32(w as i32);
                accr[0] = dp::<VL>(accr[0], av, b0);
                accr[1] = dp::<VL>(accr[1], av, b1);
            }
        }
        for (r, accr) in acc.iter().enumerate() {
            _mm256_storeu_si256(tile.add(r * PANEL).cast(), accr[0]);
            _mm256_storeu_si256(tile.add(r * PANEL + 8).cast(), accr[1]);
        }
    }
}

#[inline(always)]
unsafe fn block<const VL: bool>(job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    let kp = job.b.kp();
    let groups = kp / 4;
    let sstride = job.b.strip_lines() * 64;
    let data = job.b.data();
    let flip = if job.flip { 0x8080_8080u32 } else { 0 };
    let mut tile = [0i32; 8 * PANEL];
    for p in p0..p1 {
        row_tiles(job.m, m0, m1, |m, rows| {
            let mut r = 0;
            while r < rows {
                let h = (rows - r).min(4);
                // SAFETY: rows m+r..m+r+h < job.m of `lda >= kp` bytes; strip p*4+s < np/16 of
                // the packed buffer; tile rows r..r+h, columns s*16..s*16+16.
                unsafe {
                    let ap = job.a.as_ptr().add((m + r) * job.lda);
                    for s in 0..4 {
                        let bp = data.as_ptr().add((p * 4 + s) * sstride);
                        let tp = tile.as_mut_ptr().add(r * PANEL + s * 16);
                        match h {
                            1 => micro::<1, VL>(ap, job.lda, flip, bp, groups, tp),
                            2 => micro::<2, VL>(ap, job.lda, flip, bp, groups, tp),
                            3 => micro::<3, VL>(ap, job.lda, flip, bp, groups, tp),
                            _ => micro::<4, VL>(ap, job.lda, flip, bp, groups, tp),
                        }
                    }
                }
                r += h;
            }
            finish_rows(job, m, rows, p, &mut tile);
        });
    }
}

/// Rows `m0..m1` x panels `p0..p1` of `job`.
///
/// # Safety
/// The CPU supports avx2 and avxvnni.
#[target_feature(enable = "avx2,avxvnni")]
pub(super) unsafe fn gemm_block(job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    // SAFETY: features enabled above.
    unsafe { block::<false>(job, m0, m1, p0, p1) }
}

/// The same kernel with the AVX-512VL encoding of ymm `vpdpbusd` (tests on AVX-512 hosts).
///
/// # Safety
/// The CPU supports avx2, avx512f/vl/vnni.
#[cfg(test)]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm_block_vl(job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    // SAFETY: features enabled above.
    unsafe { block::<true>(job, m0, m1, p0, p1) }
}
