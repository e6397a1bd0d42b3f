//! AVX-512 VNNI: `vpdpbusd` on zmm. The microkernel holds an MR x (16 NV) block of int32
//! accumulators in registers (6 x 64 = 24 zmm for the main tile, so 24 independent
//! `vpdpbusd` chains per k-group keep both VNNI pipes busy), broadcasts 4 bytes of each A row
//! and loads NV 64-byte lines of packed B per k-group. Small M (up to 16 rows) runs as one to
//! three row tiles per panel: B streams in from memory once, the later tiles find the panel in
//! L2.

use std::arch::x86_64::*;

use super::blocking::{gemm_block, Block, PackedKernel, Tile};
use super::epilogue::Job;
use super::layout::{
    DirectOperands, PackLines, ACC_STRIDE, DIRECT_COLS, DIRECT_GROUPS, GROUP_BYTES, PANEL,
};

/// The micro-kernel of [`Avx512`]: an MR x (16 NV) tile, `FLIP`: XOR A with 0x80 (the
/// [`Tile`] contract with `rows = MR`, `flip = FLIP`).
///
/// # Safety
/// avx512f/bw/vnni available; [`PackedKernel::tile`]'s contract for `t`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn micro<const MR: usize, const NV: usize, const FLIP: bool>(t: &Tile) {
    let (a, lda, b, groups, tile, direct) = (t.a, t.lda, t.b, t.groups, t.acc, t.store);
    let mut acc = [[_mm512_setzero_si512(); NV]; MR];
    if t.accumulate {
        for (r, accr) in acc.iter_mut().enumerate() {
            for (v, x) in accr.iter_mut().enumerate() {
                // SAFETY: row r, columns v*16..v*16+16 of the tile (caller contract).
                *x = unsafe { _mm512_loadu_si512(tile.add(r * PANEL + v * 16).cast()) };
            }
        }
    }
    let flip = _mm512_set1_epi8(0x80u8 as i8);
    // One or two rows read B as fast as memory delivers it: four (two) parts of K at once,
    // i.e. as many streams through the panel, with accumulators of their own summed at the
    // end, keep more prefetches in flight than one stream (M = 1 on a packed 4096 x 4096 B:
    // 0.27-0.33 ms with one stream, 0.25-0.26 with four).
    const PARTS: usize = 4;
    let streams = if MR == 1 {
        4
    } else if MR == 2 {
        2
    } else {
        1
    };
    let q = if streams > 1 && groups >= 16 * streams {
        groups / streams
    } else {
        0
    };
    if q > 0 {
        let mut part = [[[_mm512_setzero_si512(); NV]; MR]; PARTS];
        for g in 0..q {
            for (s, ps) in part.iter_mut().enumerate().take(streams) {
                let gs = s * q + g;
                let mut bv = [_mm512_setzero_si512(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    // SAFETY: line gs of strip v is within the packed panel (caller contract).
                    *x = unsafe { _mm512_loadu_si512(b.add(gs * GROUP_BYTES + v * 64).cast()) };
                }
                for (r, pr) in ps.iter_mut().enumerate() {
                    // SAFETY: bytes 4gs..4gs+4 of row r are within A (caller contract).
                    let w = unsafe { a.add(r * lda + 4 * gs).cast::<i32>().read_unaligned() };
                    let mut av = _mm512_set1_epi32(w);
                    if FLIP {
                        av = _mm512_xor_si512(av, flip);
                    }
                    for (x, &bb) in pr.iter_mut().zip(&bv) {
                        *x = _mm512_dpbusd_epi32(*x, av, bb);
                    }
                }
            }
        }
        for ps in part.iter().take(streams) {
            for (accr, pr) in acc.iter_mut().zip(ps) {
                for (x, &p) in accr.iter_mut().zip(pr) {
                    *x = _mm512_add_epi32(*x, p);
                }
            }
        }
    }
    for g in streams * q..groups {
        let mut bv = [_mm512_setzero_si512(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: line g of strip v is within the packed panel (caller contract).
            *x = unsafe { _mm512_loadu_si512(b.add(g * GROUP_BYTES + v * 64).cast()) };
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
    if !direct.out.is_null() {
        for (r, accr) in acc.iter().enumerate() {
            for (v, &x) in accr.iter().enumerate() {
                // SAFETY: `store` points at row 0, column 0 of this tile in the output (row
                // stride `ldo` elements of 4 bytes) and at its 16*NV column terms, scales and
                // bias, and at the row scales of its rows (caller contract).
                unsafe {
                    let c = _mm512_loadu_si512(direct.col_add.add(v * 16).cast());
                    let x = _mm512_add_epi32(x, c);
                    let o = direct.out.add((r * direct.ldo + v * 16) * 4);
                    if direct.float {
                        // float32(x) * (row_scale * col_scale) (+ bias): the order of finish_rows.
                        let rs = _mm512_set1_ps(*direct.row_scale.add(r * direct.rs_step));
                        let sc = _mm512_mul_ps(rs, _mm512_loadu_ps(direct.col_scale.add(v * 16)));
                        let mut y = _mm512_mul_ps(_mm512_cvtepi32_ps(x), sc);
                        if !direct.bias.is_null() {
                            y = _mm512_add_ps(y, _mm512_loadu_ps(direct.bias.add(v * 16)));
                        }
                        _mm512_storeu_ps(o.cast(), y);
                    } else {
                        _mm512_storeu_si512(o.cast(), x);
                    }
                }
            }
        }
        return;
    }
    for (r, accr) in acc.iter().enumerate() {
        for (v, &x) in accr.iter().enumerate() {
            // SAFETY: row r, columns v*16..v*16+16 of the tile (caller contract).
            unsafe { _mm512_storeu_si512(tile.add(r * PANEL + v * 16).cast(), x) };
        }
    }
}

/// `vpdpbusd` on zmm: 6-row x 64-column tiles, 24 accumulators.
pub(super) struct Avx512;

impl PackedKernel for Avx512 {
    const KC_GROUPS: usize = KC_GROUPS;
    const PRE_FLIP: bool = true;
    const STORES: bool = true;

    #[inline(always)]
    unsafe fn tile(t: &Tile) {
        // SAFETY: forwarded caller contract (`micro` for `t.rows` rows, at most 6 by
        // `tile_of_row`).
        unsafe {
            match (t.flip, t.rows) {
                (true, 1) => micro::<1, 4, true>(t),
                (true, 2) => micro::<2, 4, true>(t),
                (true, 3) => micro::<3, 4, true>(t),
                (true, 4) => micro::<4, 4, true>(t),
                (true, 5) => micro::<5, 4, true>(t),
                (true, _) => micro::<6, 4, true>(t),
                (false, 1) => micro::<1, 4, false>(t),
                (false, 2) => micro::<2, 4, false>(t),
                (false, 3) => micro::<3, 4, false>(t),
                (false, 4) => micro::<4, 4, false>(t),
                (false, 5) => micro::<5, 4, false>(t),
                (false, _) => micro::<6, 4, false>(t),
            }
        }
    }
}

/// k-groups (4 bytes of K each) per K block: up to K = 4096 the 24 accumulators of a row tile
/// stay in registers for the whole of K, and the tile streams its 64-column panel of B
/// (64 x K bytes, 256 KiB at K = 4096) from L2, where the hardware prefetcher keeps up with
/// the four sequential strips. Blocks of 128 groups (a 32 KiB panel block, this Zen 4's whole
/// L1d) made every row tile store and reload its accumulators and restart its B streams 4 to
/// 8 times more often; one thread, min of alternating runs (`large_throughput`): 2048^3 41.9
/// -> 40.0 ms, 64 x 4096 x 4096 5.47 -> 5.11 ms, 1024^3 5.18 -> 5.02 ms. Beyond K = 4096 the
/// block keeps a panel within a quarter of L2.
const KC_GROUPS: usize = 1024;

/// Block `blk` of `job` ([`gemm_block`] with [`Avx512`]).
///
/// # Safety
/// The CPU supports avx512f/bw/vl/vnni; `blk` lies within `job`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemm(job: &Job, blk: Block) {
    // SAFETY: features enabled above; `blk` per the caller.
    unsafe { gemm_block::<Avx512>(job, blk) }
}

/// The `vpermb` index that interleaves, for each of 16 columns, its byte from each of 4 rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn interleave_index() -> __m512i {
    let mut idx = [0u8; 64];
    for (j, x) in idx.iter_mut().enumerate() {
        let (c, i) = (j / 4, j % 4);
        *x = (i * 16 + c) as u8;
    }
    // SAFETY: 64 bytes from a local array.
    unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
}

/// Four rows of 64 bytes (columns 0..64 of rows k..k+4) as the four 64-byte lines of packed B:
/// line `j` holds columns 16j..16j+16, each column's 4 bytes in row order (128-bit lane
/// transpose, then `vpermb` with [`interleave_index`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn transpose4(r: [__m512i; 4], idx: __m512i) -> [__m512i; 4] {
    let t0 = _mm512_shuffle_i64x2::<0x44>(r[0], r[1]);
    let t1 = _mm512_shuffle_i64x2::<0xEE>(r[0], r[1]);
    let t2 = _mm512_shuffle_i64x2::<0x44>(r[2], r[3]);
    let t3 = _mm512_shuffle_i64x2::<0xEE>(r[2], r[3]);
    [
        _mm512_permutexvar_epi8(idx, _mm512_shuffle_i64x2::<0x88>(t0, t2)),
        _mm512_permutexvar_epi8(idx, _mm512_shuffle_i64x2::<0xDD>(t0, t2)),
        _mm512_permutexvar_epi8(idx, _mm512_shuffle_i64x2::<0x88>(t1, t3)),
        _mm512_permutexvar_epi8(idx, _mm512_shuffle_i64x2::<0xDD>(t1, t3)),
    ]
}

/// Pack full 4-row x 64-column blocks of row-major B (N columns) for k-groups `g0..g1` and
/// panels `0..panels`: each block becomes k-group g of its panel, one 64-byte line per strip
/// ([`transpose4`]), XOR `flip`; and `sums[c] += sum over those rows of Bs[k, c]`.
///
/// Rows of B are read whole (4 at a time, long runs); `NT`: the lines go out with
/// non-temporal stores, which do not first read each destination line into the cache (a
/// plain store does: for a 16 MB result that is 16 MB more traffic; see `pack.rs`).
///
/// # Safety
/// avx512f/bw/vbmi/vnni; rows `4*g1 <= K`, `64*panels <= n`; `out` is the 64-byte aligned
/// packed buffer (panel stride `pbytes` bytes, a multiple of 64) and lines of groups g0..g1 are
/// not accessed concurrently; `sums` holds `64*panels` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
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
    let idx = interleave_index();
    let fl = _mm512_set1_epi8(flip as i8);
    let ones = _mm512_set1_epi8(1);
    let sp = sums.as_mut_ptr();
    for g in g0..g1 {
        debug_assert!((4 * g + 4) * n <= b.len());
        for p in 0..panels {
            // SAFETY: rows 4g..4g+4 < K, columns 64p..64p+64 <= n (caller contract).
            let r = unsafe {
                let base = b.as_ptr().add(4 * g * n + 64 * p);
                [
                    _mm512_loadu_si512(base.cast()),
                    _mm512_loadu_si512(base.add(n).cast()),
                    _mm512_loadu_si512(base.add(2 * n).cast()),
                    _mm512_loadu_si512(base.add(3 * n).cast()),
                ]
            };
            for (j, &line) in transpose4(r, idx).iter().enumerate() {
                let line = _mm512_xor_si512(line, fl);
                // SAFETY: line j of k-group g of panel p, 64-byte aligned (caller
                // contract); sums of columns 64p+16j.. < 64*panels.
                unsafe {
                    let dst = out
                        .add(p * pbytes + g * GROUP_BYTES + j * 64)
                        .cast::<__m512i>();
                    if NT {
                        _mm512_stream_si512(dst, line);
                    } else {
                        _mm512_storeu_si512(dst, line);
                    }
                    let q = sp.add(p * PANEL + 16 * j).cast::<__m512i>();
                    _mm512_storeu_si512(q, _mm512_dpbusd_epi32(_mm512_loadu_si512(q), ones, line));
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

/// Software prefetch distance of [`direct_block`] in panels (at the end of a run of columns,
/// the next rows' first lines: the hardware prefetchers stop at page ends). 0.47 ms without,
/// 0.45 with 8 or 16 panels.
const DIRECT_AHEAD: usize = 8;

/// Four rows of 64 bytes as four lines for `vpdpbusd`: each dword holds one column's bytes of
/// the 4 rows, in row order; line `j`, 128-bit lane `l` holds columns `16l + 4j .. 16l + 4j + 4`
/// (the "slot order" of the direct path: column `c` of a panel sits at slot
/// `16 (c / 4 % 4) + 4 (c / 16) + c % 4`). Eight in-lane unpacks, no cross-lane shuffle.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn interleave4(r: [__m512i; 4]) -> [__m512i; 4] {
    let lo01 = _mm512_unpacklo_epi8(r[0], r[1]);
    let hi01 = _mm512_unpackhi_epi8(r[0], r[1]);
    let lo23 = _mm512_unpacklo_epi8(r[2], r[3]);
    let hi23 = _mm512_unpackhi_epi8(r[2], r[3]);
    [
        _mm512_unpacklo_epi16(lo01, lo23),
        _mm512_unpackhi_epi16(lo01, lo23),
        _mm512_unpacklo_epi16(hi01, hi23),
        _mm512_unpackhi_epi16(hi01, hi23),
    ]
}

/// Rows `r0 .. r0 + R` of `Au` times k-groups `g0..g1` of one 64-column panel of B, summed in
/// registers onto the partial sums `acc` (row stride [`ACC_STRIDE`], panel-relative slots of
/// the slot order of [`interleave4`]); `first`: start from zero instead.
///
/// # Safety
/// As [`direct_block`], for `r0 + R` rows, `col` the panel's first column of B and `mask`
/// its valid columns.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn direct_pass<const R: usize, const SWAP: bool, const FLIP: bool, const FULL: bool>(
    ops: DirectOperands<u8>,
    mask: __mmask64,
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
        ..
    } = ops;
    // SAFETY: the caller's contract covers every pointer below.
    unsafe {
        let zero = _mm512_setzero_si512();
        let fl = _mm512_set1_epi8(0x80u8 as i8);
        let mut s = [[zero; 4]; R];
        if !first {
            for (r, sr) in s.iter_mut().enumerate() {
                for (j, x) in sr.iter_mut().enumerate() {
                    *x = _mm512_loadu_si512(acc.add(r * ACC_STRIDE + 16 * j).cast());
                }
            }
        }
        for g in g0..g1 {
            let rows = (k - 4 * g).min(4);
            let mut rv = [zero; 4];
            for (i, x) in rv.iter_mut().enumerate() {
                // Rows past K stay 0: they meet A's zero padding.
                if FULL || i < rows {
                    let src = b.add((4 * g + i) * n + col);
                    // (masked loads cost more: M = 1 at 4096^2 0.55 ms with them, 0.45 without)
                    let v = if FULL {
                        _mm512_loadu_si512(src.cast())
                    } else {
                        _mm512_maskz_loadu_epi8(mask, src.cast())
                    };
                    *x = if FLIP { _mm512_xor_si512(v, fl) } else { v };
                }
            }
            let l = interleave4(rv);
            for (r, sr) in s.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(a.add(r * kp + 4 * g).cast::<i32>().read_unaligned());
                for (x, &lj) in sr.iter_mut().zip(&l) {
                    *x = if SWAP {
                        _mm512_dpbusd_epi32(*x, lj, av)
                    } else {
                        _mm512_dpbusd_epi32(*x, av, lj)
                    };
                }
            }
        }
        for (r, sr) in s.iter().enumerate() {
            for (j, &x) in sr.iter().enumerate() {
                _mm512_storeu_si512(acc.add(r * ACC_STRIDE + 16 * j).cast(), x);
            }
        }
    }
}

/// `acc[r * ACC_STRIDE + 64 p + slot(c)] = sum_k XA[r, k] * XB[k, c0 + 64 p + c]` (slot order
/// of [`interleave4`]) for the `R1 + R2` rows of A (row stride `kp`, zero padded to `kp` = K
/// rounded up to 4) and the `nc <= DIRECT_COLS` columns from `c0` of row-major B (K x n
/// bytes, `XB = B ^ 0x80` when `FLIP`, else B). `XA` is A's bytes read as uint8 and `XB` as
/// int8, or, with `SWAP`, `XA` as int8 and `XB` as uint8 (the operands of `vpdpbusd` change
/// sides). B is read straight from memory: each 4-row x 64-column block is interleaved in
/// registers ([`interleave4`]) instead of being packed first, and [`DIRECT_GROUPS`] of them
/// are summed in registers per row before the partial sums go back to `acc` (in L1 / L2).
/// Rows run as one register pass of `R1` and, if `R2 > 0`, a second of `R2` over the same
/// (now L1-hot) bytes of B. Slots for columns past `nc` (up to the next multiple of 64) are
/// unspecified.
///
/// # Safety
/// avx512f/bw/vnni; `1 <= R1 <= DIRECT_PASS_ROWS`, `R2 <= DIRECT_PASS_ROWS`; `a` readable
/// for `(R1 + R2) * kp` bytes with `kp >= K` rounded up to 4; `b` readable for `K*n` bytes,
/// `c0 + nc <= n`, `1 <= nc <= DIRECT_COLS`; `acc` holds `(R1 + R2) * ACC_STRIDE` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn direct_block<
    const R1: usize,
    const R2: usize,
    const SWAP: bool,
    const FLIP: bool,
>(
    ops: DirectOperands<u8>,
    acc: &mut [i32],
) {
    let DirectOperands {
        a,
        lda: kp,
        b,
        k,
        n,
        c0,
        nc,
    } = ops;
    debug_assert!(acc.len() >= (R1 + R2) * ACC_STRIDE && (1..=DIRECT_COLS).contains(&nc));
    let groups = k.div_ceil(4);
    let ap = acc.as_mut_ptr();
    let mut g0 = 0;
    while g0 < groups {
        let g1 = (g0 + DIRECT_GROUPS).min(groups);
        let panels = nc.div_ceil(PANEL);
        for p in 0..panels {
            // Prefetch the lines DIRECT_AHEAD panels on; past the block's last panel, the
            // first panels of the next k-groups' rows (new pages, where the hardware stops).
            let (pg, pp) = if p + DIRECT_AHEAD < panels {
                (g0, p + DIRECT_AHEAD)
            } else {
                (g1, p + DIRECT_AHEAD - panels)
            };
            if pp < panels {
                for row in 4 * pg..(4 * (pg + (g1 - g0))).min(k) {
                    // SAFETY: prefetch never faults; the address is inside B (row < K,
                    // column c0 + 64 pp < c0 + nc <= n).
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(b.add(row * n + c0 + pp * PANEL).cast()) };
                }
            }
            let w = (nc - p * PANEL).min(PANEL);
            let mask: __mmask64 = if w == PANEL { !0 } else { (1u64 << w) - 1 };
            let col = c0 + p * PANEL;
            // Whole panel and 4 real rows in every group: plain loads, no checks.
            let full = mask == !0 && 4 * g1 <= k;
            // SAFETY: rows < R1 + R2 of `Au` and `acc`, columns of B inside `mask` (caller
            // contract); panel p's slots are inside each row of `acc` (64 p + 64 <= ACC_STRIDE).
            unsafe {
                // (the second pass's pointers are used only when R2 > 0)
                let (a2, acc2) = (
                    a.wrapping_add(R1 * kp),
                    ap.wrapping_add(R1 * ACC_STRIDE + p * PANEL),
                );
                let acc1 = ap.add(p * PANEL);
                let first = g0 == 0;
                if full {
                    direct_pass::<R1, SWAP, FLIP, true>(
                        DirectOperands { a, c0: col, ..ops },
                        mask,
                        g0,
                        g1,
                        acc1,
                        first,
                    );
                    if R2 > 0 {
                        direct_pass::<R2, SWAP, FLIP, true>(
                            DirectOperands {
                                a: a2,
                                c0: col,
                                ..ops
                            },
                            mask,
                            g0,
                            g1,
                            acc2,
                            first,
                        );
                    }
                } else {
                    direct_pass::<R1, SWAP, FLIP, false>(
                        DirectOperands { a, c0: col, ..ops },
                        mask,
                        g0,
                        g1,
                        acc1,
                        first,
                    );
                    if R2 > 0 {
                        direct_pass::<R2, SWAP, FLIP, false>(
                            DirectOperands {
                                a: a2,
                                c0: col,
                                ..ops
                            },
                            mask,
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

/// The operands of [`direct_finish`] for one output row.
pub(super) struct FinishRow<'a> {
    /// The row's partial sums (slot order).
    pub acc: *const i32,
    /// The column sums row (slot order), or null.
    pub sums: *const i32,
    /// `a'` of the row.
    pub a_prime: i32,
    /// `b'` per column, or `None`: `b_prime0` for all.
    pub b_prime: Option<&'a [i32]>,
    pub b_prime0: i32,
    /// `rowsum(X_A) - K a'` of the row.
    pub row_r: i32,
    pub out: *mut i32,
    pub nc: usize,
}

/// One output row of the direct path: `out[c] = acc[c] - ap * sums[c] - b'[c] * rr` for
/// `c < nc`, with `acc` / `sums` in the slot order of [`interleave4`] (panel by panel) and
/// `b'[c] = bp[c]` (per column) or `bp0`. `sums` null: no `ap` term.
///
/// # Safety
/// avx512f; `acc` (and `sums` unless null) readable for `nc` rounded up to 64 values; `bp`
/// (when given) holds `nc` values; `out` writable for `nc` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn direct_finish(row: FinishRow) {
    let FinishRow {
        acc,
        sums,
        a_prime: ap,
        b_prime: bp,
        b_prime0: bp0,
        row_r: rr,
        out,
        nc,
    } = row;
    // Lines in slot order -> columns in order: a 4 x 4 transpose of 128-bit lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn unslot(v: [__m512i; 4]) -> [__m512i; 4] {
        let t0 = _mm512_shuffle_i64x2::<0x44>(v[0], v[1]);
        let t1 = _mm512_shuffle_i64x2::<0xEE>(v[0], v[1]);
        let t2 = _mm512_shuffle_i64x2::<0x44>(v[2], v[3]);
        let t3 = _mm512_shuffle_i64x2::<0xEE>(v[2], v[3]);
        [
            _mm512_shuffle_i64x2::<0x88>(t0, t2),
            _mm512_shuffle_i64x2::<0xDD>(t0, t2),
            _mm512_shuffle_i64x2::<0x88>(t1, t3),
            _mm512_shuffle_i64x2::<0xDD>(t1, t3),
        ]
    }
    let (vap, vrr, vbp0) = (
        _mm512_set1_epi32(ap),
        _mm512_set1_epi32(rr),
        _mm512_set1_epi32(bp0),
    );
    for p in 0..nc.div_ceil(PANEL) {
        // SAFETY: slots 64p..64p+64 of `acc` / `sums` (caller contract); columns of
        // `bp` and `out` below nc (masked).
        unsafe {
            let load4 = |s: *const i32| {
                let mut v = [_mm512_setzero_si512(); 4];
                for (j, x) in v.iter_mut().enumerate() {
                    *x = _mm512_loadu_si512(s.add(p * PANEL + 16 * j).cast());
                }
                unslot(v)
            };
            let c = load4(acc);
            let s = if sums.is_null() {
                [_mm512_setzero_si512(); 4]
            } else {
                load4(sums)
            };
            for j in 0..4 {
                let c0 = p * PANEL + 16 * j;
                if c0 >= nc {
                    break;
                }
                let mask: __mmask16 = if nc - c0 >= 16 {
                    !0
                } else {
                    (1u16 << (nc - c0)) - 1
                };
                let b = match bp {
                    Some(bp) => _mm512_maskz_loadu_epi32(mask, bp.as_ptr().add(c0).cast()),
                    None => vbp0,
                };
                let o = _mm512_sub_epi32(
                    _mm512_sub_epi32(c[j], _mm512_mullo_epi32(vap, s[j])),
                    _mm512_mullo_epi32(b, vrr),
                );
                if mask == !0 {
                    _mm512_storeu_si512(out.add(c0).cast(), o);
                } else {
                    _mm512_mask_storeu_epi32(out.add(c0).cast(), mask, o);
                }
            }
        }
    }
}
