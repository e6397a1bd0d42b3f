//! Small M with a plain (unpacked) B: multiply straight from B's row-major bytes.
//!
//! Packing B costs a pass that reads and writes all of it (3.1 ms for 4096 x 4096 on one Zen 5
//! core) while the product at M = 1 reads B once (0.4 ms); so up to [`DIRECT_ROWS`] rows the
//! AVX-512 kernel [`super::avx512::direct_block`] interleaves each 4-row x 64-column block of B
//! in registers and feeds it to `vpdpbusd` directly (column sums, when needed, as one more row
//! of A, all ones), and this driver adds the zero-point terms, with the operands' sides chosen
//! so that no zero point means no column sums (see `matmul_into`):
//! `C = X_A @ X_B - a'[m] colsum(X_B)[n] - b'[n] (rowsum(X_A)[m] - K a'[m])`, in wrapping int32.
//! The semantics are the scalar twin's (`scalar::matmul`); `tests.rs` checks every unpacked
//! call against it on every ISA.

use super::avx512::{direct_block, direct_finish, ACC_STRIDE, DIRECT_COLS, DIRECT_PASS_ROWS};
use super::pack::{SyncPtr, PANEL};
use super::{check_zero_points, Dtype, Lhs};
use crate::error::Result;

/// Largest M multiplied from unpacked B without packing it: row chunks of up to 10 rows
/// (with the ones row), each one pass over B. Measured on one Zen 5 core, 4096 x 4096 int8 B,
/// against packing + the packed kernels (A/B in alternating processes): M = 8 1.90 vs 1.98 ms
/// (the same path), 9 2.28 vs 3.94, 12 3.03 vs 4.52, 16 3.13 vs 4.79; 2 threads, M = 16 2.58 vs
/// 3.19; beyond 16 rows packing B once pays for itself.
pub(super) const DIRECT_ROWS: usize = 16;

/// `(A - a_zp) @ (B - b_zp)` for `1 <= a.rows <= DIRECT_ROWS`, B row-major (K x N) bytes of
/// `b_dtype`, into `out` (M x N, every element written). Validates like the packed path.
///
/// # Safety
/// The CPU supports the Avx512 level (avx512f/bw/vl/vnni/vbmi).
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul_into(
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
    // point (flipping int8 A to uint8 instead makes `a' = 128` and needs it always).
    // Either way, with X the bytes as the kernel reads them:
    // `C = X_A @ X_B - a'[m] colsum(X_B)[n] - b'[n] (rowsum(X_A)[m] - K a'[m])`.
    let swap = a.dtype == Dtype::I8;
    let flip_b = (b_dtype == Dtype::I8) == swap;
    let b_off = match (swap, b_dtype) {
        (false, Dtype::U8) => -128,
        (true, Dtype::I8) => 128,
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
    // Row chunks of at most two register passes (2 DIRECT_PASS_ROWS rows), each one pass
    // over B's bytes; a pass holds up to DIRECT_PASS_ROWS rows, two are of near-equal height.
    let chunks = rows.div_ceil(2 * DIRECT_PASS_ROWS);
    let chunk_rows = rows.div_ceil(chunks);
    let passes = |h: usize| {
        if h <= DIRECT_PASS_ROWS {
            (h, 0)
        } else {
            (h.div_ceil(2), h / 2)
        }
    };

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
                    // SAFETY: r0 < rows rows of kp bytes in Au and of ACC_STRIDE in `acc`.
                    let (ap, accr) = unsafe {
                        (
                            au.as_ptr().add(r0 * kp),
                            &mut acc[r0 * ACC_STRIDE..(r0 + r1 + r2) * ACC_STRIDE],
                        )
                    };
                    macro_rules! block {
                        ($r1:literal, $r2:literal) => {
                            // SAFETY: Avx512 level (caller contract); Au holds r1 + r2 rows of
                            // kp bytes from row r0 (kp = K rounded up to 4, zero padded); B is
                            // K x n bytes with c0 + nc <= n, 1 <= nc <= DIRECT_COLS; `accr`
                            // holds r1 + r2 rows of ACC_STRIDE; r1, r2 <= DIRECT_PASS_ROWS.
                            unsafe {
                                match (swap, flip_b) {
                                    (false, false) => direct_block::<$r1, $r2, false, false>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (false, true) => direct_block::<$r1, $r2, false, true>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (true, false) => direct_block::<$r1, $r2, true, false>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                    (true, true) => direct_block::<$r1, $r2, true, true>(
                                        ap, kp, bp, k, n, c0, nc, accr,
                                    ),
                                }
                            }
                        };
                    }
                    match (r1, r2) {
                        (1, 0) => block!(1, 0),
                        (2, 0) => block!(2, 0),
                        (3, 0) => block!(3, 0),
                        (4, 0) => block!(4, 0),
                        (5, 0) => block!(5, 0),
                        (3, 3) => block!(3, 3),
                        (4, 3) => block!(4, 3),
                        (4, 4) => block!(4, 4),
                        (5, 4) => block!(5, 4),
                        _ => block!(5, 5),
                    }
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
                        direct_finish(
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
