//! AVX-512 quantize: 16 lanes, float clamp then conversion with an explicit rounding mode
//! (`vcvtps2dq {rn-sae}` for ties to even; truncation + half test for half away), `vpmovdb`
//! narrowing, masked tails. Runs of at least [`STREAM_MIN`] elements write whole cache lines
//! with non-temporal stores (no read-for-ownership of the output).

use std::arch::x86_64::*;

use super::{Params, Rounding};

/// Runs at least this long use streaming stores for the aligned middle.
pub const STREAM_MIN: usize = 1 << 20;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
fn round_i32(c: __m512, rounding: Rounding) -> __m512i {
    match rounding {
        Rounding::MulAway => {
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(c);
            let d = _mm512_sub_ps(c, t); // exact
            let m = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(d), _mm512_set1_ps(0.5));
            let sign = _mm512_and_ps(c, _mm512_set1_ps(-0.0));
            let one = _mm512_or_ps(_mm512_set1_ps(1.0), sign);
            _mm512_cvttps_epi32(_mm512_mask_add_ps(t, m, t, one))
        }
        _ => _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(c),
    }
}

/// One vector: `round(clamp(x op f, lo, hi)) + zp` as 32-bit lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
fn one(v: __m512, f: __m512, lo: __m512, hi: __m512, zp: __m512i, rounding: Rounding) -> __m512i {
    let v = match rounding {
        Rounding::Div => _mm512_div_ps(v, f),
        _ => _mm512_mul_ps(v, f),
    };
    // maxps(v, lo): a NaN `v` gives `lo`, as the scalar twin.
    let c = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    _mm512_add_epi32(round_i32(c, rounding), zp)
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; `out.len() == x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn quantize(x: &[f32], out: &mut [u8], p: &Params) {
    let n = x.len().min(out.len());
    let (lo, hi) = p.bounds();
    let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let f = _mm512_set1_ps(p.factor);
    let zp = _mm512_set1_epi32(p.zp);
    let r = p.rounding;
    let xp = x.as_ptr();
    let op = out.as_mut_ptr();
    let mut i = 0usize;
    if n >= STREAM_MIN {
        // Peel (masked) until the output is 64-byte aligned, then whole lines.
        let mis = (op as usize) & 63;
        let peel = if mis == 0 { 0 } else { 64 - mis };
        while i < peel {
            let k = (peel - i).min(16);
            let m: __mmask16 = ((1u32 << k) - 1) as u16;
            // SAFETY: lanes `i..i + k` are within both slices (k <= peel - i, peel < 64 <= n).
            unsafe {
                let v = _mm512_maskz_loadu_ps(m, xp.add(i));
                _mm512_mask_cvtepi32_storeu_epi8(
                    op.add(i) as *mut i8,
                    m,
                    one(v, f, vlo, vhi, zp, r),
                );
            }
            i += k;
        }
        while i + 64 <= n {
            // SAFETY: 64 elements from `i` are in bounds; `op + i` is 64-byte aligned.
            unsafe {
                let a = _mm512_cvtepi32_epi8(one(_mm512_loadu_ps(xp.add(i)), f, vlo, vhi, zp, r));
                let b =
                    _mm512_cvtepi32_epi8(one(_mm512_loadu_ps(xp.add(i + 16)), f, vlo, vhi, zp, r));
                let c =
                    _mm512_cvtepi32_epi8(one(_mm512_loadu_ps(xp.add(i + 32)), f, vlo, vhi, zp, r));
                let d =
                    _mm512_cvtepi32_epi8(one(_mm512_loadu_ps(xp.add(i + 48)), f, vlo, vhi, zp, r));
                let ab = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(a), b);
                let cd = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(c), d);
                let line = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ab), cd);
                _mm512_stream_si512(op.add(i) as *mut __m512i, line);
            }
            i += 64;
        }
        _mm_sfence();
    }
    while i + 64 <= n {
        // SAFETY: 64 elements from `i` are in bounds of both slices.
        unsafe {
            let a = one(_mm512_loadu_ps(xp.add(i)), f, vlo, vhi, zp, r);
            let b = one(_mm512_loadu_ps(xp.add(i + 16)), f, vlo, vhi, zp, r);
            let c = one(_mm512_loadu_ps(xp.add(i + 32)), f, vlo, vhi, zp, r);
            let d = one(_mm512_loadu_ps(xp.add(i + 48)), f, vlo, vhi, zp, r);
            _mm_storeu_si128(op.add(i) as *mut __m128i, _mm512_cvtepi32_epi8(a));
            _mm_storeu_si128(op.add(i + 16) as *mut __m128i, _mm512_cvtepi32_epi8(b));
            _mm_storeu_si128(op.add(i + 32) as *mut __m128i, _mm512_cvtepi32_epi8(c));
            _mm_storeu_si128(op.add(i + 48) as *mut __m128i, _mm512_cvtepi32_epi8(d));
        }
        i += 64;
    }
    while i < n {
        let k = (n - i).min(16);
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: masked lanes `i..i + k` are in bounds; masked-off lanes are not accessed.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, xp.add(i));
            _mm512_mask_cvtepi32_storeu_epi8(op.add(i) as *mut i8, m, one(v, f, vlo, vhi, zp, r));
        }
        i += k;
    }
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; all slices have the length of `x`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
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
    let (qmin, qmax) = (_mm512_set1_epi32(qmin), _mm512_set1_epi32(qmax));
    let (xp, fp, zpp, op) = (x.as_ptr(), factor.as_ptr(), zp.as_ptr(), out.as_mut_ptr());
    let mut i = 0usize;
    while i < n {
        let k = (n - i).min(16);
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: masked lanes `i..i + k` are in bounds of all four slices.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, xp.add(i));
            let f = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0), m, fp.add(i));
            let z = _mm512_maskz_loadu_epi32(m, zpp.add(i));
            let lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(qmin, z));
            let hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(qmax, z));
            _mm512_mask_cvtepi32_storeu_epi8(
                op.add(i) as *mut i8,
                m,
                one(v, f, lo, hi, z, rounding),
            );
        }
        i += k;
    }
}
