//! AVX2 reductions: four accumulators of 8 lanes with twin semantics (`vminps(x, acc)`), an
//! unordered compare for NaN; tails and the horizontal step use the twin's `min` / `max`.

#![allow(clippy::needless_range_loop)] // four accumulators indexed with their offsets

use std::arch::x86_64::*;

use super::{scalar, MinMax};

fn fold(v: [f32; 8], init: f32, f: fn(f32, f32) -> f32) -> f32 {
    v.iter().fold(init, |a, &b| f(b, a))
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn minmax(x: &[f32]) -> MinMax {
    let n = x.len();
    let p = x.as_ptr();
    let mut lo = [_mm256_set1_ps(f32::INFINITY); 4];
    let mut hi = [_mm256_set1_ps(f32::NEG_INFINITY); 4];
    let mut nan = _mm256_setzero_ps();
    let mut i = 0usize;
    while i + 32 <= n {
        for k in 0..4 {
            // SAFETY: 32 elements from `i` are in bounds.
            let v = unsafe { _mm256_loadu_ps(p.add(i + 8 * k)) };
            lo[k] = _mm256_min_ps(v, lo[k]);
            hi[k] = _mm256_max_ps(v, hi[k]);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        }
        i += 32;
    }
    let l = _mm256_min_ps(_mm256_min_ps(lo[0], lo[1]), _mm256_min_ps(lo[2], lo[3]));
    let h = _mm256_max_ps(_mm256_max_ps(hi[0], hi[1]), _mm256_max_ps(hi[2], hi[3]));
    let (mut la, mut ha) = ([0f32; 8], [0f32; 8]);
    // SAFETY: 8-float arrays.
    unsafe {
        _mm256_storeu_ps(la.as_mut_ptr(), l);
        _mm256_storeu_ps(ha.as_mut_ptr(), h);
    }
    let t = scalar::minmax(&x[i..]);
    MinMax {
        min: fold(la, t.min, scalar::min) + 0.0,
        max: fold(ha, t.max, scalar::max) + 0.0,
        nan: t.nan || _mm256_movemask_ps(nan) != 0,
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn absmax(x: &[f32]) -> (f32, bool) {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut nan = _mm256_setzero_ps();
    let sign = _mm256_set1_ps(-0.0);
    let mut i = 0usize;
    while i + 32 <= n {
        for k in 0..4 {
            // SAFETY: 32 elements from `i` are in bounds.
            let v = unsafe { _mm256_loadu_ps(p.add(i + 8 * k)) };
            acc[k] = _mm256_max_ps(_mm256_andnot_ps(sign, v), acc[k]);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        }
        i += 32;
    }
    let a = _mm256_max_ps(_mm256_max_ps(acc[0], acc[1]), _mm256_max_ps(acc[2], acc[3]));
    let mut aa = [0f32; 8];
    // SAFETY: an 8-float array.
    unsafe { _mm256_storeu_ps(aa.as_mut_ptr(), a) };
    let (t, tn) = scalar::absmax(&x[i..]);
    (fold(aa, t, scalar::max), tn || _mm256_movemask_ps(nan) != 0)
}

/// # Safety
/// The CPU must support AVX2 and FMA; `lo` and `hi` have the length of `row`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn minmax_columns(row: &[f32], lo: &mut [f32], hi: &mut [f32]) -> bool {
    let n = row.len().min(lo.len()).min(hi.len());
    let (rp, lp, hp) = (row.as_ptr(), lo.as_mut_ptr(), hi.as_mut_ptr());
    let mut nan = _mm256_setzero_ps();
    let mut i = 0usize;
    while i + 8 <= n {
        // SAFETY: 8 elements from `i` are in bounds of the three slices.
        unsafe {
            let v = _mm256_loadu_ps(rp.add(i));
            _mm256_storeu_ps(lp.add(i), _mm256_min_ps(v, _mm256_loadu_ps(lp.add(i))));
            _mm256_storeu_ps(hp.add(i), _mm256_max_ps(v, _mm256_loadu_ps(hp.add(i))));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        }
        i += 8;
    }
    let t = scalar::minmax_columns(&row[i..n], &mut lo[i..n], &mut hi[i..n]);
    t || _mm256_movemask_ps(nan) != 0
}
