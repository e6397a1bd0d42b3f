//! AVX-512 rANS loops: 16 states per zmm, two zmm for the 32 ways. Table lookups are
//! `vpgatherdd`; the encoder packs the words of the emitting lanes with `vpcompressw`
//! (merge-masked register form) and a masked store; the decoder routes the next words to the
//! lanes that renormalize with `vpexpandd`. Semantics: `scalar.rs` (bit-identical streams).

use std::arch::x86_64::*;

use super::{scalar, DecTable, EncTable, L, M, SCALE_BITS, WAYS};

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
fn gather(idx: __m512i, table: &[u32; 256]) -> __m512i {
    // SAFETY: every index is a byte value (< 256), inside the 256-entry table.
    unsafe { _mm512_i32gather_epi32::<4>(idx, table.as_ptr() as *const i32) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
fn enc_step(x: __m512i, syms: &[u8], t: &EncTable, buf: &mut [u8], w: &mut usize) -> __m512i {
    debug_assert!(syms.len() == 16);
    // SAFETY: syms holds 16 bytes.
    let s = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(syms.as_ptr() as *const _) });
    // bias (16 bits) and M - freq (16 bits) in one gather; x_max = freq << 16
    let bc = gather(s, &t.bias_cmpl);
    let bias = _mm512_and_si512(bc, _mm512_set1_epi32(0xffff));
    let cmpl = _mm512_srli_epi32::<16>(bc);
    let f = _mm512_sub_epi32(_mm512_set1_epi32(M as i32), cmpl);
    let x_max = _mm512_slli_epi32::<16>(f);
    let emit = _mm512_cmpge_epu32_mask(x, x_max);
    let cnt = emit.count_ones() as usize;
    let words = _mm512_cvtepi32_epi16(x);
    let packed = _mm256_mask_compress_epi16(_mm256_setzero_si256(), emit, words);
    *w -= cnt; // at most one word per symbol: w stays >= 1
    let m = ((1u32 << cnt) - 1) as u16;
    // SAFETY: writes words w..w+cnt (bytes 2w..2w+2cnt), inside buf (w + cnt is the previous
    // w <= buf.len() / 2); x86 stores the u16 lanes little endian.
    unsafe { _mm256_mask_storeu_epi16(buf.as_mut_ptr().add(2 * *w) as *mut i16, m, packed) };
    let x = _mm512_mask_srli_epi32(x, emit, x, 16);
    let rcp = gather(s, &t.rcp);
    // shift = ceil(log2 f) - 1 = floor(log2(f - 1)) for f >= 2 (0 for f = 1): the exponent of
    // float(f - 1), exact since f <= 2^15
    let e = _mm512_srli_epi32::<23>(_mm512_castps_si512(_mm512_cvtepi32_ps(_mm512_sub_epi32(
        f,
        _mm512_set1_epi32(1),
    ))));
    let shift = _mm512_max_epi32(
        _mm512_sub_epi32(e, _mm512_set1_epi32(127)),
        _mm512_setzero_si512(),
    );
    let even = _mm512_srli_epi64::<32>(_mm512_mul_epu32(x, rcp));
    let odd = _mm512_mul_epu32(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(rcp));
    let hi = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    let q = _mm512_srlv_epi32(hi, shift);
    _mm512_add_epi32(_mm512_add_epi32(x, bias), _mm512_mullo_epi32(q, cmpl))
}

/// See `scalar::encode`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VBMI2; `buf.len() == 2 * (syms.len() + 1)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
pub unsafe fn encode(syms: &[u8], t: &EncTable, buf: &mut [u8]) -> ([u32; WAYS], usize) {
    let n = syms.len();
    let mut w = buf.len() / 2;
    let mut x = [L; WAYS];
    let mut i = n;
    while !i.is_multiple_of(WAYS) {
        i -= 1;
        scalar::put(&mut x[i % WAYS], syms[i] as usize, t, buf, &mut w);
    }
    // SAFETY: x holds 32 u32 = two zmm.
    let (mut xa, mut xb) = unsafe {
        (
            _mm512_loadu_si512(x.as_ptr() as *const _),
            _mm512_loadu_si512(x.as_ptr().add(16) as *const _),
        )
    };
    while i > 0 {
        i -= WAYS;
        // backwards: lanes 31..16, then 15..0
        xb = enc_step(xb, &syms[i + 16..i + 32], t, buf, &mut w);
        xa = enc_step(xa, &syms[i..i + 16], t, buf, &mut w);
    }
    // SAFETY: x holds 32 u32.
    unsafe {
        _mm512_storeu_si512(x.as_mut_ptr() as *mut _, xa);
        _mm512_storeu_si512(x.as_mut_ptr().add(16) as *mut _, xb);
    }
    (x, 2 * w)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
fn dec_step(x: __m512i, t: &DecTable) -> (__m512i, __m512i) {
    let slot = _mm512_and_si512(x, _mm512_set1_epi32((M - 1) as i32));
    // SAFETY: slots are < M = fb.len(); the 4-byte symbol reads end at M + 2 < sym.len().
    let (e, s) = unsafe {
        (
            _mm512_i32gather_epi32::<4>(slot, t.fb.as_ptr() as *const i32),
            _mm512_i32gather_epi32::<1>(slot, t.sym.as_ptr() as *const i32),
        )
    };
    let f = _mm512_and_si512(e, _mm512_set1_epi32(0xffff));
    let x = _mm512_add_epi32(
        _mm512_mullo_epi32(f, _mm512_srli_epi32::<SCALE_BITS>(x)),
        _mm512_srli_epi32::<16>(e),
    );
    (x, s)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
fn renorm(x: __m512i, words: &[u8], p: &mut usize) -> __m512i {
    let nwords = words.len() / 2;
    let need = _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(L as i32));
    let q = (*p).min(nwords);
    let avail = (nwords - q).min(16);
    let lm = ((1u32 << avail) - 1) as u16;
    // SAFETY: masked load of avail <= nwords - q words starting at word q (inside `words`).
    let wv = unsafe { _mm256_maskz_loadu_epi16(lm, words.as_ptr().add(2 * q) as *const i16) };
    let w32 = _mm512_cvtepu16_epi32(wv);
    let wexp = _mm512_mask_expand_epi32(_mm512_setzero_si512(), need, w32);
    *p += need.count_ones() as usize;
    _mm512_mask_mov_epi32(x, need, _mm512_or_si512(_mm512_slli_epi32::<16>(x), wexp))
}

/// See `scalar::decode`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VBMI2; states in `[L, 2^31)`; `t.sym.len() == M + 3`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
pub unsafe fn decode(states: &[u32; WAYS], words: &[u8], t: &DecTable, out: &mut [u8]) -> bool {
    let nwords = words.len() / 2;
    let mut p = 0usize;
    // SAFETY: states holds 32 u32.
    let (mut xa, mut xb) = unsafe {
        (
            _mm512_loadu_si512(states.as_ptr() as *const _),
            _mm512_loadu_si512(states.as_ptr().add(16) as *const _),
        )
    };
    let n = out.len();
    let mut i = 0;
    while i + WAYS <= n {
        let (ya, sa) = dec_step(xa, t);
        let (yb, sb) = dec_step(xb, t);
        xa = renorm(ya, words, &mut p);
        xb = renorm(yb, words, &mut p);
        // SAFETY: i + 32 <= out.len().
        unsafe {
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut _, _mm512_cvtepi32_epi8(sa));
            _mm_storeu_si128(
                out.as_mut_ptr().add(i + 16) as *mut _,
                _mm512_cvtepi32_epi8(sb),
            );
        }
        i += WAYS;
        if p > nwords {
            return false;
        }
    }
    let mut x = [0u32; WAYS];
    // SAFETY: x holds 32 u32.
    unsafe {
        _mm512_storeu_si512(x.as_mut_ptr() as *mut _, xa);
        _mm512_storeu_si512(x.as_mut_ptr().add(16) as *mut _, xb);
    }
    for (j, o) in out[i..].iter_mut().enumerate() {
        *o = scalar::step(&mut x[j], &mut p, words, t);
    }
    p == nwords && x.iter().all(|&s| s == L)
}
