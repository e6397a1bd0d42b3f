//! AVX2, exact: bytes widened to int16 (`vpmovzxbw` / `vpmovsxbw`) and multiplied with
//! `vpmaddwd` (int16 x int16 pairs summed into int32, which cannot overflow for byte operands:
//! |2 * 255 * 255| < 2^31). No saturating `vpmaddubsw`. Three kernels:
//! * `gemm_block`: packed B (same layout as the VNNI kernel); each ymm holds 4 columns x 2
//!   partial sums, folded pairwise at the end of the tile;
//! * `pack_lines`: the packing transpose (also used by AVX-VNNI machines);
//! * `direct_block`: plain B up to 16 rows of A, multiplied from B's bytes (`direct.rs`).

use std::arch::x86_64::*;

use super::blocking::{gemm_block, Block, PackedKernel, Tile};
use super::epilogue::Job;
use super::layout::{
    DirectOperands, PackLines, ACC_STRIDE, DIRECT_COLS, DIRECT_GROUPS, GROUP_BYTES, PANEL,
};

/// One strip (16 columns) for `MR` rows.
///
/// # Safety
/// avx2 + bmi2; `a` readable for `(MR-1)*lda + 4*groups` bytes, `b` (line 0 of the strip in
/// its packed panel) for `GROUP_BYTES*(groups-1) + 64`; `tile` writable for MR rows of PANEL
/// int32 at offset 0..16.
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
            let raw = unsafe { _mm_loadu_si128(b.add(g * GROUP_BYTES + j * 16).cast()) };
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

/// `vpmaddwd` on bytes widened to int16: strips of 16 columns, up to 2 rows at a time.
pub(super) struct Avx2;

impl PackedKernel for Avx2 {
    const KC_GROUPS: usize = usize::MAX;
    const PRE_FLIP: bool = false;
    const STORES: bool = false;

    #[inline(always)]
    unsafe fn tile(t: &Tile) {
        let flip = if t.flip { 0x8080_8080u32 } else { 0 };
        let mut r = 0;
        while r < t.rows {
            let h = (t.rows - r).min(2);
            // SAFETY: rows r..r+h of the tile (`lda` bytes apart); strip s of the panel;
            // tile rows r..r+h, columns s*16..s*16+16 (the `tile` contract).
            unsafe {
                let ap = t.a.add(r * t.lda);
                for s in 0..4 {
                    let bp = t.b.add(s * 64);
                    let tp = t.acc.add(r * PANEL + s * 16);
                    if h == 2 {
                        micro::<2>(ap, t.lda, flip, bp, t.groups, tp);
                    } else {
                        micro::<1>(ap, t.lda, flip, bp, t.groups, tp);
                    }
                }
            }
            r += h;
        }
    }
}

/// Block `blk` of `job` ([`gemm_block`] with [`Avx2`]).
///
/// # Safety
/// The CPU supports avx2 and bmi2; `blk` lies within `job`.
#[target_feature(enable = "avx2,bmi2,fma")]
pub(super) unsafe fn gemm(job: &Job, blk: Block) {
    // SAFETY: features enabled above; `blk` per the caller.
    unsafe { gemm_block::<Avx2>(job, blk) }
}

/// [`super::avx512::pack_lines`] on AVX2: full 4-row x 64-column blocks of row-major B (N
/// columns) for k-groups `g0..g1` and panels `0..panels` become one 64-byte line in each of
/// their 4 strips (XOR `flip`), and `sums[c] += sum over those rows of Bs[k, c]`. Each half
/// panel (4 rows x 32 bytes) is interleaved with 8 in-lane unpacks (lane 0 columns 0..16, lane
/// 1 columns 16..32) and 4 lane permutes.
///
/// # Safety
/// avx2; rows `4*g1 <= K`, `64*panels <= n`; `out` is the 64-byte aligned packed buffer (panel
/// stride `pbytes` bytes, a multiple of 64) and lines of groups g0..g1 are not accessed
/// concurrently; `sums` holds `64*panels` values.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_lines<const NT: bool>(
    lines: PackLines,
    g0: usize,
    g1: usize,
    sums: &mut [i32],
) {
    let PackLines {
        b,
        n,
        panels,
        flip,
        out,
        pbytes,
    } = lines;
    debug_assert!(sums.len() >= panels * PANEL && pbytes.is_multiple_of(64));
    let fl = _mm256_set1_epi8(flip as i8);
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    let sp = sums.as_mut_ptr();
    for g in g0..g1 {
        debug_assert!((4 * g + 4) * n <= b.len());
        for p in 0..panels {
            for h in 0..2 {
                let col = 64 * p + 32 * h;
                // SAFETY: rows 4g..4g+4 < K, columns col..col+32 <= n (caller contract).
                let r = unsafe {
                    let base = b.as_ptr().add(4 * g * n + col);
                    [
                        _mm256_loadu_si256(base.cast()),
                        _mm256_loadu_si256(base.add(n).cast()),
                        _mm256_loadu_si256(base.add(2 * n).cast()),
                        _mm256_loadu_si256(base.add(3 * n).cast()),
                    ]
                };
                let lo01 = _mm256_unpacklo_epi8(r[0], r[1]);
                let hi01 = _mm256_unpackhi_epi8(r[0], r[1]);
                let lo23 = _mm256_unpacklo_epi8(r[2], r[3]);
                let hi23 = _mm256_unpackhi_epi8(r[2], r[3]);
                // Lane l of v[j]: columns 16l + 4j .. 16l + 4j + 4, 4 bytes each.
                let v = [
                    _mm256_unpacklo_epi16(lo01, lo23),
                    _mm256_unpackhi_epi16(lo01, lo23),
                    _mm256_unpacklo_epi16(hi01, hi23),
                    _mm256_unpackhi_epi16(hi01, hi23),
                ];
                // Strip 4p + 2h + l: columns 0..8 then 8..16 of its 16.
                let halves = [
                    [
                        _mm256_permute2x128_si256::<0x20>(v[0], v[1]),
                        _mm256_permute2x128_si256::<0x20>(v[2], v[3]),
                    ],
                    [
                        _mm256_permute2x128_si256::<0x31>(v[0], v[1]),
                        _mm256_permute2x128_si256::<0x31>(v[2], v[3]),
                    ],
                ];
                for (l, pair) in halves.iter().enumerate() {
                    let strip = 4 * p + 2 * h + l;
                    for (i, &x) in pair.iter().enumerate() {
                        let x = _mm256_xor_si256(x, fl);
                        // SAFETY: bytes 32i.. of strip `strip`'s line of k-group g (32-byte aligned: the
                        // buffer and strides are multiples of 64); sums of its columns
                        // 8i..8i+8 < 64*panels.
                        unsafe {
                            let dst = out
                                .add(p * pbytes + g * GROUP_BYTES + (2 * h + l) * 64 + 32 * i)
                                .cast::<__m256i>();
                            if NT {
                                _mm256_stream_si256(dst, x);
                            } else {
                                _mm256_storeu_si256(dst, x);
                            }
                            // Per column: 4 signed bytes summed (pairs in int16, then int32).
                            let s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, x), ones16);
                            let q = sp.add(strip * 16 + 8 * i).cast::<__m256i>();
                            _mm256_storeu_si256(q, _mm256_add_epi32(_mm256_loadu_si256(q), s));
                        }
                    }
                }
            }
        }
    }
    if NT {
        // Non-temporal stores are weakly ordered: complete them before the caller hands the
        // buffer to other threads.
        _mm_sfence();
    }
}

/// Rows `0..R` of A (int16 pairs, row stride `kp2` pairs) times k-groups `g0..g1` of the 16
/// columns of B from `col`, summed in registers onto the partial sums at `acc` (row stride
/// [`ACC_STRIDE`]); `first`: start from zero instead. `FULL`: 16 columns and 4 real rows in
/// every group (plain loads); else `w` columns, and rows past K read as zero.
///
/// # Safety
/// avx2; as [`direct_block`] for these rows and columns.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn direct_pass<const R: usize, const SB: bool, const FULL: bool>(
    ops: DirectOperands<i32>,
    g0: usize,
    g1: usize,
    acc: *mut i32,
    first: bool,
) {
    let DirectOperands {
        a,
        lda: kp2,
        b,
        k,
        n,
        c0: col,
        nc: w,
    } = ops;
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let zero = _mm256_setzero_si256();
        let mut s = [[zero; 2]; R];
        if !first {
            for (r, sr) in s.iter_mut().enumerate() {
                for (j, x) in sr.iter_mut().enumerate() {
                    *x = _mm256_loadu_si256(acc.add(r * ACC_STRIDE + 8 * j).cast());
                }
            }
        }
        let widen = |x: __m128i| {
            if SB {
                _mm256_cvtepi8_epi16(x)
            } else {
                _mm256_cvtepu8_epi16(x)
            }
        };
        for g in g0..g1 {
            let mut rv = [_mm_setzero_si128(); 4];
            for (i, x) in rv.iter_mut().enumerate() {
                let src = b.add((4 * g + i) * n + col);
                if FULL {
                    *x = _mm_loadu_si128(src.cast());
                } else if 4 * g + i < k {
                    let mut t = [0u8; 16];
                    std::ptr::copy_nonoverlapping(src, t.as_mut_ptr(), w);
                    *x = _mm_loadu_si128(t.as_ptr().cast());
                }
            }
            // int16 pairs (row 4g, 4g+1) and (4g+2, 4g+3) per column: columns 0..8, 8..16.
            let b01 = [
                widen(_mm_unpacklo_epi8(rv[0], rv[1])),
                widen(_mm_unpackhi_epi8(rv[0], rv[1])),
            ];
            let b23 = [
                widen(_mm_unpacklo_epi8(rv[2], rv[3])),
                widen(_mm_unpackhi_epi8(rv[2], rv[3])),
            ];
            for (r, sr) in s.iter_mut().enumerate() {
                let p01 = _mm256_set1_epi32(*a.add(r * kp2 + 2 * g));
                let p23 = _mm256_set1_epi32(*a.add(r * kp2 + 2 * g + 1));
                for (j, x) in sr.iter_mut().enumerate() {
                    let d = _mm256_add_epi32(
                        _mm256_madd_epi16(p01, b01[j]),
                        _mm256_madd_epi16(p23, b23[j]),
                    );
                    *x = _mm256_add_epi32(*x, d);
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

/// The AVX2 twin of [`super::avx512::direct_block`], exact with int16 products:
/// `acc[r * ACC_STRIDE + c] = sum_k A[r, k] * B[k, c0 + c]` (true values, columns in order) for
/// the `R1 + R2` rows of A, given as int16 pairs (`a[r * kp2 + j]` holds `A[r, 2j]` in its low
/// and `A[r, 2j + 1]` in its high half, zero padded to `kp2 = kp / 2`), and the `nc` columns
/// from `c0` of row-major B (K x n bytes, int8 when `SB`, else uint8). Each 4-row x 16-column
/// block of B is interleaved into row pairs and widened in registers; [`DIRECT_GROUPS`] k-groups
/// are summed in registers per row between loads and stores of the partial sums. Rows run as
/// one register pass of `R1` and, if `R2 > 0`, a second of `R2` over the same bytes of B.
///
/// # Safety
/// avx2; `1 <= R1 <= 4`, `R2 <= 4`; `a` readable for `(R1 + R2) * kp2` values with `kp2 >= K/2`
/// rounded up to 2; `b` readable for `K*n` bytes, `c0 + nc <= n`, `1 <= nc <= DIRECT_COLS`;
/// `acc` holds `(R1 + R2) * ACC_STRIDE` values.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn direct_block<const R1: usize, const R2: usize, const SB: bool>(
    ops: DirectOperands<i32>,
    acc: &mut [i32],
) {
    let DirectOperands {
        a,
        lda: kp2,
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
                    a.wrapping_add(R1 * kp2),
                    ap.add(16 * q),
                    ap.wrapping_add(R1 * ACC_STRIDE + 16 * q),
                );
                if full {
                    direct_pass::<R1, SB, true>(
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
                        direct_pass::<R2, SB, true>(
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
                    direct_pass::<R1, SB, false>(
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
                        direct_pass::<R2, SB, false>(
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
