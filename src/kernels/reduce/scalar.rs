//! The reference twin of the reductions. NaNs are skipped and flagged (the caller finds the
//! index); `min` / `max` use `minps(x, acc)` / `maxps(x, acc)` semantics and the results are
//! canonicalised with `+ 0.0` so that the sign of a zero never depends on the lane order.
//!
//! numpy: `np.nanmin(x) + 0, np.nanmax(x) + 0, np.isnan(x).any()`; `np.nanmax(np.abs(x))`.

use super::MinMax;

#[inline]
pub(crate) fn min(x: f32, acc: f32) -> f32 {
    if x < acc {
        x
    } else {
        acc
    }
}

#[inline]
pub(crate) fn max(x: f32, acc: f32) -> f32 {
    if x > acc {
        x
    } else {
        acc
    }
}

/// Smallest and largest non-NaN values (`+Inf`, `-Inf` for none) and whether a NaN was seen.
pub fn minmax(x: &[f32]) -> MinMax {
    let (mut lo, mut hi, mut nan) = (f32::INFINITY, f32::NEG_INFINITY, false);
    for &v in x {
        lo = min(v, lo);
        hi = max(v, hi);
        nan |= v.is_nan();
    }
    MinMax {
        min: lo + 0.0,
        max: hi + 0.0,
        nan,
    }
}

/// Largest `|x|` over non-NaN values (0 for none) and whether a NaN was seen.
pub fn absmax(x: &[f32]) -> (f32, bool) {
    let (mut m, mut nan) = (0.0f32, false);
    for &v in x {
        m = max(v.abs(), m);
        nan |= v.is_nan();
    }
    (m, nan)
}

/// Column-wise update: `lo[j] = min(row[j], lo[j])`, `hi[j] = max(row[j], hi[j])`; returns
/// whether `row` holds a NaN.
pub fn minmax_columns(row: &[f32], lo: &mut [f32], hi: &mut [f32]) -> bool {
    let mut nan = false;
    for j in 0..row.len() {
        lo[j] = min(row[j], lo[j]);
        hi[j] = max(row[j], hi[j]);
        nan |= row[j].is_nan();
    }
    nan
}
