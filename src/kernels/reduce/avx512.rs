//! AVX-512 reductions: four accumulators of 16 lanes, `vminps(x, acc)` / `vmaxps(x, acc)`
//! (a NaN `x` leaves `acc` unchanged, as the twin), an unordered-compare mask for NaN, masked
//! tails, then a horizontal reduction and `+ 0.0` (canonical zero).

#![allow(clippy::needless_range_loop)] // four accumulators indexed with their offsets

use std::arch::x86_64::*;

use super::MinMax;

/// Software prefetch distance in elements (16 KB) into L2. The hardware prefetchers stop at
/// 4 KB page boundaries; a pure read stream needs more lines in flight than L1 prefetches can
/// hold: on Zen 4, 64M elements reduce in 8.0-9.3 ms with this against 11.7-13.8 ms with a
/// 4 KB distance into L1 (`_MM_HINT_T0`).
const PREFETCH: usize = 4096;

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn minmax(x: &[f32]) -> MinMax {
    let n = x.len();
    let p = x.as_ptr();
    let mut lo = [_mm512_set1_ps(f32::INFINITY); 4];
    let mut hi = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
    let mut nan: __mmask16 = 0;
    let mut i = 0usize;
    while i + 64 <= n {
        if i + PREFETCH + 64 <= n {
            // SAFETY: prefetch never faults; the address is inside `x`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p.add(i + PREFETCH) as *const i8) };
        }
        for k in 0..4 {
            // SAFETY: 64 elements from `i` are in bounds.
            let v = unsafe { _mm512_loadu_ps(p.add(i + 16 * k)) };
            lo[k] = _mm512_min_ps(v, lo[k]);
            hi[k] = _mm512_max_ps(v, hi[k]);
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        }
        i += 64;
    }
    while i < n {
        let k = (n - i).min(16);
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: masked lanes `i..i + k` are in bounds.
        let v = unsafe { _mm512_maskz_loadu_ps(m, p.add(i)) };
        lo[0] = _mm512_mask_min_ps(lo[0], m, v, lo[0]);
        hi[0] = _mm512_mask_max_ps(hi[0], m, v, hi[0]);
        nan |= _mm512_mask_cmp_ps_mask::<_CMP_UNORD_Q>(m, v, v);
        i += k;
    }
    let l = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
    let h = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
    MinMax {
        min: _mm512_reduce_min_ps(l) + 0.0,
        max: _mm512_reduce_max_ps(h) + 0.0,
        nan: nan != 0,
    }
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn absmax(x: &[f32]) -> (f32, bool) {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut nan: __mmask16 = 0;
    let mut i = 0usize;
    while i + 64 <= n {
        if i + PREFETCH + 64 <= n {
            // SAFETY: prefetch never faults; the address is inside `x`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p.add(i + PREFETCH) as *const i8) };
        }
        for k in 0..4 {
            // SAFETY: 64 elements from `i` are in bounds.
            let v = unsafe { _mm512_loadu_ps(p.add(i + 16 * k)) };
            acc[k] = _mm512_max_ps(_mm512_abs_ps(v), acc[k]);
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        }
        i += 64;
    }
    while i < n {
        let k = (n - i).min(16);
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: masked lanes `i..i + k` are in bounds.
        let v = unsafe { _mm512_maskz_loadu_ps(m, p.add(i)) };
        acc[0] = _mm512_max_ps(_mm512_abs_ps(v), acc[0]); // masked-off lanes are 0
        nan |= _mm512_mask_cmp_ps_mask::<_CMP_UNORD_Q>(m, v, v);
        i += k;
    }
    let a = _mm512_max_ps(_mm512_max_ps(acc[0], acc[1]), _mm512_max_ps(acc[2], acc[3]));
    (_mm512_reduce_max_ps(a), nan != 0)
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; `lo` and `hi` have the length of `row`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn minmax_columns(row: &[f32], lo: &mut [f32], hi: &mut [f32]) -> bool {
    let n = row.len().min(lo.len()).min(hi.len());
    let (rp, lp, hp) = (row.as_ptr(), lo.as_mut_ptr(), hi.as_mut_ptr());
    let mut nan: __mmask16 = 0;
    let mut i = 0usize;
    while i + 64 <= n {
        for k in 0..4 {
            let o = i + 16 * k;
            // SAFETY: 16 elements from `o` (< i + 64 <= n) are in bounds of the three slices.
            unsafe {
                let v = _mm512_loadu_ps(rp.add(o));
                _mm512_storeu_ps(lp.add(o), _mm512_min_ps(v, _mm512_loadu_ps(lp.add(o))));
                _mm512_storeu_ps(hp.add(o), _mm512_max_ps(v, _mm512_loadu_ps(hp.add(o))));
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            }
        }
        i += 64;
    }
    while i < n {
        let k = (n - i).min(16);
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: masked lanes `i..i + k` are in bounds of the three slices.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, rp.add(i));
            let l = _mm512_maskz_loadu_ps(m, lp.add(i));
            let h = _mm512_maskz_loadu_ps(m, hp.add(i));
            _mm512_mask_storeu_ps(lp.add(i), m, _mm512_min_ps(v, l));
            _mm512_mask_storeu_ps(hp.add(i), m, _mm512_max_ps(v, h));
            nan |= _mm512_mask_cmp_ps_mask::<_CMP_UNORD_Q>(m, v, v);
        }
        i += k;
    }
    nan != 0
}
