//! Small M with a plain (unpacked) B: multiply straight from B's row-major bytes.
//!
//! Packing B costs a pass that reads and writes all of it (1.5 ms for 4096 x 4096 on one Zen 4
//! core) while the product at M = 1 reads B once (0.4 ms); so up to [`DIRECT_ROWS`] rows the
//! kernels interleave each block of 4 rows of B in registers and multiply it directly: on
//! AVX-512 [`super::avx512::direct_block`] (`vpdpbusd` on zmm), on AVX-VNNI machines
//! [`super::avxvnni::direct_block`] (`vpdpbusd` on ymm, the same operands), on AVX2 machines
//! [`super::avx2::direct_block`] (`vpmaddwd` on bytes widened to int16). Column sums, when
//! needed, are one more row of A, all ones; this driver adds the zero-point terms, with the
//! operands' sides chosen so that no zero point means no column sums (see `matmul_into`):
//! `C = X_A @ X_B - a'[m] colsum(X_B)[n] - b'[n] (rowsum(X_A)[m] - K a'[m])`, in wrapping int32.
//! The semantics are the scalar twin's (`scalar::matmul`); `tests.rs` checks every unpacked
//! call against it on every ISA.

use super::pack::{SyncPtr, PANEL};
use super::{avx2, avx512, avxvnni};
use super::{check_zero_points, Dtype, Lhs};
use crate::error::Result;

/// Largest M multiplied from unpacked B without packing it: row chunks of up to 10 rows
/// (8 on AVX2, with the ones row), each one pass over B. Measured on one Zen 4 core,
/// 4096 x 4096 int8 B, against packing + the packed kernels (AVX-512, A/B in alternating
/// processes): M = 8 1.90 vs 1.98 ms (the same path then), 9 2.28 vs 3.94, 12 3.03 vs 4.52,
/// 16 3.13 vs 4.79; 2 threads, M = 16 2.58 vs 3.19. AVX2 (`EDGEPACK_ISA=avx2`): M = 1 0.88 vs
/// 2.34 ms, 8 3.2 vs 4.2, 16 7.0 vs 7.6. Beyond 16 rows packing B once pays for itself.
/// The kernels take up to this many rows; [`DirectKernel::max_rows`] is where each one is used.
pub(super) const DIRECT_ROWS: usize = 16;
/// [`DirectKernel::max_rows`] of the AVX-VNNI kernel: AVX-VNNI machines pack with the AVX2
/// transpose and then run a faster packed kernel than AVX2 ones, so packing wins earlier. One
/// thread, 4096 x 4096, measured through the VL encoding on this Zen 4 (`direct_throughput`):
/// direct against pack + packed, M = 8 2.67-2.79 vs 3.45-3.92 ms, 9 3.49-3.52 vs 3.68-3.71,
/// 12 4.40-4.51 vs 4.03-4.13, 16 5.39-5.45 vs 4.13-4.34. Up to 8 rows (one pass over B
/// without a zero point) the direct kernel is never the slower one.
const AVX_VNNI_DIRECT_ROWS: usize = 8;

/// Columns of B per direct block call: rows of B are read in runs of up to 4 KiB (the
/// prefetchers and DRAM pages like long runs); the partial sums of up to 9 rows (144 KiB)
/// stay in L2. Measured at M = 1 (4096 x 4096, one Zen 4 core): 1024 columns 0.54 ms, 2048
/// 0.47, 4096 0.45.
pub(super) const DIRECT_COLS: usize = 4096;
/// Row stride of the partial sums: 1 KiB past a multiple of 4 KiB, so that the rows of one
/// panel sit at different offsets modulo 4 KiB (a load that seems to alias an earlier store
/// to another row would wait for it).
pub(super) const ACC_STRIDE: usize = DIRECT_COLS + 256;
/// k-groups summed in registers between loads and stores of the partial sums. Each group
/// reads 4 rows of B at once, and more concurrent row streams read slower (new 4 KiB pages
/// every 64 lines): at M = 1, 4096 x 4096 (AVX-512), 1 group 0.55 ms, 2 groups 0.45, 4 0.78.
pub(super) const DIRECT_GROUPS: usize = 2;

/// Which direct kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DirectKernel {
    /// `vpdpbusd` on zmm (bytes as they are, one operand read as unsigned).
    Avx512,
    /// `vpmaddwd` on ymm (bytes widened to int16: true values, no offsets).
    Avx2,
    /// `vpdpbusd` on ymm, the operands of the AVX-512 kernel (AVX-VNNI without AVX-512:
    /// Alder Lake and later, Zen 5 client parts).
    AvxVnni,
    /// The AVX-VNNI kernel with the AVX-512VL encoding (tests on hosts without AVX-VNNI).
    #[cfg(test)]
    AvxVnniViaVl,
}

impl DirectKernel {
    /// Up to how many rows of A this kernel beats packing B first.
    pub(super) fn max_rows(self) -> usize {
        match self {
            DirectKernel::Avx512 | DirectKernel::Avx2 => DIRECT_ROWS,
            _ => AVX_VNNI_DIRECT_ROWS,
        }
    }
    /// Most rows one register pass holds: 5 x 4 zmm of the 32, 4 x 2 ymm of the 16.
    fn pass_rows(self) -> usize {
        match self {
            DirectKernel::Avx512 => 5,
            _ => 4,
        }
    }
}

/// `(A - a_zp) @ (B - b_zp)` for `1 <= a.rows <= DIRECT_ROWS`, B row-major (K x N) bytes of
/// `b_dtype`, into `out` (M x N, every element written). Validates like the packed path.
///
/// # Safety
/// The CPU supports `kernel`'s level: Avx512 (avx512f/bw/vl/vnni/vbmi), Avx2, AvxVnni (avx2 +
/// avxvnni) or, in tests, AvxVnniViaVl (avx2 + avx512f/vl/vnni).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul_into(
    kernel: DirectKernel,
    a: &Lhs,
    a_zp: &[i64],
    b: &[u8],
    k: usize,
    n: usize,
    b_dtype: Dtype,
    b_zp: &[i64],
    out: &mut [i32],
) -> Result<()> {
    let zb = super::check_b(b, k, n, b_dtype, b_zp)?;
    let za = check_zero_points("a_zero_point", a_zp, a.rows, "row of `a`", a.dtype)?;
    super::check_k_parts(a, &za, k, b_dtype, &zb)?;
    if Some(out.len()) != a.rows.checked_mul(n) {
        return Err(crate::error::Error::arg(format!(
            "`out` holds {} elements, expected M*N = {}*{n}",
            out.len(),
            a.rows
        )));
    }
    debug_assert!(a.rows >= 1 && a.rows <= DIRECT_ROWS && k >= 1 && n >= 1);
    let (m, kp) = (a.rows, k.div_ceil(4) * 4);

    let zp = |z: &[i32], i: usize| match z.len() {
        0 => 0,
        1 => z[0],
        _ => z[i],
    };
    // `vpdpbusd` multiplies unsigned by signed bytes. uint8 A is the unsigned side (as in the
    // packed path): `Bs = B - 128 (B ^ 0x80)` for uint8 B, `a' = a_zp`, `b' = b_zp - 128`.
    // int8 A is the signed side, as it is, and B the unsigned: `Bu = B + 128 (B ^ 0x80)` for
    // int8 B, `a' = a_zp`, `b' = b_zp + 128`; so neither needs colsum(B) unless A has a zero
    // point (flipping int8 A to uint8 instead makes `a' = 128` and needs it always). The AVX2
    // kernel widens both to int16: true values, `b' = b_zp`.
    // Either way, with X the values as the kernel reads them:
    // `C = X_A @ X_B - a'[m] colsum(X_B)[n] - b'[n] (rowsum(X_A)[m] - K a'[m])`.
    let wide = kernel == DirectKernel::Avx2;
    // The AVX-512 kernel leaves its sums in slot order (finished by `direct_finish`), the
    // ymm ones in column order (finished in Rust below).
    let col_order = kernel != DirectKernel::Avx512;
    let swap = !wide && a.dtype == Dtype::I8;
    let flip_b = !wide && ((b_dtype == Dtype::I8) == swap);
    let b_off = match (wide, swap, b_dtype) {
        (false, false, Dtype::U8) => -128,
        (false, true, Dtype::I8) => 128,
        _ => 0,
    };
    let a_prime: Vec<i32> = (0..m).map(|r| zp(&za, r)).collect();
    // b' per column (a per-column zero point) or one value.
    let b_prime: Option<Vec<i32>> = (zb.len() > 1).then(|| zb.iter().map(|&z| z + b_off).collect());
    let b_prime0 = zp(&zb, 0) + b_off;
    // colsum(X_B) is needed only when some a' is not 0: then it is one more row of A, all ones.
    let sums = a_prime.iter().any(|&v| v != 0);
    let rows = m + sums as usize;

    // A's rows padded with zeros to kp, then the ones row.
    let mut au = vec![0u8; rows * kp];
    for (dst, src) in au.chunks_exact_mut(kp).zip(a.data.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
    }
    if sums {
        au[m * kp..m * kp + k].fill(1);
    }
    // rowsum(X_A) - K a', the factor of b'[n].
    let row_r: Vec<i32> = au
        .chunks_exact(kp)
        .zip(&a_prime)
        .map(|(row, &ap)| {
            let s = row
                .iter()
                .fold(0i32, |s, &v| s.wrapping_add(a.dtype.value(v)));
            s.wrapping_sub((k as i32).wrapping_mul(ap))
        })
        .collect();
    // The AVX2 kernel reads A as int16 pairs of true values.
    let a16: Vec<i32> = if wide {
        au.chunks_exact(2)
            .map(|p| {
                let h = |v: u8| a.dtype.value(v) as i16 as u16 as u32;
                (h(p[0]) | h(p[1]) << 16) as i32
            })
            .collect()
    } else {
        Vec::new()
    };
    // Row chunks of at most two register passes, each one pass over B's bytes; a pass holds
    // up to pass_rows rows, two are of near-equal height.
    let pass_rows = kernel.pass_rows();
    let chunks = rows.div_ceil(2 * pass_rows);
    let chunk_rows = rows.div_ceil(chunks);
    let passes = |h: usize| {
        if h <= pass_rows {
            (h, 0)
        } else {
            (h.div_ceil(2), h / 2)
        }
    };
    let sb = b_dtype == Dtype::I8;

    {
        let out = SyncPtr(out.as_mut_ptr());
        let work = (m as u64) * (k as u64) * (n as u64);
        let threads = if work < (1 << 22) {
            1
        } else {
            crate::parallel::num_threads()
        };
        // Column blocks of at most DIRECT_COLS, at least one per thread.
        let dc = DIRECT_COLS.min(n.div_ceil(threads).div_ceil(PANEL) * PANEL);
        let blocks = n.div_ceil(dc);
        let min_chunk = if threads == 1 { usize::MAX } else { 1 };
        crate::parallel::for_chunks(blocks, min_chunk, |b0, b1| {
            let mut acc = vec![0i32; rows * ACC_STRIDE];
            for blk in b0..b1 {
                let (c0, nc) = (blk * dc, (n - blk * dc).min(dc));
                let bp = b.as_ptr();
                for r0 in (0..rows).step_by(chunk_rows) {
                    let (r1, r2) = passes((rows - r0).min(chunk_rows));
                    let accr = &mut acc[r0 * ACC_STRIDE..(r0 + r1 + r2) * ACC_STRIDE];
                    // (A from row r0: bytes for AVX-512, int16 pairs for AVX2)
                    let ap = au[r0 * kp..].as_ptr();
                    let ap16 = a16[(r0 * kp / 2).min(a16.len())..].as_ptr();
                    macro_rules! avx512 {
                        ($r1:literal, $r2:literal) => {
                            // SAFETY: Avx512 level (caller contract); Au holds r1 + r2 rows of
                            // kp bytes from row r0 (kp = K rounded up to 4, zero padded); B is
                            // K x n bytes with c0 + nc <= n, 1 <= nc <= DIRECT_COLS; `accr`
                            // holds r1 + r2 rows of ACC_STRIDE; r1, r2 <= 5.
                            unsafe {
                                match (swap, flip_b) {
                                    (false, false) => {
                                        avx512::direct_block::<$r1, $r2, false, false>(
                                            ap, kp, bp, k, n, c0, nc, accr,
                                        )
                                    }
                                    (false, true) => avx512::direct_block::<$r1, $r2, false, true>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (true, false) => avx512::direct_block::<$r1, $r2, true, false>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (true, true) => avx512::direct_block::<$r1, $r2, true, true>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                }
                            }
                        };
                    }
                    macro_rules! avx2 {
                        ($r1:literal, $r2:literal) => {
                            // SAFETY: Avx2 level (caller contract); `a16` holds r1 + r2 rows of
                            // kp / 2 pairs from row r0 (zero padded); B as above; `accr` holds
                            // r1 + r2 rows of ACC_STRIDE; r1, r2 <= 4.
                            unsafe {
                                if sb {
                                    avx2::direct_block::<$r1, $r2, true>(
                                        ap16,
                                        kp / 2,
                                        bp,
                                        k,
                                        n,
                                        c0,
                                        nc,
                                        accr,
                                    )
                                } else {
                                    avx2::direct_block::<$r1, $r2, false>(
                                        ap16,
                                        kp / 2,
                                        bp,
                                        k,
                                        n,
                                        c0,
                                        nc,
                                        accr,
                                    )
                                }
                            }
                        };
                    }
                    macro_rules! vnni {
                        ($f:ident, $r1:literal, $r2:literal) => {
                            // SAFETY: AvxVnni (or, in tests, AvxVnniViaVl) level (caller
                            // contract); A, B and `accr` as for avx512!; r1, r2 <= 4.
                            unsafe {
                                match (swap, flip_b) {
                                    (false, false) => avxvnni::$f::<$r1, $r2, false, false>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (false, true) => avxvnni::$f::<$r1, $r2, false, true>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (true, false) => avxvnni::$f::<$r1, $r2, true, false>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (true, true) => avxvnni::$f::<$r1, $r2, true, true>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                }
                            }
                        };
                    }
                    macro_rules! vnni_rows {
                        ($f:ident) => {
                            match (r1, r2) {
                                (1, 0) => vnni!($f, 1, 0),
                                (2, 0) => vnni!($f, 2, 0),
                                (3, 0) => vnni!($f, 3, 0),
                                (4, 0) => vnni!($f, 4, 0),
                                (3, 2) => vnni!($f, 3, 2),
                                (3, 3) => vnni!($f, 3, 3),
                                (4, 3) => vnni!($f, 4, 3),
                                _ => vnni!($f, 4, 4),
                            }
                        };
                    }
                    match (kernel, r1, r2) {
                        (DirectKernel::AvxVnni, _, _) => vnni_rows!(direct_block),
                        #[cfg(test)]
                        (DirectKernel::AvxVnniViaVl, _, _) => vnni_rows!(direct_block_vl),
                        (DirectKernel::Avx512, 1, 0) => avx512!(1, 0),
                        (DirectKernel::Avx512, 2, 0) => avx512!(2, 0),
                        (DirectKernel::Avx512, 3, 0) => avx512!(3, 0),
                        (DirectKernel::Avx512, 4, 0) => avx512!(4, 0),
                        (DirectKernel::Avx512, 5, 0) => avx512!(5, 0),
                        (DirectKernel::Avx512, 3, 3) => avx512!(3, 3),
                        (DirectKernel::Avx512, 4, 3) => avx512!(4, 3),
                        (DirectKernel::Avx512, 4, 4) => avx512!(4, 4),
                        (DirectKernel::Avx512, 5, 4) => avx512!(5, 4),
                        (DirectKernel::Avx512, _, _) => avx512!(5, 5),
                        (DirectKernel::Avx2, 1, 0) => avx2!(1, 0),
                        (DirectKernel::Avx2, 2, 0) => avx2!(2, 0),
                        (DirectKernel::Avx2, 3, 0) => avx2!(3, 0),
                        (DirectKernel::Avx2, 4, 0) => avx2!(4, 0),
                        (DirectKernel::Avx2, 3, 2) => avx2!(3, 2),
                        (DirectKernel::Avx2, 3, 3) => avx2!(3, 3),
                        (DirectKernel::Avx2, 4, 3) => avx2!(4, 3),
                        (DirectKernel::Avx2, _, _) => avx2!(4, 4),
                    }
                }
                if col_order {
                    // Partial sums in column order: the epilogue in Rust.
                    for r in 0..m {
                        let (ap, rr) = (a_prime[r], row_r[r]);
                        let accr = &acc[r * ACC_STRIDE..r * ACC_STRIDE + nc];
                        let srow = &acc[m * ACC_STRIDE..m * ACC_STRIDE + if sums { nc } else { 0 }];
                        // SAFETY: row r < m, columns c0..c0+nc <= n of the m x n output;
                        // column blocks are disjoint between chunks.
                        let orow = unsafe {
                            std::slice::from_raw_parts_mut(out.get().add(r * n + c0), nc)
                        };
                        for (c, (o, &x)) in orow.iter_mut().zip(accr).enumerate() {
                            let s = if sums { srow[c] } else { 0 };
                            let bpc = b_prime.as_ref().map_or(b_prime0, |v| v[c0 + c]);
                            *o = x
                                .wrapping_sub(ap.wrapping_mul(s))
                                .wrapping_sub(bpc.wrapping_mul(rr));
                        }
                    }
                    continue;
                }
                let sum_row = if sums {
                    acc[m * ACC_STRIDE..].as_ptr()
                } else {
                    std::ptr::null()
                };
                for r in 0..m {
                    // SAFETY: Avx512 level; row r of `acc` holds nc slots rounded up to 64 (as
                    // does the sums row); row r < m, columns c0..c0+nc <= n of the m x n
                    // output, column blocks disjoint between chunks; `bp` has nc values.
                    unsafe {
                        avx512::direct_finish(
                            acc[r * ACC_STRIDE..].as_ptr(),
                            sum_row,
                            a_prime[r],
                            b_prime.as_deref().map(|v| &v[c0..c0 + nc]),
                            b_prime0,
                            row_r[r],
                            out.get().add(r * n + c0),
                            nc,
                        )
                    };
                }
            }
        });
    }
    Ok(())
}
