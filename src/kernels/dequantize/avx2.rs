//! AVX2 dequantize: 8 bytes widened to 32-bit lanes, minus the zero point, converted exactly,
//! one multiply; tails use the scalar twin.

use std::arch::x86_64::*;

use super::scalar;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn one(b: __m128i, signed: bool, zp: __m256i, s: __m256) -> __m256 {
    let w = if signed {
        _mm256_cvtepi8_epi32(b)
    } else {
        _mm256_cvtepu8_epi32(b)
    };
    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(w, zp)), s)
}

/// # Safety
/// The CPU must support AVX2 and FMA; `out.len() == q.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dequantize(q: &[u8], out: &mut [f32], signed: bool, scale: f32, zp: i32) {
    let n = q.len().min(out.len());
    let (vs, vz) = (_mm256_set1_ps(scale), _mm256_set1_epi32(zp));
    let (qp, op) = (q.as_ptr(), out.as_mut_ptr());
    let mut i = 0usize;
    while i + 32 <= n {
        // SAFETY: 32 elements from `i` are in bounds of both slices.
        unsafe {
            let v = _mm256_loadu_si256(qp.add(i) as *const __m256i);
            let lo = _mm256_castsi256_si128(v);
            let hi = _mm256_extracti128_si256::<1>(v);
            _mm256_storeu_ps(op.add(i), one(lo, signed, vz, vs));
            _mm256_storeu_ps(op.add(i + 8), one(_mm_srli_si128::<8>(lo), signed, vz, vs));
            _mm256_storeu_ps(op.add(i + 16), one(hi, signed, vz, vs));
            _mm256_storeu_ps(op.add(i + 24), one(_mm_srli_si128::<8>(hi), signed, vz, vs));
        }
        i += 32;
    }
    scalar::dequantize(&q[i..n], &mut out[i..n], signed, scale, zp);
}

/// # Safety
/// The CPU must support AVX2 and FMA; all slices have the length of `q`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dequantize_each(q: &[u8], out: &mut [f32], signed: bool, scale: &[f32], zp: &[i32]) {
    let n = q.len().min(out.len()).min(scale.len()).min(zp.len());
    let (qp, op, sp, zpp) = (q.as_ptr(), out.as_mut_ptr(), scale.as_ptr(), zp.as_ptr());
    let mut i = 0usize;
    while i + 8 <= n {
        // SAFETY: 8 elements from `i` are in bounds of all four slices.
        unsafe {
            let b = _mm_loadl_epi64(qp.add(i) as *const __m128i);
            let s = _mm256_loadu_ps(sp.add(i));
            let z = _mm256_loadu_si256(zpp.add(i) as *const __m256i);
            _mm256_storeu_ps(op.add(i), one(b, signed, z, s));
        }
        i += 8;
    }
    scalar::dequantize_each(&q[i..n], &mut out[i..n], signed, &scale[i..n], &zp[i..n]);
}
