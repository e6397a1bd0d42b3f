//! AVX2 quantize: 8 lanes, float clamp, explicit round-to-nearest-even (`vroundps`) or
//! truncation + half test, exact narrowing of 32 values per step (`vpackssdw` of in-range
//! values, low-byte mask, `vpackuswb`, lane fix-up); tails use the scalar twin.

use std::arch::x86_64::*;

use super::{scalar, Params, Rounding};

#[inline]
#[target_feature(enable = "avx2,fma")]
fn one(v: __m256, f: __m256, lo: __m256, hi: __m256, zp: __m256i, rounding: Rounding) -> __m256i {
    let v = match rounding {
        Rounding::Div => _mm256_div_ps(v, f),
        _ => _mm256_mul_ps(v, f),
    };
    // maxps(v, lo): a NaN `v` gives `lo`, as the scalar twin.
    let c = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    let r = match rounding {
        Rounding::MulAway => {
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(c);
            let d = _mm256_sub_ps(c, t); // exact
            let absd = _mm256_andnot_ps(_mm256_set1_ps(-0.0), d);
            let m = _mm256_cmp_ps::<_CMP_GE_OQ>(absd, _mm256_set1_ps(0.5));
            let one = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(c, _mm256_set1_ps(-0.0)));
            _mm256_add_ps(t, _mm256_and_ps(m, one))
        }
        _ => _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(c),
    };
    _mm256_add_epi32(_mm256_cvttps_epi32(r), zp)
}

/// Low bytes of four vectors of 32-bit lanes holding values in [-128, 255], in order.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn narrow(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m256i {
    let ab = _mm256_packs_epi32(a, b); // exact: |values| <= 255
    let cd = _mm256_packs_epi32(c, d);
    let m = _mm256_set1_epi16(0xff);
    let bytes = _mm256_packus_epi16(_mm256_and_si256(ab, m), _mm256_and_si256(cd, m));
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// # Safety
/// The CPU must support AVX2 and FMA; `out.len() == x.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize(x: &[f32], out: &mut [u8], p: &Params) {
    // SAFETY: same contract.
    unsafe { quantize_hinted(x, out, p, &[]) }
}

/// [`quantize`] that also prefetches `next` (the run the caller handles next) into L1.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `out.len() == x.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_hinted(x: &[f32], out: &mut [u8], p: &Params, next: &[f32]) {
    let n = x.len().min(out.len());
    let (np, nn) = (next.as_ptr(), next.len());
    let (lo, hi) = p.bounds();
    let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let f = _mm256_set1_ps(p.factor);
    let zp = _mm256_set1_epi32(p.zp);
    let r = p.rounding;
    let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
    let mut i = 0usize;
    while i + 32 <= n {
        if i + 32 <= nn {
            // SAFETY: prefetch never faults; the addresses are inside `next`.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(np.add(i) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(np.add(i + 16) as *const i8);
            }
        }
        // SAFETY: 32 elements from `i` are in bounds of both slices.
        unsafe {
            let a = one(_mm256_loadu_ps(xp.add(i)), f, vlo, vhi, zp, r);
            let b = one(_mm256_loadu_ps(xp.add(i + 8)), f, vlo, vhi, zp, r);
            let c = one(_mm256_loadu_ps(xp.add(i + 16)), f, vlo, vhi, zp, r);
            let d = one(_mm256_loadu_ps(xp.add(i + 24)), f, vlo, vhi, zp, r);
            _mm256_storeu_si256(op.add(i) as *mut __m256i, narrow(a, b, c, d));
        }
        i += 32;
    }
    scalar::quantize(&x[i..n], &mut out[i..n], p);
}

/// # Safety
/// The CPU must support AVX2 and FMA; all slices have the length of `x`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_each(
    x: &[f32],
    out: &mut [u8],
    factor: &[f32],
    zp: &[i32],
    rounding: Rounding,
    qmin: i32,
    qmax: i32,
) {
    let n = x.len().min(out.len()).min(factor.len()).min(zp.len());
    let (vqmin, vqmax) = (_mm256_set1_epi32(qmin), _mm256_set1_epi32(qmax));
    let (xp, fp, zpp, op) = (x.as_ptr(), factor.as_ptr(), zp.as_ptr(), out.as_mut_ptr());
    let mut i = 0usize;
    while i + 32 <= n {
        let mut v = [_mm256_setzero_si256(); 4];
        for (j, vj) in v.iter_mut().enumerate() {
            let o = i + 8 * j;
            // SAFETY: 8 elements from `o` (< i + 32 <= n) are in bounds of all slices.
            unsafe {
                let z = _mm256_loadu_si256(zpp.add(o) as *const __m256i);
                let lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(vqmin, z));
                let hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(vqmax, z));
                let f = _mm256_loadu_ps(fp.add(o));
                *vj = one(_mm256_loadu_ps(xp.add(o)), f, lo, hi, z, rounding);
            }
        }
        // SAFETY: 32 bytes from `i` are in bounds of `out`.
        unsafe { _mm256_storeu_si256(op.add(i) as *mut __m256i, narrow(v[0], v[1], v[2], v[3])) };
        i += 32;
    }
    scalar::quantize_each(
        &x[i..n],
        &mut out[i..n],
        &factor[i..n],
        &zp[i..n],
        rounding,
        qmin,
        qmax,
    );
}
