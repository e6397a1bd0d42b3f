//! Small M with a plain (unpacked) B: multiply straight from B's row-major bytes.
//!
//! Packing B costs a pass that reads and writes all of it (3.1 ms for 4096 x 4096 on one Zen 5
//! core) while the product at M = 1 reads B once (0.5 ms); so up to [`DIRECT_ROWS`] rows the
//! AVX-512 kernel [`super::avx512::direct_block`] transposes each 4-row x 64-column block of B
//! in registers and feeds it to `vpdpbusd` directly, and this driver adds the zero-point terms
//! (the same identity as the packed path, see `mod.rs`):
//! `C = Au@Bs - a'[m] colsum(Bs)[n] - b'[n] (rowsum(Au)[m] - K a'[m])`, in wrapping int32.
//! The semantics are the scalar twin's (`scalar::matmul`); `tests.rs` checks every unpacked
//! call against it on every ISA.

use super::avx512::{direct_block, ACC_STRIDE, DIRECT_COLS};
use super::pack::{SyncPtr, PANEL};
use super::{check_zero_points, Dtype, Lhs};
use crate::error::Result;

/// Largest M multiplied from unpacked B without packing it: one pass over B with up to 8 rows
/// of accumulators (128 KiB, in L2). Measured on one Zen 5 core, 4096 x 4096 int8 B, against
/// packing + the packed kernels: M = 1 0.75-1.04 vs 3.3-4.0 ms, 4 1.8-2.2 vs 3.7-4.0, 8
/// 2.9-3.0 vs 3.4-3.9, 12 (two passes) 3.9-4.8 vs 4.1, 16 4.6-5.0 vs 4.5-5.2.
pub(super) const DIRECT_ROWS: usize = 8;

/// Rows per pass over a block of B's columns (one pass: DIRECT_ROWS).
const PASS_ROWS: usize = DIRECT_ROWS;

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

    // Au = A (uint8) or A ^ 0x80 (int8), rows padded with zeros to kp.
    let flip_a = if a.dtype == Dtype::I8 { 0x80u8 } else { 0 };
    let mut au = vec![0u8; m * kp];
    for (dst, src) in au.chunks_exact_mut(kp).zip(a.data.chunks_exact(k)) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v ^ flip_a;
        }
    }
    let zp = |z: &[i32], i: usize| match z.len() {
        0 => 0,
        1 => z[0],
        _ => z[i],
    };
    let a_prime: Vec<i32> = (0..m)
        .map(|r| zp(&za, r) + if a.dtype == Dtype::I8 { 128 } else { 0 })
        .collect();
    let b_off = if b_dtype == Dtype::U8 { 128 } else { 0 };
    let b_prime: Vec<i32> = (0..n).map(|c| zp(&zb, c) - b_off).collect();
    // rowsum(Au) - K a', the factor of b'[n].
    let row_r: Vec<i32> = au
        .chunks_exact(kp)
        .zip(&a_prime)
        .map(|(row, &ap)| {
            let s = row.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32));
            s.wrapping_sub((k as i32).wrapping_mul(ap))
        })
        .collect();
    let flip_b = if b_dtype == Dtype::U8 { 0x80u8 } else { 0 };

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
            let mut acc = vec![0i32; PASS_ROWS * ACC_STRIDE];
            let mut sums = vec![0i32; DIRECT_COLS];
            for blk in b0..b1 {
                let (c0, nc) = (blk * dc, (n - blk * dc).min(dc));
                let mut r0 = 0;
                while r0 < m {
                    let rows = (m - r0).min(PASS_ROWS);
                    let s = if r0 == 0 { Some(&mut sums[..]) } else { None };
                    // SAFETY: Avx512 level (caller contract); Au rows r0..r0+rows of kp bytes;
                    // B is K x n bytes with c0 + nc <= n, 1 <= nc <= DIRECT_COLS; `acc` and
                    // `sums` have the sizes direct_block needs.
                    unsafe {
                        let (ap, bp) = (au.as_ptr().add(r0 * kp), b.as_ptr());
                        match rows {
                            1 => direct_block::<1>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                            2 => direct_block::<2>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                            3 => direct_block::<3>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                            4 => direct_block::<4>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                            5 => direct_block::<5>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                            6 => direct_block::<6>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                            7 => direct_block::<7>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                            _ => direct_block::<8>(ap, kp, bp, k, n, c0, nc, flip_b, &mut acc, s),
                        }
                    }
                    for i in 0..rows {
                        let r = r0 + i;
                        let (ap, rr) = (a_prime[r], row_r[r]);
                        let accr = &acc[i * ACC_STRIDE..i * ACC_STRIDE + nc];
                        // SAFETY: row r < m, columns c0..c0+nc <= n of the m x n output; column
                        // blocks are disjoint between chunks.
                        let orow = unsafe {
                            std::slice::from_raw_parts_mut(out.get().add(r * n + c0), nc)
                        };
                        for (c, o) in orow.iter_mut().enumerate() {
                            *o = accr[c]
                                .wrapping_sub(ap.wrapping_mul(sums[c]))
                                .wrapping_sub(b_prime[c0 + c].wrapping_mul(rr));
                        }
                    }
                    r0 += rows;
                }
            }
        });
    }
    Ok(())
}
