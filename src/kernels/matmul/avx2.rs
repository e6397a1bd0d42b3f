//! AVX2, exact: bytes widened to int16 (`vpmovzxbw` / `vpmovsxbw`) and multiplied with
//! `vpmaddwd` (int16 x int16 pairs summed into int32, which cannot overflow for byte operands:
//! |2 * 255 * 128| < 2^31). No saturating `vpmaddubsw`. Same packed layout as the VNNI kernel;
//! each ymm holds 4 columns x 2 partial sums, folded pairwise at the end of the tile.

use std::arch::x86_64::*;

use super::pack::PANEL;
use super::{finish_rows, row_tiles, Job};

/// One strip (16 columns) for `MR` rows.
///
/// # Safety
/// avx2 + bmi2; `a` readable for `(MR-1)*lda + 4*groups` bytes, `b` for `64*groups`; `tile`
/// writable for MR rows of PANEL int32 at offset 0..16.
#[inline]
#[target_feature(enable = "avx2,bmi2")]
unsafe fn micro<const MR: usize>(
    a: *const u8,
    lda: usize,
    flip: u32,
    b: *const u8,
    groups: usize,
    tile: *mut i32,
) {
    let mut acc = [[_mm256_setzero_si256(); 4]; MR];
    for g in 0..groups {
        let mut bv = [_mm256_setzero_si256(); 4];
        for (j, x) in bv.iter_mut().enumerate() {
            // SAFETY: 16 bytes of line g (caller contract).
            let raw = unsafe { _mm_loadu_si128(b.add(g * 64 + j * 16).cast()) };
            *x = _mm256_cvtepi8_epi16(raw);
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            // SAFETY: bytes 4g..4g+4 of row r (caller contract).
            let w = unsafe { a.add(r * lda + 4 * g).cast::<u32>().read_unaligned() } ^ flip;
            let wide = _pdep_u64(w as u64, 0x00ff_00ff_00ff_00ff);
            let av = _mm256_set1_epi64x(wide as i64);
            for (x, &bb) in accr.iter_mut().zip(&bv) {
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(av, bb));
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (j, &x) in accr.iter().enumerate() {
            let mut pair = [0i32; 8];
            // SAFETY: 8 int32 into a local array.
            unsafe { _mm256_storeu_si256(pair.as_mut_ptr().cast(), x) };
            for c in 0..4 {
                // SAFETY: row r, column j*4+c < 16 of this strip (caller contract).
                unsafe {
                    *tile.add(r * PANEL + j * 4 + c) = pair[2 * c].wrapping_add(pair[2 * c + 1]);
                }
            }
        }
    }
}

/// Rows `m0..m1` x panels `p0..p1` of `job`.
///
/// # Safety
/// The CPU supports avx2 and bmi2.
#[target_feature(enable = "avx2,bmi2,fma")]
pub(super) unsafe fn gemm_block(job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    let kp = job.b.kp();
    let groups = kp / 4;
    let sstride = job.b.strip_lines() * 64;
    let data = job.b.data();
    let flip = if job.flip { 0x8080_8080u32 } else { 0 };
    let mut tile = vec![0i32; 8 * PANEL];
    for p in p0..p1 {
        row_tiles(job.m, m0, m1, |m, rows| {
            let mut r = 0;
            while r < rows {
                let h = (rows - r).min(2);
                // SAFETY: rows m+r..m+r+h < job.m of `lda >= kp` bytes.
                let ap = unsafe { job.a.as_ptr().add((m + r) * job.lda) };
                for s in 0..4 {
                    // SAFETY: strip p*4+s < np/16 of the packed buffer; tile rows r..r+h.
                    unsafe {
                        let bp = data.as_ptr().add((p * 4 + s) * sstride);
                        let tp = tile.as_mut_ptr().add(r * PANEL + s * 16);
                        if h == 2 {
                            micro::<2>(ap, job.lda, flip, bp, groups, tp);
                        } else {
                            micro::<1>(ap, job.lda, flip, bp, groups, tp);
                        }
                    }
                }
                r += h;
            }
            finish_rows(job, m, rows, p, &mut tile);
        });
    }
}
