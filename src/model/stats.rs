//! Error statistics of a decoded tensor `y` against the original `x`, in one pass with f64
//! accumulators (products of two f32 are exact in f64). The order of the additions is fixed
//! (8 interleaved partial sums, then added in order), so the result is deterministic.
//!
//! numpy: `x64, y64 = x.astype(f64), y.astype(f64); d = x64 - y64`;
//! `(x64@x64, y64@y64, x64@y64, d@d, max|d|, count(y == 0))` (`tests/reference.py::error_stats`).

use crate::error::{Error, Result};

/// The sums behind the report's error columns.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ErrorSums {
    pub sxx: f64,
    pub syy: f64,
    pub sxy: f64,
    pub sdd: f64,
    /// max |x - y| (NaN if any difference is NaN).
    pub max_abs: f64,
    /// Number of exact zeros in `y` (either sign).
    pub zeros: u64,
}

const LANES: usize = 8;

/// Compute [`ErrorSums`] of `y` against `x` (same length).
pub fn error_sums(x: &[f32], y: &[f32]) -> Result<ErrorSums> {
    if x.len() != y.len() {
        return Err(Error::arg(format!(
            "`y` has {} elements, expected {} (the length of `x`)",
            y.len(),
            x.len()
        )));
    }
    let mut sxx = [0f64; LANES];
    let mut syy = [0f64; LANES];
    let mut sxy = [0f64; LANES];
    let mut sdd = [0f64; LANES];
    let mut mx = [0f64; LANES];
    let mut nan = false;
    let mut zeros = 0u64;
    let mut xc = x.chunks_exact(LANES);
    let mut yc = y.chunks_exact(LANES);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..LANES {
            let (p, q) = (a[l] as f64, b[l] as f64);
            let d = p - q;
            sxx[l] += p * p;
            syy[l] += q * q;
            sxy[l] += p * q;
            sdd[l] += d * d;
            let ad = d.abs();
            nan |= ad.is_nan();
            mx[l] = if ad > mx[l] { ad } else { mx[l] };
            zeros += u64::from(b[l] == 0.0);
        }
    }
    for (l, (&a, &b)) in xc.remainder().iter().zip(yc.remainder()).enumerate() {
        let (p, q) = (a as f64, b as f64);
        let d = p - q;
        sxx[l] += p * p;
        syy[l] += q * q;
        sxy[l] += p * q;
        sdd[l] += d * d;
        let ad = d.abs();
        nan |= ad.is_nan();
        mx[l] = if ad > mx[l] { ad } else { mx[l] };
        zeros += u64::from(b == 0.0);
    }
    let sum = |v: [f64; LANES]| v.iter().fold(0.0, |acc, &t| acc + t);
    Ok(ErrorSums {
        sxx: sum(sxx),
        syy: sum(syy),
        sxy: sum(sxy),
        sdd: sum(sdd),
        max_abs: if nan {
            f64::NAN
        } else {
            mx.iter().fold(0.0, |acc: f64, &t| acc.max(t))
        },
        zeros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cases() {
        for n in 0..=20usize {
            let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let y: Vec<f32> = x
                .iter()
                .map(|v| if *v > 0.0 { v + 0.25 } else { 0.0 })
                .collect();
            let s = error_sums(&x, &y).unwrap();
            let (mut sxx, mut sdd, mut mx, mut z) = (0f64, 0f64, 0f64, 0u64);
            for (a, b) in x.iter().zip(&y) {
                sxx += (*a as f64).powi(2);
                sdd += (*a as f64 - *b as f64).powi(2);
                mx = mx.max((*a as f64 - *b as f64).abs());
                z += u64::from(*b == 0.0);
            }
            assert!((s.sxx - sxx).abs() <= 1e-12 * sxx.max(1.0), "n={n}");
            assert!((s.sdd - sdd).abs() <= 1e-12 * sdd.max(1.0), "n={n}");
            assert_eq!(s.max_abs, mx);
            assert_eq!(s.zeros, z);
        }
        assert!(error_sums(&[1.0], &[]).is_err());
        assert!(error_sums(&[f32::NAN], &[0.0]).unwrap().max_abs.is_nan());
    }
}
