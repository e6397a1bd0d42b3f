//! AVX2 4-bit packing: 64 values -> 32 bytes per step (`vpand` / `vpsrlw` / `vpor`, one
//! `vpackuswb` and a lane fix-up), and the inverse (`vpunpck[lh]bw` + lane fix-up, nibble sign
//! extension by `(v ^ 8) - 8`); tails use the scalar twin. Also used at the AVX-512 level.

use std::arch::x86_64::*;

use super::scalar;

/// # Safety
/// The CPU must support AVX2; `out.len() == ceil(q.len() / 2)`.
#[target_feature(enable = "avx2")]
pub unsafe fn pack(q: &[u8], out: &mut [u8]) {
    let n = q.len().min(2 * out.len());
    let (qp, op) = (q.as_ptr(), out.as_mut_ptr());
    let lo_mask = _mm256_set1_epi16(0x000f);
    let mut i = 0usize;
    while i + 64 <= n {
        // SAFETY: 64 input bytes from `i` and 32 output bytes from `i / 2` are in bounds.
        unsafe {
            let a = _mm256_loadu_si256(qp.add(i) as *const __m256i);
            let b = _mm256_loadu_si256(qp.add(i + 32) as *const __m256i);
            // 16-bit lane k holds q[2k] (low byte) and q[2k + 1] (high byte).
            let ca = _mm256_or_si256(
                _mm256_and_si256(a, lo_mask),
                _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<8>(a), lo_mask)),
            );
            let cb = _mm256_or_si256(
                _mm256_and_si256(b, lo_mask),
                _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<8>(b), lo_mask)),
            );
            let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(ca, cb));
            _mm256_storeu_si256(op.add(i / 2) as *mut __m256i, p);
        }
        i += 64;
    }
    scalar::pack(&q[i..], &mut out[i / 2..]);
}

/// # Safety
/// The CPU must support AVX2; `p.len() == ceil(out.len() / 2)`.
#[target_feature(enable = "avx2")]
pub unsafe fn unpack(p: &[u8], out: &mut [u8], signed: bool) {
    let n = out.len().min(2 * p.len());
    let (pp, op) = (p.as_ptr(), out.as_mut_ptr());
    let m = _mm256_set1_epi8(0x0f);
    let eight = _mm256_set1_epi8(8);
    let mut i = 0usize;
    while i + 64 <= n {
        // SAFETY: 32 packed bytes from `i / 2` and 64 output bytes from `i` are in bounds.
        unsafe {
            let v = _mm256_loadu_si256(pp.add(i / 2) as *const __m256i);
            let mut lo = _mm256_and_si256(v, m);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m);
            if signed {
                lo = _mm256_sub_epi8(_mm256_xor_si256(lo, eight), eight);
                hi = _mm256_sub_epi8(_mm256_xor_si256(hi, eight), eight);
            }
            let a = _mm256_unpacklo_epi8(lo, hi);
            let b = _mm256_unpackhi_epi8(lo, hi);
            _mm256_storeu_si256(
                op.add(i) as *mut __m256i,
                _mm256_permute2x128_si256::<0x20>(a, b),
            );
            _mm256_storeu_si256(
                op.add(i + 32) as *mut __m256i,
                _mm256_permute2x128_si256::<0x31>(a, b),
            );
        }
        i += 64;
    }
    scalar::unpack(&p[i / 2..], &mut out[i..], signed);
}
