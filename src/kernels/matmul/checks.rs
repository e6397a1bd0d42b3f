//! Argument checks shared by every entry of `matmul/` (packed and plain B, the direct path and
//! `QuantizedLinear`).

use super::layout::{Dtype, Lhs};
use crate::error::{Error, Result};

/// Check a zero point (empty = none, one value, or `len` values) against `dtype`.
pub(crate) fn check_zero_points(
    name: &str,
    zp: &[i64],
    len: usize,
    what: &str,
    dtype: Dtype,
) -> Result<Vec<i32>> {
    if zp.len() > 1 && zp.len() != len {
        return Err(Error::arg(format!(
            "`{name}` has {} values, expected a scalar or {len} (one per {what})",
            zp.len()
        )));
    }
    let (lo, hi) = dtype.range();
    if let Some((i, &z)) = zp
        .iter()
        .enumerate()
        .find(|(_, &z)| z < lo as i64 || z > hi as i64)
    {
        return Err(Error::arg(format!(
            "`{name}` value {z} at index {i} is out of range for {} ({lo}..={hi})",
            dtype.name()
        )));
    }
    Ok(zp.iter().map(|&z| z as i32).collect())
}

/// A row-major (K, N) B of `dtype` bytes: its length, and its zero point (empty, one value or
/// N values) checked against `dtype`; returns the zero point.
pub(crate) fn check_b(
    b: &[u8],
    k: usize,
    n: usize,
    dtype: Dtype,
    zero_point: &[i64],
) -> Result<Vec<i32>> {
    let total = k
        .checked_mul(n)
        .ok_or_else(|| Error::limit(format!("`b` shape ({k}, {n}) overflows")))?;
    if b.len() != total {
        return Err(Error::arg(format!(
            "`b` holds {} elements, expected K*N = {k}*{n} = {total}",
            b.len()
        )));
    }
    check_zero_points("b_zero_point", zero_point, n, "N (columns of `b`)", dtype)
}

/// The largest K for which `(A - a_zp) @ (B - b_zp)` is guaranteed to fit in int32 for any
/// operands of these dtypes with these zero points (empty = 0).
pub fn k_limit(a_dtype: Dtype, a_zp: &[i32], b_dtype: Dtype, b_zp: &[i32]) -> usize {
    let span = |d: Dtype, zp: &[i32]| -> (i64, i64) {
        let (lo, hi) = d.range();
        let zmin = zp.iter().copied().min().unwrap_or(0);
        let zmax = zp.iter().copied().max().unwrap_or(0);
        ((lo - zmax) as i64, (hi - zmin) as i64)
    };
    let (a0, a1) = span(a_dtype, a_zp);
    let (b0, b1) = span(b_dtype, b_zp);
    let corners = [a0 * b0, a0 * b1, a1 * b0, a1 * b1];
    let max_pos = corners.iter().copied().max().unwrap_or(0).max(0);
    let max_neg = -corners.iter().copied().min().unwrap_or(0).min(0);
    let mut lim = u64::MAX;
    if max_pos > 0 {
        lim = lim.min((i32::MAX as i64 / max_pos) as u64);
    }
    if max_neg > 0 {
        lim = lim.min(((1i64 << 31) / max_neg) as u64);
    }
    usize::try_from(lim).unwrap_or(usize::MAX)
}

/// A against a B of `k` rows: K agrees, A's length, and the exact-int32 K limit.
pub(crate) fn check_k_parts(
    a: &Lhs,
    a_zp: &[i32],
    k: usize,
    b_dtype: Dtype,
    b_zp: &[i32],
) -> Result<()> {
    if a.k != k {
        return Err(Error::arg(format!(
            "`a` has K={} columns but `b` has K={k} rows",
            a.k
        )));
    }
    let need = a
        .rows
        .checked_mul(a.k)
        .ok_or_else(|| Error::limit(format!("`a` shape ({}, {}) overflows", a.rows, a.k)))?;
    if a.data.len() != need {
        return Err(Error::arg(format!(
            "`a` holds {} elements, expected M*K = {}*{} = {need}",
            a.data.len(),
            a.rows,
            a.k
        )));
    }
    let lim = k_limit(a.dtype, a_zp, b_dtype, b_zp);
    if a.k > lim {
        return Err(Error::limit(format!(
            "K={} exceeds {lim}, the largest K for which a {} x {} product with these zero points \
             is guaranteed to fit in int32 (exact results only); split K and sum in int64",
            a.k,
            a.dtype.name(),
            b_dtype.name()
        )));
    }
    Ok(())
}

pub(crate) fn check_scale(name: &str, s: &[f32]) -> Result<()> {
    if let Some((i, v)) = s
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(Error::arg(format!(
            "`{name}` must be finite and > 0, found {v} at index {i}"
        )));
    }
    Ok(())
}
