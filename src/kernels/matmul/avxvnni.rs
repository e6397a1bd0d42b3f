//! AVX-VNNI: `vpdpbusd` on ymm (Alder Lake and later, Zen 5 client parts), 16 ymm registers.
//! Two kernels:
//! * `gemm_block` (packed B): per strip of 16 columns a row needs 2 accumulators; tiles of up
//!   to 4 rows x 1 strip keep 8 accumulators, 2 B lines and a broadcast in registers.
//! * `direct_block` (plain B, up to 16 rows; `direct.rs`): the operands of the AVX-512 direct
//!   kernel, 16 columns at a time, interleaved in registers from B's rows. Measured through the
//!   VL encoding on this Zen 4 (one thread, 4096 x 4096 int8 B, `direct_throughput`): M = 1
//!   0.78 ms, 4 1.27, 8 2.25, 16 4.71, against 0.86 / 1.78 / 3.43 / 6.99 for the AVX2
//!   `vpmaddwd` kernel these machines used before.
//!
//! This CPU cannot run AVX-VNNI, so the body is shared (`#[inline(always)]`, const `VL`) with a
//! test-only shell that issues the AVX-512VL encoding of the same ymm instruction, which the
//! Rust tests compare with the scalar twin on every shape.

use std::arch::x86_64::*;

use super::blocking::{gemm_block, Block, PackedKernel, Tile};
use super::epilogue::Job;
use super::layout::{DirectOperands, ACC_STRIDE, DIRECT_COLS, DIRECT_GROUPS, GROUP_BYTES, PANEL};

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
/// avx2 and the `VL` choice's VNNI; `a` readable for `(MR-1)*lda + 4*groups` bytes, `b` (line 0
/// of the strip in its packed panel) for `GROUP_BYTES*(groups-1) + 64`; `tile` writable for MR
/// rows of PANEL int32 at offset 0..16.
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
            let b0 = _mm256_loadu_si256(b.add(g * GROUP_BYTES).cast());
            let b1 = _mm256_loadu_si256(b.add(g * GROUP_BYTES + 32).cast());
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

/// `vpdpbusd` on ymm: strips of 16 columns, up to 4 rows at a time; `VL`: the AVX-512VL
/// encoding (tests on AVX-512 hosts without AVX-VNNI).
pub(super) struct AvxVnni<const VL: bool>;

impl<const VL: bool> PackedKernel for AvxVnni<VL> {
    const KC_GROUPS: usize = usize::MAX;
    const PRE_FLIP: bool = false;
    const STORES: bool = false;

    #[inline(always)]
    unsafe fn tile(t: &Tile) {
        let flip = if t.flip { 0x8080_8080u32 } else { 0 };
        let mut r = 0;
        while r < t.rows {
            let h = (t.rows - r).min(4);
            // SAFETY: rows r..r+h of the tile (`lda` bytes apart); strip s of the panel;
            // tile rows r..r+h, columns s*16..s*16+16 (the `tile` contract).
            unsafe {
                let ap = t.a.add(r * t.lda);
                for s in 0..4 {
                    let bp = t.b.add(s * 64);
                    let tp = t.acc.add(r * PANEL + s * 16);
                    match h {
                        1 => micro::<1, VL>(ap, t.lda, flip, bp, t.groups, tp),
                        2 => micro::<2, VL>(ap, t.lda, flip, bp, t.groups, tp),
                        3 => micro::<3, VL>(ap, t.lda, flip, bp, t.groups, tp),
                        _ => micro::<4, VL>(ap, t.lda, flip, bp, t.groups, tp),
                    }
                }
            }
            r += h;
        }
    }
}

/// Block `blk` of `job` ([`gemm_block`] with [`AvxVnni`]).
///
/// # Safety
/// The CPU supports avx2 and avxvnni; `blk` lies within `job`.
#[target_feature(enable = "avx2,avxvnni")]
pub(super) unsafe fn gemm(job: &Job, blk: Block) {
    // SAFETY: features enabled above; `blk` per the caller.
    unsafe { gemm_block::<AvxVnni<false>>(job, blk) }
}

/// The same kernel with the AVX-512VL encoding of ymm `vpdpbusd` (tests on AVX-512 hosts).
///
/// # Safety
/// The CPU supports avx2, avx512f/vl/vnni; `blk` lies within `job`.
#[cfg(test)]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm_vl(job: &Job, blk: Block) {
    // SAFETY: features enabled above; `blk` per the caller.
    unsafe { gemm_block::<AvxVnni<true>>(job, blk) }
}

/// Rows `0..R` of A (bytes, row stride `kp`) times k-groups `g0..g1` of the 16 columns of B from
/// `col`, summed in registers onto the partial sums at `acc` (row stride [`ACC_STRIDE`],
/// columns in order); `first`: start from zero instead. Operands as in
/// [`super::avx512::direct_block`]: `XA` unsigned and `XB = B (^ 0x80 when FLIP)` signed, or
/// the other way round with `SWAP`. `FULL`: 16 columns and 4 real rows in every group (plain
/// loads); else `w` columns (the rest read as zero), and rows past K are not read (they meet
/// A's zero padding).
///
/// # Safety
/// avx2 and the `VL` choice's VNNI; as [`direct_block`] for these rows and columns.
#[inline(always)]
unsafe fn direct_pass<
    const R: usize,
    const SWAP: bool,
    const FLIP: bool,
    const FULL: bool,
    const VL: bool,
>(
    ops: DirectOperands<u8>,
    g0: usize,
    g1: usize,
    acc: *mut i32,
    first: bool,
) {
    let DirectOperands {
        a,
        lda: kp,
        b,
        k,
        n,
        c0: col,
        nc: w,
    } = ops;
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let zero = _mm256_setzero_si256();
        let fl = _mm_set1_epi8(0x80u8 as i8);
        let mut s = [[zero; 2]; R];
        if !first {
            for (r, sr) in s.iter_mut().enumerate() {
                for (j, x) in sr.iter_mut().enumerate() {
                    *x = _mm256_loadu_si256(acc.add(r * ACC_STRIDE + 8 * j).cast());
                }
            }
        }
        for g in g0..g1 {
            let mut rv = [_mm_setzero_si128(); 4];
            for (i, x) in rv.iter_mut().enumerate() {
                let src = b.add((4 * g + i) * n + col);
                let v = if FULL {
                    _mm_loadu_si128(src.cast())
                } else if 4 * g + i < k {
                    let mut t = [0u8; 16];
                    std::ptr::copy_nonoverlapping(src, t.as_mut_ptr(), w);
                    _mm_loadu_si128(t.as_ptr().cast())
                } else {
                    continue;
                };
                *x = if FLIP { _mm_xor_si128(v, fl) } else { v };
            }
            // Each column's 4 bytes (rows 4g..4g+4) in one dword, columns in order.
            let lo01 = _mm_unpacklo_epi8(rv[0], rv[1]);
            let hi01 = _mm_unpackhi_epi8(rv[0], rv[1]);
            let lo23 = _mm_unpacklo_epi8(rv[2], rv[3]);
            let hi23 = _mm_unpackhi_epi8(rv[2], rv[3]);
            let l = [
                _mm256_set_m128i(
                    _mm_unpackhi_epi16(lo01, lo23),
                    _mm_unpacklo_epi16(lo01, lo23),
                ),
                _mm256_set_m128i(
                    _mm_unpackhi_epi16(hi01, hi23),
                    _mm_unpacklo_epi16(hi01, hi23),
                ),
            ];
            for (r, sr) in s.iter_mut().enumerate() {
                let av = _mm256_set1_epi32(a.add(r * kp + 4 * g).cast::<i32>().read_unaligned());
                for (x, &lj) in sr.iter_mut().zip(&l) {
                    *x = if SWAP {
                        dp::<VL>(*x, lj, av)
                    } else {
                        dp::<VL>(*x, av, lj)
                    };
                }
            }
        }
        for (r, sr) in s.iter().enumerate() {
            for (j, &x) in sr.iter().enumerate() {
                _mm256_storeu_si256(acc.add(r * ACC_STRIDE + 8 * j).cast(), x);
            }
        }
    }
}

/// The AVX-VNNI twin of [`super::avx512::direct_block`] (same operands and semantics), with the
/// partial sums in column order: `acc[r * ACC_STRIDE + c] = sum_k XA[r, k] * XB[k, c0 + c]`.
/// Each 4-row x 16-column block of B is interleaved in registers (6 unpacks), [`DIRECT_GROUPS`]
/// k-groups are summed in registers per row between loads and stores of the partial sums, and
/// rows run as one register pass of `R1` and, if `R2 > 0`, a second of `R2` over the same bytes.
///
/// # Safety
/// avx2 and the `VL` choice's VNNI; `1 <= R1 <= 4`, `R2 <= 4`; `a` readable for
/// `(R1 + R2) * kp` bytes with `kp >= K` rounded up to 4 (zero padded); `b` readable for `K*n`
/// bytes, `c0 + nc <= n`, `1 <= nc <= DIRECT_COLS`; `acc` holds `(R1 + R2) * ACC_STRIDE` values.
#[inline(always)]
unsafe fn direct_body<
    const R1: usize,
    const R2: usize,
    const SWAP: bool,
    const FLIP: bool,
    const VL: bool,
>(
    ops: DirectOperands<u8>,
    acc: &mut [i32],
) {
    let DirectOperands {
        a,
        lda: kp,
        k,
        c0,
        nc,
        ..
    } = ops;
    debug_assert!(acc.len() >= (R1 + R2) * ACC_STRIDE && (1..=DIRECT_COLS).contains(&nc));
    let groups = k.div_ceil(4);
    let ap = acc.as_mut_ptr();
    let mut g0 = 0;
    while g0 < groups {
        let g1 = (g0 + DIRECT_GROUPS).min(groups);
        for q in 0..nc.div_ceil(16) {
            let w = (nc - 16 * q).min(16);
            let full = w == 16 && 4 * g1 <= k;
            let first = g0 == 0;
            let col = c0 + 16 * q;
            // SAFETY: rows < R1 + R2 of A and `acc`, columns col..col+w of B (caller
            // contract); columns 16q.. of each row of `acc` (16q + 16 <= ACC_STRIDE). The
            // second pass's pointers are used only when R2 > 0.
            unsafe {
                let (a2, acc1, acc2) = (
                    a.wrapping_add(R1 * kp),
                    ap.add(16 * q),
                    ap.wrapping_add(R1 * ACC_STRIDE + 16 * q),
                );
                if full {
                    direct_pass::<R1, SWAP, FLIP, true, VL>(
                        DirectOperands {
                            a,
                            c0: col,
                            nc: w,
                            ..ops
                        },
                        g0,
                        g1,
                        acc1,
                        first,
                    );
                    if R2 > 0 {
                        direct_pass::<R2, SWAP, FLIP, true, VL>(
                            DirectOperands {
                                a: a2,
                                c0: col,
                                nc: w,
                                ..ops
                            },
                            g0,
                            g1,
                            acc2,
                            first,
                        );
                    }
                } else {
                    direct_pass::<R1, SWAP, FLIP, false, VL>(
                        DirectOperands {
                            a,
                            c0: col,
                            nc: w,
                            ..ops
                        },
                        g0,
                        g1,
                        acc1,
                        first,
                    );
                    if R2 > 0 {
                        direct_pass::<R2, SWAP, FLIP, false, VL>(
                            DirectOperands {
                                a: a2,
                                c0: col,
                                nc: w,
                                ..ops
                            },
                            g0,
                            g1,
                            acc2,
                            first,
                        );
                    }
                }
            }
        }
        g0 = g1;
    }
}

/// [`direct_body`] with AVX-VNNI.
///
/// # Safety
/// The CPU supports avx2 and avxvnni; the rest as [`direct_body`].
#[target_feature(enable = "avx2,avxvnni")]
pub(super) unsafe fn direct_block<
    const R1: usize,
    const R2: usize,
    const SWAP: bool,
    const FLIP: bool,
>(
    ops: DirectOperands<u8>,
    acc: &mut [i32],
) {
    // SAFETY: features enabled above; the rest is the caller's contract.
    unsafe { direct_body::<R1, R2, SWAP, FLIP, false>(ops, acc) }
}

/// [`direct_block`] with the AVX-512VL encoding of ymm `vpdpbusd` (tests on AVX-512 hosts).
///
/// # Safety
/// The CPU supports avx2, avx512f/vl/vnni; the rest as [`direct_body`].
#[cfg(test)]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
pub(super) unsafe fn direct_block_vl<
    const R1: usize,
    const R2: usize,
    const SWAP: bool,
    const FLIP: bool,
>(
    ops: DirectOperands<u8>,
    acc: &mut [i32],
) {
    // SAFETY: features enabled above; the rest is the caller's contract.
    unsafe { direct_body::<R1, R2, SWAP, FLIP, true>(ops, acc) }
}
