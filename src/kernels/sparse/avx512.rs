//! AVX-512 sparse kernels: `vptestm{b,w,d}` for the mask, VBMI2 `vpcompress{b,w}` /
//! `vpexpand{b,w}` and AVX-512F `vpcompressd` / `vpexpandd` in their merge-masked register
//! form (the zero-masked form carries a false dependency on Zen 4), full-width stores while the
//! output has room and masked loads / stores at the ends, so nothing outside the slices is
//! touched. Semantics: `scalar.rs`.

use std::arch::x86_64::*;

macro_rules! kernels {
    (
        $t:ty, $lanes:expr, $kty:ty,
        $bm:ident, $c:ident, $e:ident, $mc:ident,
        $set1:ident, $test:ident, $loadz:ident, $storem:ident, $compress:ident, $expand:ident
    ) => {
        /// Build the mask of `v` (bit set where `v & care != 0`); see `scalar::build_mask`.
        ///
        /// # Safety
        /// The CPU must support AVX-512 F/BW/VL/VBMI2; `out.len() == v.len().div_ceil(8)`.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
        pub unsafe fn $bm(v: &[$t], care: $t, out: &mut [u8]) -> usize {
            const B: usize = $lanes / 8; // mask bytes per vector
            let c = $set1(care as _);
            let n = v.len();
            let mut nnz = 0usize;
            let mut i = 0;
            while i + $lanes <= n {
                // SAFETY: i + lanes <= v.len(); unaligned load.
                let x = unsafe { _mm512_loadu_si512(v.as_ptr().add(i) as *const _) };
                let k: $kty = $test(x, c);
                nnz += k.count_ones() as usize;
                out[i / 8..i / 8 + B].copy_from_slice(&k.to_le_bytes());
                i += $lanes;
            }
            let rem = n - i;
            if rem > 0 {
                let tail: $kty = ((1u64 << rem) - 1) as $kty;
                // SAFETY: masked load; lanes >= rem are not read (fault-suppressed).
                let x = unsafe { $loadz(tail, v.as_ptr().add(i) as *const _) };
                let k: $kty = $test(x, c) & tail;
                nnz += k.count_ones() as usize;
                let bytes = k.to_le_bytes();
                let nb = rem.div_ceil(8);
                out[i / 8..i / 8 + nb].copy_from_slice(&bytes[..nb]);
            }
            nnz
        }

        /// Gather kept values; see `scalar::compress`. Writes exactly the kept count.
        ///
        /// # Safety
        /// AVX-512 F/BW/VL/VBMI2; `mask.len() >= v.len().div_ceil(8)`, `out` long enough.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
        pub unsafe fn $c(v: &[$t], mask: &[u8], out: &mut [$t]) -> usize {
            const B: usize = $lanes / 8;
            let n = v.len();
            let mut j = 0usize;
            let mut i = 0;
            let src = _mm512_setzero_si512();
            while i + $lanes <= n {
                let mut kb = [0u8; B];
                kb.copy_from_slice(&mask[i / 8..i / 8 + B]);
                let k = <$kty>::from_le_bytes(kb);
                let cnt = k.count_ones() as usize;
                if k != 0 {
                    // SAFETY: i + lanes <= v.len().
                    let x = unsafe { _mm512_loadu_si512(v.as_ptr().add(i) as *const _) };
                    // merge-masked register form into a constant register: no dependency on
                    // the previous result and none on a stale destination
                    let r = $compress(src, k, x);
                    if j + $lanes <= out.len() {
                        // SAFETY: j + lanes <= out.len().
                        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(j) as *mut _, r) };
                    } else {
                        let m: $kty = if cnt == $lanes { !0 } else { ((1u64 << cnt) - 1) as $kty };
                        // SAFETY: masked store of cnt <= out.len() - j lanes.
                        unsafe { $storem(out.as_mut_ptr().add(j) as *mut _, m, r) };
                    }
                    j += cnt;
                }
                i += $lanes;
            }
            let rem = n - i;
            if rem > 0 {
                let tail: $kty = ((1u64 << rem) - 1) as $kty;
                let nb = rem.div_ceil(8);
                let mut kb = [0u8; B];
                kb[..nb].copy_from_slice(&mask[i / 8..i / 8 + nb]);
                let k = <$kty>::from_le_bytes(kb) & tail;
                // SAFETY: masked load of the rem remaining lanes.
                let x = unsafe { $loadz(tail, v.as_ptr().add(i) as *const _) };
                let r = $compress(src, k, x);
                let cnt = k.count_ones() as usize;
                let m: $kty = ((1u64 << cnt) - 1) as $kty;
                // SAFETY: masked store of cnt <= out.len() - j lanes.
                unsafe { $storem(out.as_mut_ptr().add(j) as *mut _, m, r) };
                j += cnt;
            }
            j
        }

        /// `build_mask` and `compress` in one pass; `out.len() >= v.len()` (full-width stores).
        ///
        /// # Safety
        /// AVX-512 F/BW/VL/VBMI2; `mask.len() == v.len().div_ceil(8)`, `out.len() >= v.len()`.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
        pub unsafe fn $mc(v: &[$t], care: $t, mask: &mut [u8], out: &mut [$t]) -> usize {
            const B: usize = $lanes / 8;
            let c = $set1(care as _);
            let src = _mm512_setzero_si512();
            let n = v.len();
            assert!(out.len() >= n && mask.len() == n.div_ceil(8));
            let mut j = 0usize;
            let mut i = 0;
            while i + $lanes <= n {
                // SAFETY: i + lanes <= v.len().
                let x = unsafe { _mm512_loadu_si512(v.as_ptr().add(i) as *const _) };
                let k: $kty = $test(x, c);
                mask[i / 8..i / 8 + B].copy_from_slice(&k.to_le_bytes());
                let r = $compress(src, k, x);
                // SAFETY: j <= i, so j + lanes <= i + lanes <= n <= out.len().
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(j) as *mut _, r) };
                j += k.count_ones() as usize;
                i += $lanes;
            }
            let rem = n - i;
            if rem > 0 {
                let tail: $kty = ((1u64 << rem) - 1) as $kty;
                // SAFETY: masked load of the rem remaining lanes.
                let x = unsafe { $loadz(tail, v.as_ptr().add(i) as *const _) };
                let k: $kty = $test(x, c) & tail;
                let nb = rem.div_ceil(8);
                mask[i / 8..i / 8 + nb].copy_from_slice(&k.to_le_bytes()[..nb]);
                let r = $compress(src, k, x);
                let cnt = k.count_ones() as usize;
                // SAFETY: masked store of cnt <= rem lanes at j <= i (inside out).
                unsafe { $storem(out.as_mut_ptr().add(j) as *mut _, ((1u64 << cnt) - 1) as $kty, r) };
                j += cnt;
            }
            j
        }

        /// Scatter kept values into dense form; see `scalar::expand`.
        ///
        /// # Safety
        /// AVX-512 F/BW/VL/VBMI2; `mask.len() >= out.len().div_ceil(8)`, `kept` holds the
        /// popcount of the mask over `out.len()` bits.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
        pub unsafe fn $e(mask: &[u8], kept: &[$t], out: &mut [$t]) -> usize {
            const B: usize = $lanes / 8;
            let n = out.len();
            let zero = _mm512_setzero_si512();
            let mut j = 0usize;
            let mut i = 0;
            while i + $lanes <= n {
                let mut kb = [0u8; B];
                kb.copy_from_slice(&mask[i / 8..i / 8 + B]);
                let k = <$kty>::from_le_bytes(kb);
                let cnt = k.count_ones() as usize;
                let x = if j + $lanes <= kept.len() {
                    // SAFETY: j + lanes <= kept.len().
                    unsafe { _mm512_loadu_si512(kept.as_ptr().add(j) as *const _) }
                } else {
                    let m: $kty = if cnt == $lanes { !0 } else { ((1u64 << cnt) - 1) as $kty };
                    // SAFETY: masked load of cnt <= kept.len() - j lanes.
                    unsafe { $loadz(m, kept.as_ptr().add(j) as *const _) }
                };
                let r = $expand(zero, k, x);
                // SAFETY: i + lanes <= out.len().
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(i) as *mut _, r) };
                j += cnt;
                i += $lanes;
            }
            let rem = n - i;
            if rem > 0 {
                let tail: $kty = ((1u64 << rem) - 1) as $kty;
                let nb = rem.div_ceil(8);
                let mut kb = [0u8; B];
                kb[..nb].copy_from_slice(&mask[i / 8..i / 8 + nb]);
                let k = <$kty>::from_le_bytes(kb) & tail;
                let cnt = k.count_ones() as usize;
                let m: $kty = ((1u64 << cnt) - 1) as $kty;
                // SAFETY: masked load of cnt <= kept.len() - j lanes.
                let x = unsafe { $loadz(m, kept.as_ptr().add(j) as *const _) };
                let r = $expand(zero, k, x);
                // SAFETY: masked store of the rem remaining lanes.
                unsafe { $storem(out.as_mut_ptr().add(i) as *mut _, tail, r) };
                j += cnt;
            }
            j
        }
    };
}

kernels!(
    u8,
    64,
    u64,
    build_mask_u8,
    compress_u8,
    expand_u8,
    mask_compress_u8,
    _mm512_set1_epi8,
    _mm512_test_epi8_mask,
    _mm512_maskz_loadu_epi8,
    _mm512_mask_storeu_epi8,
    _mm512_mask_compress_epi8,
    _mm512_mask_expand_epi8
);
kernels!(
    u16,
    32,
    u32,
    build_mask_u16,
    compress_u16,
    expand_u16,
    mask_compress_u16,
    _mm512_set1_epi16,
    _mm512_test_epi16_mask,
    _mm512_maskz_loadu_epi16,
    _mm512_mask_storeu_epi16,
    _mm512_mask_compress_epi16,
    _mm512_mask_expand_epi16
);
kernels!(
    u32,
    16,
    u16,
    build_mask_u32,
    compress_u32,
    expand_u32,
    mask_compress_u32,
    _mm512_set1_epi32,
    _mm512_test_epi32_mask,
    _mm512_maskz_loadu_epi32,
    _mm512_mask_storeu_epi32,
    _mm512_mask_compress_epi32,
    _mm512_mask_expand_epi32
);
