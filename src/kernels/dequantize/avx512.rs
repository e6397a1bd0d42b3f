//! AVX-512 dequantize: 16 bytes widened to 32-bit lanes (`vpmovsxbd` / `vpmovzxbd`), minus the
//! zero point, converted exactly, one multiply; masked tails. Runs of at least
//! [`STREAM_MIN`] elements write whole cache lines with non-temporal stores.

use std::arch::x86_64::*;

/// Runs at least this long use streaming stores for the aligned middle.
pub const STREAM_MIN: usize = 1 << 18;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
fn widen<const SIGNED: bool>(b: __m128i) -> __m512i {
    if SIGNED {
        _mm512_cvtepi8_epi32(b)
    } else {
        _mm512_cvtepu8_epi32(b)
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
fn one<const SIGNED: bool>(b: __m128i, zp: __m512i, s: __m512) -> __m512 {
    _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_sub_epi32(widen::<SIGNED>(b), zp)),
        s,
    )
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn run<const SIGNED: bool>(q: &[u8], out: &mut [f32], scale: f32, zp: i32) {
    let n = q.len().min(out.len());
    let (vs, vz) = (_mm512_set1_ps(scale), _mm512_set1_epi32(zp));
    let (qp, op) = (q.as_ptr(), out.as_mut_ptr());
    let mut i = 0usize;
    let tail = |i: usize, k: usize| {
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: masked lanes `i..i + k` are in bounds of both slices.
        unsafe {
            let b = _mm_maskz_loadu_epi8(m, qp.add(i) as *const i8);
            _mm512_mask_storeu_ps(op.add(i), m, one::<SIGNED>(b, vz, vs));
        }
    };
    let stream = n >= STREAM_MIN;
    if stream {
        let mis = (op as usize) & 63;
        let peel = if mis == 0 { 0 } else { (64 - mis) / 4 };
        while i < peel.min(n) {
            let k = (peel - i).min(16);
            tail(i, k);
            i += k;
        }
    }
    while i + 64 <= n {
        if i + 4096 + 64 <= n {
            // SAFETY: prefetch never faults; the address is inside `q` (4 KB ahead).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(qp.add(i + 4096) as *const i8) };
        }
        // SAFETY: 64 elements from `i` are in bounds of both slices; with `stream`, `op + i`
        // is 64-byte aligned (peeled above).
        unsafe {
            let v = _mm512_loadu_si512(qp.add(i) as *const __m512i);
            let a = one::<SIGNED>(_mm512_castsi512_si128(v), vz, vs);
            let b = one::<SIGNED>(_mm512_extracti32x4_epi32::<1>(v), vz, vs);
            let c = one::<SIGNED>(_mm512_extracti32x4_epi32::<2>(v), vz, vs);
            let d = one::<SIGNED>(_mm512_extracti32x4_epi32::<3>(v), vz, vs);
            if stream {
                _mm512_stream_ps(op.add(i), a);
                _mm512_stream_ps(op.add(i + 16), b);
                _mm512_stream_ps(op.add(i + 32), c);
                _mm512_stream_ps(op.add(i + 48), d);
            } else {
                _mm512_storeu_ps(op.add(i), a);
                _mm512_storeu_ps(op.add(i + 16), b);
                _mm512_storeu_ps(op.add(i + 32), c);
                _mm512_storeu_ps(op.add(i + 48), d);
            }
        }
        i += 64;
    }
    if stream {
        _mm_sfence();
    }
    while i < n {
        let k = (n - i).min(16);
        tail(i, k);
        i += k;
    }
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; `out.len() == q.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn dequantize(q: &[u8], out: &mut [f32], signed: bool, scale: f32, zp: i32) {
    // SAFETY: same contract.
    unsafe {
        if signed {
            run::<true>(q, out, scale, zp)
        } else {
            run::<false>(q, out, scale, zp)
        }
    }
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; all slices have the length of `q`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn dequantize_each(q: &[u8], out: &mut [f32], signed: bool, scale: &[f32], zp: &[i32]) {
    let n = q.len().min(out.len()).min(scale.len()).min(zp.len());
    let (qp, op, sp, zpp) = (q.as_ptr(), out.as_mut_ptr(), scale.as_ptr(), zp.as_ptr());
    let mut i = 0usize;
    while i < n {
        let k = (n - i).min(16);
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: masked lanes `i..i + k` are in bounds of all four slices.
        unsafe {
            let b = _mm_maskz_loadu_epi8(m, qp.add(i) as *const i8);
            let s = _mm512_maskz_loadu_ps(m, sp.add(i));
            let z = _mm512_maskz_loadu_epi32(m, zpp.add(i));
            let v = if signed {
                one::<true>(b, z, s)
            } else {
                one::<false>(b, z, s)
            };
            _mm512_mask_storeu_ps(op.add(i), m, v);
        }
        i += k;
    }
}
