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
    DirectOperands, Dtype, Lhs, Rhs, SyncPtr, ACC_STRIDE, AVX_VNNI_DIRECT_ROWS, DIRECT_COLS,
    DIRECT_ROWS, PANEL,
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
    let ops = DirectOperands {
        a: ap,
        lda: kp,
        b: bp,
        k,
        n,
        c0,
        nc,
    };
    let ops16 = DirectOperands {
        a: ap16,
        lda: kp / 2,
        b: bp,
        k,
        n,
        c0,
        nc,
    };
    macro_rules! avx512 {
        ($r1:literal, $r2:literal) => {
            // SAFETY: Avx512 level (caller contract); Au holds r1 + r2 rows of
            // kp bytes from row r0 (kp = K rounded up to 4, zero padded); B is
            // K x n bytes with c0 + nc <= n, 1 <= nc <= DIRECT_COLS; `accr`
            // holds r1 + r2 rows of ACC_STRIDE; r1, r2 <= 5.
            unsafe {
                match (swap, flip_b) {
                    (false, false) => avx512::direct_block::<$r1, $r2, false, false>(ops, accr),
                    (false, true) => avx512::direct_block::<$r1, $r2, false, true>(ops, accr),
                    (true, false) => avx512::direct_block::<$r1, $r2, true, false>(ops, accr),
                    (true, true) => avx512::direct_block::<$r1, $r2, true, true>(ops, accr),
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
                    avx2::direct_block::<$r1, $r2, true>(ops16, accr)
                } else {
                    avx2::direct_block::<$r1, $r2, false>(ops16, accr)
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
                    (false, false) => avxvnni::$f::<$r1, $r2, false, false>(ops, accr),
                    (false, true) => avxvnni::$f::<$r1, $r2, false, true>(ops, accr),
                    (true, false) => avxvnni::$f::<$r1, $r2, true, false>(ops, accr),
                    (true, true) => avxvnni::$f::<$r1, $r2, true, true>(ops, accr),
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

/// A as the direct kernels read it and the zero-point terms of the epilogue (see
/// [`Prepared::new`]).
struct Prepared {
    /// M.
    m: usize,
    /// K and K rounded up to 4.
    k: usize,
    kp: usize,
    /// Rows the kernels multiply: M, plus the all-ones row when column sums are needed.
    rows: usize,
    /// A's rows padded with zeros to kp, then the ones row (the VNNI kernels).
    au: Vec<u8>,
    /// The same as int16 pairs of true values (the AVX2 kernel).
    a16: Vec<i32>,
    /// `a'` per row.
    a_prime: Vec<i32>,
    /// `b'` per column (a per-column zero point), or `None`: `b_prime0` for all.
    b_prime: Option<Vec<i32>>,
    b_prime0: i32,
    /// `rowsum(X_A) - K a'` per row, the factor of `b'[n]`.
    row_r: Vec<i32>,
    /// The ones row is there (some `a'` is not 0).
    sums: bool,
    /// The kernel's operand sides and B's treatment ([`Pass`]).
    swap: bool,
    flip_b: bool,
    sb: bool,
    /// The kernel leaves its sums in column order (else the slot order of AVX-512).
    col_order: bool,
}

impl Prepared {
    /// `vpdpbusd` multiplies unsigned by signed bytes. uint8 A is the unsigned side (as in the
    /// packed path): `Bs = B - 128 (B ^ 0x80)` for uint8 B, `a' = a_zp`, `b' = b_zp - 128`.
    /// int8 A is the signed side, as it is, and B the unsigned: `Bu = B + 128 (B ^ 0x80)` for
    /// int8 B, `a' = a_zp`, `b' = b_zp + 128`; so neither needs colsum(B) unless A has a zero
    /// point (flipping int8 A to uint8 instead makes `a' = 128` and needs it always). The AVX2
    /// kernel widens both to int16: true values, `b' = b_zp`.
    /// Either way, with X the values as the kernel reads them:
    /// `C = X_A @ X_B - a'[m] colsum(X_B)[n] - b'[n] (rowsum(X_A)[m] - K a'[m])`.
    fn new(kernel: GemmDirect, a: &Lhs, za: &[i32], b_dtype: Dtype, zb: &[i32]) -> Prepared {
        let (m, k) = (a.rows, a.k);
        let kp = k.div_ceil(4) * 4;
        let zp = |z: &[i32], i: usize| match z.len() {
            0 => 0,
            1 => z[0],
            _ => z[i],
        };
        let wide = kernel == GemmDirect::Avx2;
        // The AVX-512 kernel leaves its sums in slot order (finished by `direct_finish`), the
        // ymm ones in column order (finished in Rust, `finish_columns`).
        let col_order = kernel != GemmDirect::Avx512;
        let swap = !wide && a.dtype == Dtype::I8;
        let flip_b = !wide && ((b_dtype == Dtype::I8) == swap);
        let b_off = match (wide, swap, b_dtype) {
            (false, false, Dtype::U8) => -128,
            (false, true, Dtype::I8) => 128,
            _ => 0,
        };
        let a_prime: Vec<i32> = (0..m).map(|r| zp(za, r)).collect();
        let b_prime = (zb.len() > 1).then(|| zb.iter().map(|&z| z + b_off).collect());
        let b_prime0 = zp(zb, 0) + b_off;
        // colsum(X_B) is needed only when some a' is not 0: then it is one more row of A, all
        // ones.
        let sums = a_prime.iter().any(|&v| v != 0);
        let rows = m + sums as usize;
        let mut au = vec![0u8; rows * kp];
        for (dst, src) in au.chunks_exact_mut(kp).zip(a.data.chunks_exact(k)) {
            dst[..k].copy_from_slice(src);
        }
        if sums {
            au[m * kp..m * kp + k].fill(1);
        }
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
        Prepared {
            m,
            k,
            kp,
            rows,
            au,
            a16,
            a_prime,
            b_prime,
            b_prime0,
            row_r,
            sums,
            swap,
            flip_b,
            sb: b_dtype == Dtype::I8,
            col_order,
        }
    }
}

/// Row chunks of at most two register passes of `kernel`, each one pass over B's bytes: the
/// chunk height and the split of a chunk of `h` rows into its passes (two of near-equal
/// height).
fn chunking(kernel: GemmDirect, rows: usize) -> (usize, impl Fn(usize) -> (usize, usize)) {
    let pass_rows = pass_rows(kernel);
    let chunks = rows.div_ceil(2 * pass_rows);
    let passes = move |h: usize| {
        if h <= pass_rows {
            (h, 0)
        } else {
            (h.div_ceil(2), h / 2)
        }
    };
    (rows.div_ceil(chunks), passes)
}

/// Columns `c0..c0 + nc` of the output from the partial sums `acc` in column order (the ymm
/// kernels): `out[r, c] = acc[r, c] - a'[r] colsum[c] - b'[c] row_r[r]`.
///
/// # Safety
/// `out` is the M x n output; columns `c0..c0 + nc` of it are written by this call alone.
unsafe fn finish_columns(
    p: &Prepared,
    acc: &[i32],
    c0: usize,
    nc: usize,
    out: SyncPtr<i32>,
    n: usize,
) {
    let m = p.m;
    for r in 0..m {
        let (ap, rr) = (p.a_prime[r], p.row_r[r]);
        let accr = &acc[r * ACC_STRIDE..r * ACC_STRIDE + nc];
        let srow = &acc[m * ACC_STRIDE..m * ACC_STRIDE + if p.sums { nc } else { 0 }];
        // SAFETY: row r < m, columns c0..c0+nc <= n of the m x n output (caller contract).
        let orow = unsafe { std::slice::from_raw_parts_mut(out.get().add(r * n + c0), nc) };
        for (c, (o, &x)) in orow.iter_mut().zip(accr).enumerate() {
            let s = if p.sums { srow[c] } else { 0 };
            let bpc = p.b_prime.as_ref().map_or(p.b_prime0, |v| v[c0 + c]);
            *o = x
                .wrapping_sub(ap.wrapping_mul(s))
                .wrapping_sub(bpc.wrapping_mul(rr));
        }
    }
}

/// Columns `c0..c0 + nc` of the output from the partial sums `acc` in the slot order of the
/// AVX-512 kernel ([`avx512::direct_finish`]).
///
/// # Safety
/// The CPU supports avx512f; `out` is the M x n output, columns `c0..c0 + nc` of it written by
/// this call alone.
unsafe fn finish_slots(
    p: &Prepared,
    acc: &[i32],
    c0: usize,
    nc: usize,
    out: SyncPtr<i32>,
    n: usize,
) {
    let sum_row = if p.sums {
        acc[p.m * ACC_STRIDE..].as_ptr()
    } else {
        std::ptr::null()
    };
    for r in 0..p.m {
        // SAFETY: avx512f (caller contract); row r of `acc` holds nc slots rounded up to 64 (as
        // does the sums row); row r < m, columns c0..c0+nc <= n of the m x n output, written
        // by this call alone; `b_prime` has nc values.
        unsafe {
            avx512::direct_finish(avx512::FinishRow {
                acc: acc[r * ACC_STRIDE..].as_ptr(),
                sums: sum_row,
                a_prime: p.a_prime[r],
                b_prime: p.b_prime.as_deref().map(|v| &v[c0..c0 + nc]),
                b_prime0: p.b_prime0,
                row_r: p.row_r[r],
                out: out.get().add(r * n + c0),
                nc,
            })
        };
    }
}

/// `(A - a_zp) @ (B - b_zp)` for `1 <= a.rows <= DIRECT_ROWS`, B row-major (K x N) bytes of
/// `b_dtype`, into `out` (M x N, every element written). Validates like the packed path.
///
/// # Safety
/// The CPU supports `kernel`'s level: Avx512 (avx512f/bw/vl/vnni/vbmi), Avx2, AvxVnni (avx2 +
/// avxvnni) or, in tests, AvxVnniViaVl (avx2 + avx512f/vl/vnni).
pub(super) unsafe fn matmul_into(
    kernel: GemmDirect,
    a: &Lhs,
    a_zp: &[i64],
    b: &Rhs,
    out: &mut [i32],
) -> Result<()> {
    let (k, n) = (b.k, b.n);
    let zb = check_b(b.data, k, n, b.dtype, b.zero_point)?;
    let za = check_zero_points("a_zero_point", a_zp, a.rows, "row of `a`", a.dtype)?;
    check_k_parts(a, &za, k, b.dtype, &zb)?;
    if Some(out.len()) != a.rows.checked_mul(n) {
        return Err(crate::error::Error::arg(format!(
            "`out` holds {} elements, expected M*N = {}*{n}",
            out.len(),
            a.rows
        )));
    }
    debug_assert!(a.rows >= 1 && a.rows <= DIRECT_ROWS && k >= 1 && n >= 1);
    let p = Prepared::new(kernel, a, &za, b.dtype, &zb);
    let (rows, kp) = (p.rows, p.kp);
    let (chunk_rows, passes) = chunking(kernel, rows);
    let out = SyncPtr(out.as_mut_ptr());
    let work = (a.rows as u64) * (k as u64) * (n as u64);
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
            for r0 in (0..rows).step_by(chunk_rows) {
                let (r1, r2) = passes((rows - r0).min(chunk_rows));
                let pass_args = Pass {
                    // (A from row r0: bytes for the VNNI kernels, int16 pairs for AVX2)
                    a: p.au[r0 * kp..].as_ptr(),
                    a16: p.a16[(r0 * kp / 2).min(p.a16.len())..].as_ptr(),
                    kp,
                    b: b.data.as_ptr(),
                    k: p.k,
                    n,
                    c0,
                    nc,
                    r1,
                    r2,
                    swap: p.swap,
                    flip_b: p.flip_b,
                    sb: p.sb,
                    acc: &mut acc[r0 * ACC_STRIDE..(r0 + r1 + r2) * ACC_STRIDE],
                };
                // SAFETY: the CPU supports `kernel` (caller contract); A holds rows
                // r0..r0 + r1 + r2 (bytes and int16 pairs, zero padded to kp); c0 + nc <= n,
                // 1 <= nc <= DIRECT_COLS; `acc` holds r1 + r2 rows; (r1, r2) from `passes`.
                unsafe { pass(kernel, pass_args) };
            }
            // SAFETY: column blocks are disjoint between chunks; the AVX-512 kernel (slot
            // order) runs only where the CPU has avx512f (caller contract).
            unsafe {
                if p.col_order {
                    finish_columns(&p, &acc, c0, nc, out, n);
                } else {
                    finish_slots(&p, &acc, c0, nc, out, n);
                }
            }
        }
    });
    Ok(())
}
