//! AVX-512 split step of the select kernel: compare 16 keys at once, write the keep flags as
//! bytes, and pack the in-bin keys and indices with `vpcompressd` / `vpcompressq`
//! (merge-masked register form) and masked stores. Semantics: `scalar::split_block`.

use std::arch::x86_64::*;

use super::scalar;

/// See `scalar::split_block`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL; `keep.len() == keys.len()`; `ci` / `ck` have room
/// for every in-bin key after `c`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub unsafe fn split_block(
    keys: &[u32],
    base: u64,
    lo: u32,
    hi: u32,
    keep: &mut [bool],
    ci: &mut [u64],
    ck: &mut [u32],
    mut c: usize,
) -> (usize, usize, bool) {
    let n = keys.len().min(keep.len());
    let lov = _mm512_set1_epi32(lo as i32);
    let hiv = _mm512_set1_epi32(hi as i32);
    let nanv = _mm512_set1_epi32(0x7f80_0000);
    let mut below = 0usize;
    let mut nan: u16 = 0;
    let one = _mm_set1_epi8(1);
    let zero = _mm512_setzero_si512();
    let iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    let mut j = 0;
    while j + 16 <= n {
        // SAFETY: j + 16 <= keys.len().
        let k = unsafe { _mm512_loadu_si512(keys.as_ptr().add(j) as *const _) };
        let gt = _mm512_cmpgt_epu32_mask(k, hiv);
        let lt = _mm512_cmplt_epu32_mask(k, lov);
        below += lt.count_ones() as usize;
        nan |= _mm512_cmpgt_epu32_mask(k, nanv);
        // SAFETY: 16 bytes at keep[j..j + 16]; each byte is 0 or 1, a valid bool.
        unsafe {
            _mm_storeu_si128(
                keep.as_mut_ptr().add(j) as *mut _,
                _mm_maskz_mov_epi8(gt, one),
            )
        };
        let eq = !(gt | lt);
        if eq != 0 {
            let cnt = eq.count_ones() as usize;
            assert!(c + cnt <= ci.len() && c + cnt <= ck.len());
            let kc = _mm512_mask_compress_epi32(zero, eq, k);
            let m = ((1u32 << cnt) - 1) as u16;
            // SAFETY: cnt lanes at ck[c..c + cnt] (checked above).
            unsafe { _mm512_mask_storeu_epi32(ck.as_mut_ptr().add(c) as *mut _, m, kc) };
            let i0 = _mm512_add_epi64(_mm512_set1_epi64((base + j as u64) as i64), iota);
            let i1 = _mm512_add_epi64(i0, _mm512_set1_epi64(8));
            let (lo, hi) = (eq as u8, (eq >> 8) as u8);
            let nlo = lo.count_ones() as usize;
            let nhi = hi.count_ones() as usize;
            let clo = _mm512_mask_compress_epi64(zero, lo, i0);
            let chi = _mm512_mask_compress_epi64(zero, hi, i1);
            // SAFETY: nlo + nhi = cnt lanes at ci[c..c + cnt] (checked above).
            unsafe {
                _mm512_mask_storeu_epi64(
                    ci.as_mut_ptr().add(c) as *mut _,
                    ((1u32 << nlo) - 1) as u8,
                    clo,
                );
                _mm512_mask_storeu_epi64(
                    ci.as_mut_ptr().add(c + nlo) as *mut _,
                    ((1u32 << nhi) - 1) as u8,
                    chi,
                );
            }
            c += cnt;
        }
        j += 16;
    }
    let (c, b, nn) = scalar::split_block(
        &keys[j..n],
        base + j as u64,
        lo,
        hi,
        &mut keep[j..n],
        ci,
        ck,
        c,
    );
    (c, below + b, nan != 0 || nn)
}
