//! int8 matrix multiplication: ONNX `MatMulInteger` / `QLinearMatMul` semantics and the fused
//! float epilogue of `QuantizedLinear`.
//!
//! `C = (A - a_zp) @ (B - b_zp)` with A (M, K) and B (K, N) int8 or uint8, computed in wrapping
//! int32 arithmetic, so it equals the int64 product whenever that fits in int32; [`k_limit`]
//! gives the largest K for which that is guaranteed for the operands' dtypes and zero points,
//! and every entry refuses a larger K.
//!
//! How the kernels get there (`vpdpbusd` multiplies uint8 by int8):
//! * A is read as unsigned `Au = A` (uint8) or `Au = A ^ 0x80 = A + 128` (int8), so
//!   `A - a_zp = Au - a'` with `a' = a_zp + (128 if int8 else 0)`;
//! * B is packed as signed `Bs` ([`pack`]), so `B - b_zp = Bs - b'` with
//!   `b' = b_zp - (128 if uint8 else 0)`;
//! * `C = Au@Bs - a'[m] colsum(Bs)[n] - b'[n] rowsum(Au)[m] + K a'[m] b'[n]`: the microkernels
//!   compute `Au@Bs`, the epilogue adds the rest (and a bias, and the float or requantizing
//!   output transform) per tile, while the tile is in L1.
//!
//! `scalar.rs` holds the twin that defines the semantics on plain B and the portable path;
//! `avx512.rs` (VNNI, zmm), `avxvnni.rs` (VNNI, ymm) and `avx2.rs` (exact int16 products with
//! `vpmaddwd`) the SIMD ones; `direct.rs` drives the plain-B kernels for small M.

mod blocking;
mod checks;
mod epilogue;
mod layout;
pub mod linear;
pub mod pack;
mod packed;
mod plan;
pub mod scalar;
mod scratch;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avxvnni;
#[cfg(target_arch = "x86_64")]
mod direct;

#[cfg(test)]
mod tests;

pub use checks::k_limit;
pub use layout::{Dtype, Lhs, Rhs};
pub use pack::PackedMatrix;

use checks::{check_k_parts, check_scale, check_zero_points};
use epilogue::Out;
use layout::SyncPtr;
use plan::execute;
use scratch::{alloc_output, zeroed_output};

use crate::bail_arg;
use crate::error::Result;
use crate::kernels::isa::{self, Isa};

/// A against packed B: K agrees, A's length, the exact-int32 K limit.
fn check_k(a: &Lhs, a_zp: &[i32], b: &PackedMatrix) -> Result<()> {
    check_k_parts(a, a_zp, b.k(), b.dtype(), b.zero_point())
}

fn validate(a: &Lhs, a_zp: &[i64], b: &PackedMatrix) -> Result<Vec<i32>> {
    let zp = check_zero_points("a_zero_point", a_zp, a.rows, "row of `a`", a.dtype)?;
    check_k(a, &zp, b)?;
    Ok(zp)
}

/// The float32 epilogue of [`matmul_scaled_with`]:
/// `float32(C + bias_i32[n]) * (row_scale[m] * col_scale[n]) (+ bias[n])`.
#[derive(Clone, Copy, Debug)]
pub struct Scaled<'a> {
    /// 1 or M values.
    pub row_scale: &'a [f32],
    /// N values.
    pub col_scale: &'a [f32],
    /// N values added to C before the conversion, or none.
    pub bias_i32: Option<&'a [i32]>,
    /// N values added after the scaling, or none.
    pub bias: Option<&'a [f32]>,
}

/// The requantizing epilogue of [`matmul_requant_into_with`]:
/// `clamp(rint(float32(C + bias_i32[n]) * mult[n]) + zero_point)` as `dtype` bytes.
#[derive(Clone, Copy, Debug)]
pub struct Requant<'a> {
    /// N values.
    pub mult: &'a [f32],
    /// N values, or none.
    pub bias_i32: Option<&'a [i32]>,
    /// The output zero point, within `dtype`'s range.
    pub zero_point: i64,
    /// The output type.
    pub dtype: Dtype,
}

/// The quantization parameters of ONNX `QLinearMatMul` ([`qlinear_matmul_into_with`]).
#[derive(Clone, Copy, Debug)]
pub struct QLinear<'a> {
    /// A's scale.
    pub a_scale: f32,
    /// A's zero point: empty, one value, or M values.
    pub a_zero_point: &'a [i64],
    /// B's scale: 1 or N values.
    pub b_scale: &'a [f32],
    /// The output's scale.
    pub y_scale: f32,
    /// The output's zero point.
    pub y_zero_point: i64,
    /// The output type.
    pub y_dtype: Dtype,
}

/// `(A - a_zp) @ (B - b_zp)` as int32 (M x N, row-major), on [`isa::active`].
pub fn matmul_integer(a: &Lhs, a_zp: &[i64], b: &PackedMatrix) -> Result<Vec<i32>> {
    matmul_integer_with(isa::active(), a, a_zp, b)
}

/// [`matmul_integer`] with a plain B: up to `layout::DIRECT_ROWS` (16) rows (fewer on some
/// levels: `direct::max_rows`) multiplied straight from B's bytes (`direct.rs`); otherwise
/// packed for this call only (storage recycled per thread).
pub fn matmul_integer_unpacked_with(isa: Isa, a: &Lhs, a_zp: &[i64], b: &Rhs) -> Result<Vec<i32>> {
    let mut v = zeroed_output::<i32>(a.rows, b.n)?;
    matmul_integer_unpacked_into_with(isa, a, a_zp, b, &mut v)?;
    Ok(v)
}

/// [`matmul_integer_unpacked_with`] into a caller's M x N buffer.
pub fn matmul_integer_unpacked_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &Rhs,
    out: &mut [i32],
) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = isa::kernels(isa).gemm_direct {
        if b.k > 0 && b.n > 0 && (1..=direct::max_rows(kernel)).contains(&a.rows) {
            // SAFETY: `isa::kernels` names only kernels this CPU can run.
            return unsafe { direct::matmul_into(kernel, a, a_zp, b, out) };
        }
    }
    PackedMatrix::with_temporary(isa, b, |packed| {
        matmul_integer_into_with(isa, a, a_zp, packed, out)
    })?
}

/// [`matmul_integer_unpacked_with`] on [`isa::active`].
pub fn matmul_integer_unpacked(a: &Lhs, a_zp: &[i64], b: &Rhs) -> Result<Vec<i32>> {
    matmul_integer_unpacked_with(isa::active(), a, a_zp, b)
}

/// [`matmul_integer_unpacked_into_with`] on [`isa::active`].
pub fn matmul_integer_unpacked_into(a: &Lhs, a_zp: &[i64], b: &Rhs, out: &mut [i32]) -> Result<()> {
    matmul_integer_unpacked_into_with(isa::active(), a, a_zp, b, out)
}

/// [`matmul_integer`] on a given ISA level (tests).
pub fn matmul_integer_with(isa: Isa, a: &Lhs, a_zp: &[i64], b: &PackedMatrix) -> Result<Vec<i32>> {
    let zp = validate(a, a_zp, b)?;
    alloc_output::<i32>(a.rows, b.n(), |p| {
        execute(
            isa::kernels(isa).gemm,
            a,
            &zp,
            b,
            None,
            Out::I32(SyncPtr(p)),
        )
    })
}

/// Check that `out` holds M x N elements.
fn check_out<T>(out: &[T], m: usize, n: usize) -> Result<()> {
    if Some(out.len()) != m.checked_mul(n) {
        bail_arg!(
            "`out` holds {} elements, expected M*N = {}*{}",
            out.len(),
            m,
            n
        );
    }
    Ok(())
}

/// [`matmul_integer`] into a caller's M x N buffer (no fresh output pages).
pub fn matmul_integer_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    out: &mut [i32],
) -> Result<()> {
    let zp = validate(a, a_zp, b)?;
    check_out(out, a.rows, b.n())?;
    let o = Out::I32(SyncPtr(out.as_mut_ptr()));
    execute(isa::kernels(isa).gemm, a, &zp, b, None, o);
    Ok(())
}

/// [`matmul_integer`] on a given block kernel (tests).
#[cfg(test)]
pub(crate) fn matmul_integer_kernel(
    kernel: isa::Gemm,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
) -> Result<Vec<i32>> {
    let zp = validate(a, a_zp, b)?;
    alloc_output::<i32>(a.rows, b.n(), |p| {
        execute(kernel, a, &zp, b, None, Out::I32(SyncPtr(p)))
    })
}

/// [`matmul_integer_into_with`] on [`isa::active`].
pub fn matmul_integer_into(a: &Lhs, a_zp: &[i64], b: &PackedMatrix, out: &mut [i32]) -> Result<()> {
    matmul_integer_into_with(isa::active(), a, a_zp, b, out)
}

/// Checks of [`matmul_scaled_with`]'s arguments; returns A's zero point.
fn check_scaled(a: &Lhs, a_zp: &[i64], b: &PackedMatrix, s: &Scaled) -> Result<Vec<i32>> {
    let zp = validate(a, a_zp, b)?;
    let n = b.n();
    if s.row_scale.len() != 1 && s.row_scale.len() != a.rows {
        bail_arg!(
            "row scale has {} values, expected 1 or M={}",
            s.row_scale.len(),
            a.rows
        );
    }
    if s.col_scale.len() != n {
        bail_arg!(
            "column scale has {} values, expected N={n}",
            s.col_scale.len()
        );
    }
    if s.bias.is_some_and(|v| v.len() != n) || s.bias_i32.is_some_and(|v| v.len() != n) {
        bail_arg!("`bias` must have N={n} values");
    }
    Ok(zp)
}

/// `float32(C + bias_i32[n]) * (row_scale[m] * col_scale[n]) (+ bias[n])` ([`Scaled`]), no
/// int32 matrix in between.
pub fn matmul_scaled_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    s: &Scaled,
) -> Result<Vec<f32>> {
    let zp = check_scaled(a, a_zp, b, s)?;
    alloc_output::<f32>(a.rows, b.n(), |p| {
        let o = Out::F32 {
            ptr: SyncPtr(p),
            row_scale: s.row_scale,
            col_scale: s.col_scale,
            bias: s.bias,
        };
        execute(isa::kernels(isa).gemm, a, &zp, b, s.bias_i32, o)
    })
}

/// [`matmul_scaled_with`] into a caller's M x N buffer.
pub fn matmul_scaled_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    s: &Scaled,
    out: &mut [f32],
) -> Result<()> {
    let zp = check_scaled(a, a_zp, b, s)?;
    check_out(out, a.rows, b.n())?;
    let o = Out::F32 {
        ptr: SyncPtr(out.as_mut_ptr()),
        row_scale: s.row_scale,
        col_scale: s.col_scale,
        bias: s.bias,
    };
    execute(isa::kernels(isa).gemm, a, &zp, b, s.bias_i32, o);
    Ok(())
}

/// `clamp(rint(float32(C + bias_i32[n]) * mult[n]) + y_zp)` as `y_dtype` bytes ([`Requant`]),
/// into a caller's M x N buffer (every element written).
pub fn matmul_requant_into_with(
    isa: Isa,
    a: &Lhs,
    a_zp: &[i64],
    b: &PackedMatrix,
    r: &Requant,
    out: &mut [u8],
) -> Result<()> {
    let zp = validate(a, a_zp, b)?;
    let n = b.n();
    if r.mult.len() != n {
        bail_arg!(
            "requantization multiplier has {} values, expected N={n}",
            r.mult.len()
        );
    }
    if r.bias_i32.is_some_and(|v| v.len() != n) {
        bail_arg!("`bias` must have N={n} values");
    }
    let yz = check_zero_points("y_zero_point", &[r.zero_point], 1, "tensor", r.dtype)?[0];
    check_out(out, a.rows, n)?;
    let (lo, hi) = r.dtype.range();
    let o = Out::Q8 {
        ptr: SyncPtr(out.as_mut_ptr()),
        mult: r.mult,
        zp: yz,
        lo,
        hi,
    };
    execute(isa::kernels(isa).gemm, a, &zp, b, r.bias_i32, o);
    Ok(())
}

/// ONNX `QLinearMatMul`: `y = saturate(rint(float32(C) * (a_scale * b_scale[n] / y_scale)) + y_zp)`
/// where C is [`matmul_integer`] ([`QLinear`] holds the parameters); `y_dtype` bytes into a
/// caller's M x N buffer.
pub fn qlinear_matmul_into_with(
    isa: Isa,
    a: &Lhs,
    b: &PackedMatrix,
    q: &QLinear,
    out: &mut [u8],
) -> Result<()> {
    check_scale("a_scale", &[q.a_scale])?;
    check_scale("b_scale", q.b_scale)?;
    check_scale("y_scale", &[q.y_scale])?;
    let n = b.n();
    if q.b_scale.len() != 1 && q.b_scale.len() != n {
        bail_arg!(
            "`b_scale` has {} values, expected a scalar or N={n}",
            q.b_scale.len()
        );
    }
    let mult: Vec<f32> = (0..n)
        .map(|j| q.a_scale * q.b_scale[if q.b_scale.len() == 1 { 0 } else { j }] / q.y_scale)
        .collect();
    let r = Requant {
        mult: &mult,
        bias_i32: None,
        zero_point: q.y_zero_point,
        dtype: q.y_dtype,
    };
    matmul_requant_into_with(isa, a, q.a_zero_point, b, &r, out)
}

/// [`qlinear_matmul_into_with`] into a new buffer.
pub fn qlinear_matmul_with(isa: Isa, a: &Lhs, b: &PackedMatrix, q: &QLinear) -> Result<Vec<u8>> {
    let mut out = zeroed_output(a.rows, b.n())?;
    qlinear_matmul_into_with(isa, a, b, q, &mut out)?;
    Ok(out)
}

/// [`qlinear_matmul_into_with`] on [`isa::active`].
pub fn qlinear_matmul_into(a: &Lhs, b: &PackedMatrix, q: &QLinear, out: &mut [u8]) -> Result<()> {
    qlinear_matmul_into_with(isa::active(), a, b, q, out)
}
