//! AVX-512 quantize: 16 lanes, float clamp then conversion with an explicit rounding mode
//! (`vcvtps2dq {rn-sae}` for ties to even; truncation + half test for half away), `vpmovdb`
//! narrowing, masked tails. Runs of at least [`STREAM_MIN`] elements write whole cache lines
//! with non-temporal stores (no read-for-ownership of the output).

use std::arch::x86_64::*;

use super::{Params, Rounding};
use crate::kernels::reduce::MinMax;

/// Runs at least this long use streaming stores for the aligned middle.
pub const STREAM_MIN: usize = 1 << 20;

/// Software prefetch distance in elements (4 KB): the hardware prefetchers stop at 4 KB page
/// boundaries, so long streams fetch the next page ahead of use.
pub const PREFETCH: usize = 1024;

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

/// Low bytes of four vectors of 32-bit lanes holding values in [-128, 255], in order, as one
/// 64-byte vector: two `vpackssdw` (exact: |v| <= 255), a low-byte mask, `vpackuswb`, one
/// `vpermd` (cheaper on Zen than four `vpmovdb`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
fn narrow4(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m512i {
    let m = _mm512_set1_epi16(0xff);
    let ab = _mm512_and_si512(_mm512_packs_epi32(a, b), m);
    let cd = _mm512_and_si512(_mm512_packs_epi32(c, d), m);
    let bytes = _mm512_packus_epi16(ab, cd); // lane L: a[4L..], b[4L..], c[4L..], d[4L..]
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_epi32(idx, bytes)
}

/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; `out.len() == x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn quantize(x: &[f32], out: &mut [u8], p: &Params) {
    let stream = x.len() >= STREAM_MIN;
    // SAFETY: same contract.
    unsafe { quantize_hinted(x, out, p, &[], stream) };
    if stream {
        fence();
    }
}

/// Order this thread's streaming stores before any later store (`sfence`).
#[inline]
pub fn fence() {
    // SAFETY: SSE is part of the x86-64 baseline.
    unsafe { _mm_sfence() }
}

/// [`quantize`] that also prefetches `next` (the run the caller handles next) into L1 at the
/// pace of the loop, and streams the output when `stream` (then the caller calls [`fence`]
/// after its last streaming call: one fence per row would stall on every row).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; `out.len() == x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn quantize_hinted(x: &[f32], out: &mut [u8], p: &Params, next: &[f32], stream: bool) {
    let n = x.len().min(out.len());
    let np = next.as_ptr();
    let nn = next.len();
    let (lo, hi) = p.bounds();
    let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let f = _mm512_set1_ps(p.factor);
    let zp = _mm512_set1_epi32(p.zp);
    let r = p.rounding;
    let xp = x.as_ptr();
    let op = out.as_mut_ptr();
    let mut i = 0usize;
    if stream && n >= 128 {
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
            if i + 64 <= nn {
                // SAFETY: prefetch never faults; the addresses are inside `next`.
                unsafe {
                    for k in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(np.add(i + 16 * k) as *const i8);
                    }
                }
            }
            if i + PREFETCH + 64 <= n {
                // SAFETY: prefetch never faults; the address is inside `x`.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(xp.add(i + PREFETCH) as *const i8) };
            }
            // SAFETY: 64 elements from `i` are in bounds; `op + i` is 64-byte aligned.
            unsafe {
                let a = one(_mm512_loadu_ps(xp.add(i)), f, vlo, vhi, zp, r);
                let b = one(_mm512_loadu_ps(xp.add(i + 16)), f, vlo, vhi, zp, r);
                let c = one(_mm512_loadu_ps(xp.add(i + 32)), f, vlo, vhi, zp, r);
                let d = one(_mm512_loadu_ps(xp.add(i + 48)), f, vlo, vhi, zp, r);
                let line = narrow4(a, b, c, d);
                _mm512_stream_si512(op.add(i) as *mut __m512i, line);
            }
            i += 64;
        }
    }
    while i + 64 <= n {
        if i + 64 <= nn {
            // SAFETY: prefetch never faults; the addresses are inside `next`.
            unsafe {
                for k in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(np.add(i + 16 * k) as *const i8);
                }
            }
        }
        if i + PREFETCH + 64 <= n {
            // SAFETY: prefetch never faults; the address is inside `x`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(xp.add(i + PREFETCH) as *const i8) };
        }
        // SAFETY: 64 elements from `i` are in bounds of both slices.
        unsafe {
            let a = one(_mm512_loadu_ps(xp.add(i)), f, vlo, vhi, zp, r);
            let b = one(_mm512_loadu_ps(xp.add(i + 16)), f, vlo, vhi, zp, r);
            let c = one(_mm512_loadu_ps(xp.add(i + 32)), f, vlo, vhi, zp, r);
            let d = one(_mm512_loadu_ps(xp.add(i + 48)), f, vlo, vhi, zp, r);
            _mm512_storeu_si512(op.add(i) as *mut __m512i, narrow4(a, b, c, d));
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
    while i + 64 <= n {
        let mut v = [_mm512_setzero_si512(); 4];
        for (k, vk) in v.iter_mut().enumerate() {
            let o = i + 16 * k;
            // SAFETY: 16 elements from `o` (< i + 64 <= n) are in bounds of all four slices.
            unsafe {
                let z = _mm512_loadu_epi32(zpp.add(o));
                let lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(qmin, z));
                let hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(qmax, z));
                let f = _mm512_loadu_ps(fp.add(o));
                *vk = one(_mm512_loadu_ps(xp.add(o)), f, lo, hi, z, rounding);
            }
        }
        // SAFETY: 64 bytes from `i` are in bounds of `out`.
        unsafe { _mm512_storeu_si512(op.add(i) as *mut __m512i, narrow4(v[0], v[1], v[2], v[3])) };
        i += 64;
    }
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

/// Min / max / NaN of `p[a..b]` into the accumulators (masked 16-lane steps).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn minmax_span(
    p: *const f32,
    a: usize,
    b: usize,
    lo: &mut __m512,
    hi: &mut __m512,
    nan: &mut __mmask16,
) {
    let mut i = a;
    while i < b {
        let k = (b - i).min(16);
        let m: __mmask16 = ((1u32 << k) - 1) as u16;
        // SAFETY: the caller guarantees `p[a..b]` is in bounds; masked-off lanes are not read.
        let v = unsafe { _mm512_maskz_loadu_ps(m, p.add(i)) };
        *lo = _mm512_mask_min_ps(*lo, m, v, *lo);
        *hi = _mm512_mask_max_ps(*hi, m, v, *hi);
        *nan |= _mm512_mask_cmp_ps_mask::<_CMP_UNORD_Q>(m, v, v);
        i += k;
    }
}

/// Quantize `x` into `out` (as [`quantize_hinted`]) while reducing `next` to its min / max:
/// the next run's loads from memory overlap this run's arithmetic.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/DQ; `out.len() == x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub unsafe fn quantize_reduce_next(
    x: &[f32],
    out: &mut [u8],
    p: &Params,
    next: &[f32],
    ahead: &[f32],
    stream: bool,
) -> MinMax {
    let n = x.len().min(out.len());
    let nn = next.len();
    let (lo, hi) = p.bounds();
    let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let f = _mm512_set1_ps(p.factor);
    let zp = _mm512_set1_epi32(p.zp);
    let r = p.rounding;
    let (xp, op, np) = (x.as_ptr(), out.as_mut_ptr(), next.as_ptr());
    let mut mlo = [_mm512_set1_ps(f32::INFINITY); 4];
    let mut mhi = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
    let mut nan: __mmask16 = 0;
    let mut i = 0usize;
    let stream = stream && n >= 128;
    if stream {
        let mis = (op as usize) & 63;
        let peel = if mis == 0 { 0 } else { 64 - mis };
        while i < peel {
            let k = (peel - i).min(16);
            let m: __mmask16 = ((1u32 << k) - 1) as u16;
            // SAFETY: lanes `i..i + k` are within both slices (peel < 64 <= n).
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
    }
    let covered_from = i.min(nn);
    let (ap, an) = (ahead.as_ptr(), ahead.len());
    while i + 64 <= n {
        if i + 64 <= an {
            // SAFETY: prefetch never faults; the addresses are inside `ahead`.
            unsafe {
                for k in 0..4 {
                    _mm_prefetch::<_MM_HINT_T1>(ap.add(i + 16 * k) as *const i8);
                }
            }
        }
        if i + 64 <= nn {
            for k in 0..4 {
                // SAFETY: 64 elements from `i` are inside `next`.
                let v = unsafe { _mm512_loadu_ps(np.add(i + 16 * k)) };
                mlo[k] = _mm512_min_ps(v, mlo[k]);
                mhi[k] = _mm512_max_ps(v, mhi[k]);
                nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            }
        }
        // SAFETY: 64 elements from `i` are in bounds of `x` and `out`; with `stream`, `op + i`
        // is 64-byte aligned (peeled above).
        unsafe {
            let a = one(_mm512_loadu_ps(xp.add(i)), f, vlo, vhi, zp, r);
            let b = one(_mm512_loadu_ps(xp.add(i + 16)), f, vlo, vhi, zp, r);
            let c = one(_mm512_loadu_ps(xp.add(i + 32)), f, vlo, vhi, zp, r);
            let d = one(_mm512_loadu_ps(xp.add(i + 48)), f, vlo, vhi, zp, r);
            let line = narrow4(a, b, c, d);
            if stream {
                _mm512_stream_si512(op.add(i) as *mut __m512i, line);
            } else {
                _mm512_storeu_si512(op.add(i) as *mut __m512i, line);
            }
        }
        i += 64;
    }
    // No fence here: the caller fences once after its last streaming call.
    // `next[covered_from..covered_to]` was reduced in the loop above.
    let covered_to = if covered_from + 64 <= nn.min(i) {
        covered_from + (nn.min(i) - covered_from) / 64 * 64
    } else {
        covered_from
    };
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
    // SAFETY: both spans are inside `next`.
    unsafe {
        minmax_span(np, 0, covered_from, &mut mlo[0], &mut mhi[0], &mut nan);
        minmax_span(np, covered_to, nn, &mut mlo[1], &mut mhi[1], &mut nan);
    }
    let l = _mm512_min_ps(_mm512_min_ps(mlo[0], mlo[1]), _mm512_min_ps(mlo[2], mlo[3]));
    let h = _mm512_max_ps(_mm512_max_ps(mhi[0], mhi[1]), _mm512_max_ps(mhi[2], mhi[3]));
    MinMax {
        min: _mm512_reduce_min_ps(l) + 0.0,
        max: _mm512_reduce_max_ps(h) + 0.0,
        nan: nan != 0,
    }
}
