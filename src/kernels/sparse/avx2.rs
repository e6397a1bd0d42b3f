//! AVX2 sparse kernels: compare + `movemask` for the mask; compress / expand eight elements at
//! a time through shuffle lookup tables indexed by one mask byte (`pshufb` for 1- and 2-byte
//! elements, `vpermd` for 4-byte ones). Full-width stores only while the output has room; the
//! last few elements go through the scalar twin. Semantics: `scalar.rs`.

use std::arch::x86_64::*;

use super::scalar;

const fn comp8() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut v = [0x80u8; 8];
        let mut k = 0;
        let mut e = 0;
        while e < 8 {
            if b >> e & 1 != 0 {
                v[k] = e as u8;
                k += 1;
            }
            e += 1;
        }
        t[b] = u64::from_le_bytes(v);
        b += 1;
    }
    t
}

const fn exp8() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut v = [0x80u8; 8];
        let mut k = 0;
        let mut p = 0;
        while p < 8 {
            if b >> p & 1 != 0 {
                v[p] = k as u8;
                k += 1;
            }
            p += 1;
        }
        t[b] = u64::from_le_bytes(v);
        b += 1;
    }
    t
}

const fn comp16() -> [[u8; 16]; 256] {
    let mut t = [[0x80u8; 16]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        let mut e = 0;
        while e < 8 {
            if b >> e & 1 != 0 {
                t[b][2 * k] = 2 * e as u8;
                t[b][2 * k + 1] = 2 * e as u8 + 1;
                k += 1;
            }
            e += 1;
        }
        b += 1;
    }
    t
}

const fn exp16() -> [[u8; 16]; 256] {
    let mut t = [[0x80u8; 16]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        let mut p = 0;
        while p < 8 {
            if b >> p & 1 != 0 {
                t[b][2 * p] = 2 * k as u8;
                t[b][2 * p + 1] = 2 * k as u8 + 1;
                k += 1;
            }
            p += 1;
        }
        b += 1;
    }
    t
}

const fn comp32() -> [[u32; 8]; 256] {
    let mut t = [[0u32; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        let mut e = 0;
        while e < 8 {
            if b >> e & 1 != 0 {
                t[b][k] = e as u32;
                k += 1;
            }
            e += 1;
        }
        b += 1;
    }
    t
}

const fn exp32() -> [[u32; 8]; 256] {
    let mut t = [[0u32; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        let mut p = 0;
        while p < 8 {
            if b >> p & 1 != 0 {
                t[b][p] = k;
                k += 1;
            }
            p += 1;
        }
        b += 1;
    }
    t
}

static COMP8: [u64; 256] = comp8();
static EXP8: [u64; 256] = exp8();
static COMP16: [[u8; 16]; 256] = comp16();
static EXP16: [[u8; 16]; 256] = exp16();
static COMP32: [[u32; 8]; 256] = comp32();
static EXP32: [[u32; 8]; 256] = exp32();

/// Mask of `v` (1-byte elements); see `scalar::build_mask`.
///
/// # Safety
/// The CPU must support AVX2; `out.len() == v.len().div_ceil(8)`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn build_mask_u8(v: &[u8], care: u8, out: &mut [u8]) -> usize {
    let c = _mm256_set1_epi8(care as i8);
    let z = _mm256_setzero_si256();
    let mut nnz = 0;
    let mut i = 0;
    while i + 32 <= v.len() {
        // SAFETY: i + 32 <= v.len().
        let x = unsafe { _mm256_loadu_si256(v.as_ptr().add(i) as *const _) };
        let eq = _mm256_cmpeq_epi8(_mm256_and_si256(x, c), z);
        let k = !(_mm256_movemask_epi8(eq) as u32);
        nnz += k.count_ones() as usize;
        out[i / 8..i / 8 + 4].copy_from_slice(&k.to_le_bytes());
        i += 32;
    }
    nnz + scalar::build_mask(&v[i..], care, &mut out[i / 8..])
}

/// Mask of `v` (2-byte elements); see `scalar::build_mask`.
///
/// # Safety
/// The CPU must support AVX2; `out.len() == v.len().div_ceil(8)`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn build_mask_u16(v: &[u16], care: u16, out: &mut [u8]) -> usize {
    let c = _mm256_set1_epi16(care as i16);
    let z = _mm256_setzero_si256();
    let mut nnz = 0;
    let mut i = 0;
    while i + 32 <= v.len() {
        // SAFETY: i + 32 <= v.len().
        let (a, b) = unsafe {
            (
                _mm256_loadu_si256(v.as_ptr().add(i) as *const _),
                _mm256_loadu_si256(v.as_ptr().add(i + 16) as *const _),
            )
        };
        let ea = _mm256_cmpeq_epi16(_mm256_and_si256(a, c), z);
        let eb = _mm256_cmpeq_epi16(_mm256_and_si256(b, c), z);
        // pack the 16-bit lanes to bytes (per 128-bit half), then restore the order
        let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(ea, eb));
        let k = !(_mm256_movemask_epi8(p) as u32);
        nnz += k.count_ones() as usize;
        out[i / 8..i / 8 + 4].copy_from_slice(&k.to_le_bytes());
        i += 32;
    }
    nnz + scalar::build_mask(&v[i..], care, &mut out[i / 8..])
}

/// Mask of `v` (4-byte elements); see `scalar::build_mask`.
///
/// # Safety
/// The CPU must support AVX2; `out.len() == v.len().div_ceil(8)`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn build_mask_u32(v: &[u32], care: u32, out: &mut [u8]) -> usize {
    let c = _mm256_set1_epi32(care as i32);
    let z = _mm256_setzero_si256();
    let mut nnz = 0;
    let mut i = 0;
    while i + 8 <= v.len() {
        // SAFETY: i + 8 <= v.len().
        let x = unsafe { _mm256_loadu_si256(v.as_ptr().add(i) as *const _) };
        let eq = _mm256_cmpeq_epi32(_mm256_and_si256(x, c), z);
        let k = !(_mm256_movemask_ps(_mm256_castsi256_ps(eq)) as u32) as u8;
        nnz += k.count_ones() as usize;
        out[i / 8] = k;
        i += 8;
    }
    nnz + scalar::build_mask(&v[i..], care, &mut out[i / 8..])
}

/// Gather kept 1-byte values; see `scalar::compress`.
///
/// # Safety
/// The CPU must support AVX2; `mask.len() >= v.len().div_ceil(8)`, `out` long enough.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn compress_u8(v: &[u8], mask: &[u8], out: &mut [u8]) -> usize {
    let (mut i, mut j) = (0, 0);
    while i + 8 <= v.len() && j + 8 <= out.len() {
        let b = mask[i / 8] as usize;
        let mut w = [0u8; 8];
        w.copy_from_slice(&v[i..i + 8]);
        let x = _mm_cvtsi64_si128(i64::from_le_bytes(w));
        let r = _mm_shuffle_epi8(x, _mm_cvtsi64_si128(COMP8[b] as i64));
        out[j..j + 8].copy_from_slice(&(_mm_cvtsi128_si64(r) as u64).to_le_bytes());
        j += b.count_ones() as usize;
        i += 8;
    }
    j + scalar::compress(&v[i..], &mask[i / 8..], &mut out[j..])
}

/// Scatter kept 1-byte values; see `scalar::expand`.
///
/// # Safety
/// The CPU must support AVX2; lengths as in `scalar::expand`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn expand_u8(mask: &[u8], kept: &[u8], out: &mut [u8]) -> usize {
    let (mut i, mut j) = (0, 0);
    while i + 8 <= out.len() && j + 8 <= kept.len() {
        let b = mask[i / 8] as usize;
        let mut w = [0u8; 8];
        w.copy_from_slice(&kept[j..j + 8]);
        let x = _mm_cvtsi64_si128(i64::from_le_bytes(w));
        let r = _mm_shuffle_epi8(x, _mm_cvtsi64_si128(EXP8[b] as i64));
        out[i..i + 8].copy_from_slice(&(_mm_cvtsi128_si64(r) as u64).to_le_bytes());
        j += b.count_ones() as usize;
        i += 8;
    }
    j + scalar::expand(&mask[i / 8..], &kept[j..], &mut out[i..])
}

/// Gather kept 2-byte values; see `scalar::compress`.
///
/// # Safety
/// The CPU must support AVX2; `mask.len() >= v.len().div_ceil(8)`, `out` long enough.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn compress_u16(v: &[u16], mask: &[u8], out: &mut [u16]) -> usize {
    let (mut i, mut j) = (0, 0);
    while i + 8 <= v.len() && j + 8 <= out.len() {
        let b = mask[i / 8] as usize;
        // SAFETY: i + 8 <= v.len(), j + 8 <= out.len(); the table row is 16 bytes.
        unsafe {
            let x = _mm_loadu_si128(v.as_ptr().add(i) as *const _);
            let s = _mm_loadu_si128(COMP16[b].as_ptr() as *const _);
            _mm_storeu_si128(out.as_mut_ptr().add(j) as *mut _, _mm_shuffle_epi8(x, s));
        }
        j += b.count_ones() as usize;
        i += 8;
    }
    j + scalar::compress(&v[i..], &mask[i / 8..], &mut out[j..])
}

/// Scatter kept 2-byte values; see `scalar::expand`.
///
/// # Safety
/// The CPU must support AVX2; lengths as in `scalar::expand`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn expand_u16(mask: &[u8], kept: &[u16], out: &mut [u16]) -> usize {
    let (mut i, mut j) = (0, 0);
    while i + 8 <= out.len() && j + 8 <= kept.len() {
        let b = mask[i / 8] as usize;
        // SAFETY: j + 8 <= kept.len(), i + 8 <= out.len(); the table row is 16 bytes.
        unsafe {
            let x = _mm_loadu_si128(kept.as_ptr().add(j) as *const _);
            let s = _mm_loadu_si128(EXP16[b].as_ptr() as *const _);
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut _, _mm_shuffle_epi8(x, s));
        }
        j += b.count_ones() as usize;
        i += 8;
    }
    j + scalar::expand(&mask[i / 8..], &kept[j..], &mut out[i..])
}

/// Gather kept 4-byte values; see `scalar::compress`.
///
/// # Safety
/// The CPU must support AVX2; `mask.len() >= v.len().div_ceil(8)`, `out` long enough.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn compress_u32(v: &[u32], mask: &[u8], out: &mut [u32]) -> usize {
    let (mut i, mut j) = (0, 0);
    while i + 8 <= v.len() && j + 8 <= out.len() {
        let b = mask[i / 8] as usize;
        // SAFETY: i + 8 <= v.len(), j + 8 <= out.len(); the table row is 32 bytes.
        unsafe {
            let x = _mm256_loadu_si256(v.as_ptr().add(i) as *const _);
            let s = _mm256_loadu_si256(COMP32[b].as_ptr() as *const _);
            _mm256_storeu_si256(
                out.as_mut_ptr().add(j) as *mut _,
                _mm256_permutevar8x32_epi32(x, s),
            );
        }
        j += b.count_ones() as usize;
        i += 8;
    }
    j + scalar::compress(&v[i..], &mask[i / 8..], &mut out[j..])
}

/// Scatter kept 4-byte values; see `scalar::expand`.
///
/// # Safety
/// The CPU must support AVX2; lengths as in `scalar::expand`.
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn expand_u32(mask: &[u8], kept: &[u32], out: &mut [u32]) -> usize {
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let (mut i, mut j) = (0, 0);
    while i + 8 <= out.len() && j + 8 <= kept.len() {
        let b = mask[i / 8] as usize;
        let lanes = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(b as i32), bits), bits);
        // SAFETY: j + 8 <= kept.len(), i + 8 <= out.len(); the table row is 32 bytes.
        unsafe {
            let x = _mm256_loadu_si256(kept.as_ptr().add(j) as *const _);
            let s = _mm256_loadu_si256(EXP32[b].as_ptr() as *const _);
            let r = _mm256_and_si256(_mm256_permutevar8x32_epi32(x, s), lanes);
            _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut _, r);
        }
        j += b.count_ones() as usize;
        i += 8;
    }
    j + scalar::expand(&mask[i / 8..], &kept[j..], &mut out[i..])
}

/// `scalar::popcount_bytes` with the POPCNT instruction.
///
/// # Safety
/// The CPU must support POPCNT.
#[target_feature(enable = "popcnt")]
pub unsafe fn popcount_bytes(bytes: &[u8]) -> usize {
    scalar::popcount_bytes(bytes)
}
