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

use super::checks::{check_b, check_k_parts, check_zero_points};
use super::layout::{
    Dtype, Lhs, SyncPtr, ACC_STRIDE, AVX_VNNI_DIRECT_ROWS, DIRECT_COLS, DIRECT_ROWS, PANEL,
};
use super::{avx2, avx512, avxvnni};
use crate::error::Result;
use crate::kernels::isa::GemmDirect;

/// Up to how many rows of A `kernel` beats packing B first.
pub(super) fn max_rows(kernel: GemmDirect) -> usize {
    match kernel {
        GemmDirect::Avx512 | GemmDirect::Avx2 => DIRECT_ROWS,
        GemmDirect::AvxVnni => AVX_VNNI_DIRECT_ROWS,
        #[cfg(test)]
        GemmDirect::AvxVnniViaVl => AVX_VNNI_DIRECT_ROWS,
    }
}

/// Most rows one register pass of `kernel` holds: 5 x 4 zmm of the 32, 4 x 2 ymm of the 16.
fn pass_rows(kernel: GemmDirect) -> usize {
    match kernel {
        GemmDirect::Avx512 => 5,
        GemmDirect::Avx2 | GemmDirect::AvxVnni => 4,
        #[cfg(test)]
        GemmDirect::AvxVnniViaVl => 4,
    }
}

/// One call of a direct kernel: rows `r1 + r2` (two register passes) of A times the columns
/// `c0..c0 + nc` of B, onto the partial sums `acc`.
struct Pass<'a> {
    /// A's bytes from the chunk's first row (row stride `kp`), for the VNNI kernels.
    a: *const u8,
    /// A as int16 pairs from the chunk's first row (row stride `kp / 2`), for AVX2.
    a16: *const i32,
    kp: usize,
    b: *const u8,
    k: usize,
    n: usize,
    c0: usize,
    nc: usize,
    r1: usize,
    r2: usize,
    /// The VNNI kernels: A is the signed side (int8 A), B the unsigned one.
    swap: bool,
    /// The VNNI kernels: XOR B with 0x80.
    flip_b: bool,
    /// The AVX2 kernel: B is int8.
    sb: bool,
    acc: &'a mut [i32],
}

/// Run one [`Pass`] on `kernel` (the one dispatch of the direct kernels).
///
/// # Safety
/// The CPU supports `kernel`; `p.a` (or `p.a16` for Avx2) holds `r1 + r2` rows of A from the
/// chunk's first row (`kp` = K rounded up to 4, zero padded); B is K x n bytes with `c0 + nc
/// <= n`, `1 <= nc <= DIRECT_COLS`; `acc` holds `r1 + r2` rows of ACC_STRIDE; `(r1, r2)` is
/// a split of [`pass_rows`] (`passes` in `matmul_into`).
unsafe fn pass(kernel: GemmDirect, p: Pass) {
    let Pass {
        a: ap,
        a16: ap16,
        kp,
        b: bp,
        k,
        n,
        c0,
        nc,
        r1,
        r2,
        swap,
        flip_b,
        sb,
        acc: accr,
    } = p;
    macro_rules! avx512 {
        ($r1:literal, $r2:literal) => {
            // SAFETY: Avx512 level (caller contract); Au holds r1 + r2 rows of
            // kp bytes from row r0 (kp = K rounded up to 4, zero padded); B is
            // K x n bytes with c0 + nc <= n, 1 <= nc <= DIRECT_COLS; `accr`
            // holds r1 + r2 rows of ACC_STRIDE; r1, r2 <= 5.
            unsafe {
                match (swap, flip_b) {
                    (false, false) => avx512::direct_block::<$r1, $r2, false, false>(
                        ap, kp, bp, k, n, c0, nc, accr,
                    ),
                    (false, true) => avx512::direct_block::<$r1, $r2, false, true>(
                        ap, kp, bp, k, n, c0, nc, accr,
                    ),
                    (true, false) => avx512::direct_block::<$r1, $r2, true, false>(
                        ap, kp, bp, k, n, c0, nc, accr,
                    ),
                    (true, true) => {
                        avx512::direct_block::<$r1, $r2, true, true>(ap, kp, bp, k, n, c0, nc, accr)
                    }
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
                    avx2::direct_block::<$r1, $r2, true>(ap16, kp / 2, bp, k, n, c0, nc, accr)
                } else {
                    avx2::direct_block::<$r1, $r2, false>(ap16, kp / 2, bp, k, n, c0, nc, accr)
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
                    (false, false) => {
                        avxvnni::$f::<$r1, $r2, false, false>(ap, kp, bp, k, n, c0, nc, accr)
                    }
                    (false, true) => {
                        avxvnni::$f::<$r1, $r2, false, true>(ap, kp, bp, k, n, c0, nc, accr)
                    }
                    (true, false) => {
                        avxvnni::$f::<$r1, $r2, true, false>(ap, kp, bp, k, n, c0, nc, accr)
                    }
                    (true, true) => {
                        avxvnni::$f::<$r1, $r2, true, true>(ap, kp, bp, k, n, c0, nc, accr)
                    }
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
        (GemmDirect::AvxVnni, _, _) => vnni_rows!(direct_block),
        #[cfg(test)]
        (GemmDirect::AvxVnniViaVl, _, _) => vnni_rows!(direct_block_vl),
        (GemmDirect::Avx512, 1, 0) => avx512!(1, 0),
        (GemmDirect::Avx512, 2, 0) => avx512!(2, 0),
        (GemmDirect::Avx512, 3, 0) => avx512!(3, 0),
        (GemmDirect::Avx512, 4, 0) => avx512!(4, 0),
        (GemmDirect::Avx512, 5, 0) => avx512!(5, 0),
        (GemmDirect::Avx512, 3, 3) => avx512!(3, 3),
        (GemmDirect::Avx512, 4, 3) => avx512!(4, 3),
        (GemmDirect::Avx512, 4, 4) => avx512!(4, 4),
        (GemmDirect::Avx512, 5, 4) => avx512!(5, 4),
        (GemmDirect::Avx512, _, _) => avx512!(5, 5),
        (GemmDirect::Avx2, 1, 0) => avx2!(1, 0),
        (GemmDirect::Avx2, 2, 0) => avx2!(2, 0),
        (GemmDirect::Avx2, 3, 0) => avx2!(3, 0),
        (GemmDirect::Avx2, 4, 0) => avx2!(4, 0),
        (GemmDirect::Avx2, 3, 2) => avx2!(3, 2),
        (GemmDirect::Avx2, 3, 3) => avx2!(3, 3),
        (GemmDirect::Avx2, 4, 3) => avx2!(4, 3),
        (GemmDirect::Avx2, _, _) => avx2!(4, 4),
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
    kernel: GemmDirect,
    a: &Lhs,
    a_zp: &[i64],
    b: &[u8],
    k: usize,
    n: usize,
    b_dtype: Dtype,
    b_zp: &[i64],
    out: &mut [i32],
) -> Result<()> {
    let zb = check_b(b, k, n, b_dtype, b_zp)?;
    let za = check_zero_points("a_zero_point", a_zp, a.rows, "row of `a`", a.dtype)?;
    check_k_parts(a, &za, k, b_dtype, &zb)?;
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
    let wide = kernel == GemmDirect::Avx2;
    // The AVX-512 kernel leaves its sums in slot order (finished by `direct_finish`), the
    // ymm ones in column order (finished in Rust below).
    let col_order = kernel != GemmDirect::Avx512;
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
    let pass_rows = pass_rows(kernel);
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
                    let p = Pass {
                        a: ap,
                        a16: ap16,
                        kp,
                        b: bp,
                        k,
                        n,
                        c0,
                        nc,
                        r1,
                        r2,
                        swap,
                        flip_b,
                        sb,
                        acc: accr,
                    };
                    // SAFETY: the CPU supports `kernel` (caller contract); A holds rows
                    // r0..r0 + r1 + r2 (bytes and int16 pairs, zero padded to kp); c0 + nc
                    // <= n, 1 <= nc <= DIRECT_COLS; `accr` holds r1 + r2 rows; (r1, r2)
                    // from `passes`.
                    unsafe { pass(kernel, p) };
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
