//! Sparse kernels: build the bit mask of a tensor, gather its kept values (compress) and
//! scatter them back (expand), for 1-, 2- and 4-byte elements.
//!
//! Mask layout: one bit per element, least significant bit first (bit `i % 8` of byte
//! `i / 8` is element `i`), unused high bits of the last byte zero:
//! `np.packbits(mask, bitorder="little")`. See [`scalar`] for the exact semantics.
//!
//! Entries: [`build_mask`], [`compress`], [`expand`] (validate, dispatch on [`isa::active`],
//! split large inputs over the thread pool) and `*_with(isa, ..)` for tests.

use crate::error::{Error, Result};
use crate::kernels::isa::{self, Isa, Vector};
use crate::parallel;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod scalar;
#[cfg(test)]
mod tests;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
}

/// An element the sparse kernels move: `u8`, `u16` or `u32` (the bit patterns of int8/uint8,
/// float16/bfloat16 and float32).
pub trait Lane:
    sealed::Sealed + Copy + PartialEq + Send + Sync + std::fmt::Debug + 'static
{
    /// Zero.
    const ZERO: Self;
    /// Bitwise and.
    fn and(self, o: Self) -> Self;
    /// Run `build_mask` at `isa` (which the CPU supports).
    fn build_mask_isa(isa: Isa, v: &[Self], care: Self, out: &mut [u8]) -> usize;
    /// Run `compress` at `isa`.
    fn compress_isa(isa: Isa, v: &[Self], mask: &[u8], out: &mut [Self]) -> usize;
    /// Run `expand` at `isa`.
    fn expand_isa(isa: Isa, mask: &[u8], kept: &[Self], out: &mut [Self]) -> usize;
    /// Run `build_mask` then `compress` at `isa` (one pass where the ISA has a fused kernel).
    fn mask_compress_isa(
        isa: Isa,
        v: &[Self],
        care: Self,
        mask: &mut [u8],
        out: &mut [Self],
    ) -> usize;
}

macro_rules! lane_impl {
    ($t:ty, $bm512:ident, $c512:ident, $e512:ident, $bm2:ident, $c2:ident, $e2:ident, $mc512:ident) => {
        impl Lane for $t {
            const ZERO: Self = 0;
            #[inline]
            fn and(self, o: Self) -> Self {
                self & o
            }
            fn build_mask_isa(isa: Isa, v: &[Self], care: Self, out: &mut [u8]) -> usize {
                match isa::kernels(isa).sparse {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: callers pass only levels the CPU supports (checked by `check_isa`).
                    Vector::Avx512 => unsafe { avx512::$bm512(v, care, out) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    Vector::Avx2 => unsafe { avx2::$bm2(v, care, out) },
                    Vector::Scalar => scalar::build_mask(v, care, out),
                }
            }
            fn compress_isa(isa: Isa, v: &[Self], mask: &[u8], out: &mut [Self]) -> usize {
                match isa::kernels(isa).sparse {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU supports the level; lengths were validated by the caller.
                    Vector::Avx512 => unsafe { avx512::$c512(v, mask, out) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    Vector::Avx2 => unsafe { avx2::$c2(v, mask, out) },
                    Vector::Scalar => scalar::compress(v, mask, out),
                }
            }
            fn expand_isa(isa: Isa, mask: &[u8], kept: &[Self], out: &mut [Self]) -> usize {
                match isa::kernels(isa).sparse {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU supports the level; lengths were validated by the caller.
                    Vector::Avx512 => unsafe { avx512::$e512(mask, kept, out) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    Vector::Avx2 => unsafe { avx2::$e2(mask, kept, out) },
                    Vector::Scalar => scalar::expand(mask, kept, out),
                }
            }
            fn mask_compress_isa(
                isa: Isa,
                v: &[Self],
                care: Self,
                mask: &mut [u8],
                out: &mut [Self],
            ) -> usize {
                match isa::kernels(isa).sparse {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU supports the level; `out.len() >= v.len()`, `mask` sized.
                    Vector::Avx512 => unsafe { avx512::$mc512(v, care, mask, out) },
                    // No fused kernel: mask, then compress.
                    #[cfg(target_arch = "x86_64")]
                    Vector::Avx2 => {
                        Self::build_mask_isa(isa, v, care, mask);
                        Self::compress_isa(isa, v, mask, out)
                    }
                    Vector::Scalar => {
                        Self::build_mask_isa(isa, v, care, mask);
                        Self::compress_isa(isa, v, mask, out)
                    }
                }
            }
        }
    };
}

lane_impl!(
    u8,
    build_mask_u8,
    compress_u8,
    expand_u8,
    build_mask_u8,
    compress_u8,
    expand_u8,
    mask_compress_u8
);
lane_impl!(
    u16,
    build_mask_u16,
    compress_u16,
    expand_u16,
    build_mask_u16,
    compress_u16,
    expand_u16,
    mask_compress_u16
);
lane_impl!(
    u32,
    build_mask_u32,
    compress_u32,
    expand_u32,
    build_mask_u32,
    compress_u32,
    expand_u32,
    mask_compress_u32
);

/// Bytes of the packed mask of `n` elements.
pub fn mask_len(n: usize) -> usize {
    n.div_ceil(8)
}

/// Number of set bits among the first `n` bits of `mask` (bits beyond `n` are ignored).
pub fn popcount(mask: &[u8], n: usize) -> usize {
    let full = n / 8;
    let mut c = match isa::kernels(isa::active()).sparse {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: every level from avx2 up includes POPCNT, and the CPU supports it (`kernels`).
        Vector::Avx2 | Vector::Avx512 => unsafe { avx2::popcount_bytes(&mask[..full]) },
        Vector::Scalar => scalar::popcount_bytes(&mask[..full]),
    };
    if !n.is_multiple_of(8) {
        c += (mask[full] & ((1u8 << (n % 8)) - 1)).count_ones() as usize;
    }
    c
}

fn check_isa(isa: Isa) -> Result<()> {
    if !isa.is_supported() {
        return Err(Error::arg(format!("this CPU does not support {isa}")));
    }
    Ok(())
}

/// Elements per parallel chunk (a multiple of 8 so chunks own whole mask bytes).
const CHUNK: usize = 1 << 18;

/// Chunk boundaries (element offsets) for parallel work, or one chunk when single-threaded.
fn chunks(n: usize) -> Vec<(usize, usize)> {
    if parallel::num_threads() <= 1 || n < 2 * CHUNK {
        return vec![(0, n)];
    }
    (0..n.div_ceil(CHUNK))
        .map(|c| (c * CHUNK, ((c + 1) * CHUNK).min(n)))
        .collect()
}

/// Build the mask of `values` (kept where `v & care != 0`) into `out`
/// (`mask_len(values.len())` bytes); returns the number of kept elements.
pub fn build_mask<T: Lane>(values: &[T], care: T, out: &mut [u8]) -> Result<usize> {
    build_mask_with(isa::active(), values, care, out)
}

/// [`build_mask`] at a given level.
pub fn build_mask_with<T: Lane>(isa: Isa, values: &[T], care: T, out: &mut [u8]) -> Result<usize> {
    check_isa(isa)?;
    if out.len() != mask_len(values.len()) {
        return Err(Error::arg(format!(
            "mask buffer has {} bytes, expected {} for {} elements",
            out.len(),
            mask_len(values.len()),
            values.len()
        )));
    }
    let parts = chunks(values.len());
    if parts.len() == 1 {
        return Ok(T::build_mask_isa(isa, values, care, out));
    }
    use rayon::prelude::*;
    let outs: Vec<&mut [u8]> = out.chunks_mut(CHUNK / 8).collect();
    Ok(parallel::install(|| {
        outs.into_par_iter()
            .zip(values.par_chunks(CHUNK))
            .map(|(o, v)| T::build_mask_isa(isa, v, care, o))
            .sum()
    }))
}

/// Gather the kept values of `values` (per `mask`, `mask_len(values.len())` bytes) into the
/// front of `out`; returns how many were written. `out` must hold at least that many.
pub fn compress<T: Lane>(values: &[T], mask: &[u8], out: &mut [T]) -> Result<usize> {
    compress_with(isa::active(), values, mask, out)
}

/// [`compress`] at a given level.
pub fn compress_with<T: Lane>(isa: Isa, values: &[T], mask: &[u8], out: &mut [T]) -> Result<usize> {
    check_isa(isa)?;
    let n = values.len();
    if mask.len() != mask_len(n) {
        return Err(Error::arg(format!(
            "mask has {} bytes, expected {} for {n} elements",
            mask.len(),
            mask_len(n)
        )));
    }
    let parts = chunks(n);
    let counts: Vec<usize> = parts
        .iter()
        .map(|&(a, b)| popcount(&mask[a / 8..], b - a))
        .collect();
    let nnz: usize = counts.iter().sum();
    if out.len() < nnz {
        return Err(Error::arg(format!(
            "output holds {} values, the mask keeps {nnz}",
            out.len()
        )));
    }
    if parts.len() == 1 {
        // The kernels may store whole vectors anywhere inside the slice they get: give them
        // exactly the kept count so nothing past it is touched.
        return Ok(T::compress_isa(isa, values, mask, &mut out[..nnz]));
    }
    let mut outs = Vec::with_capacity(parts.len());
    let mut rest = &mut out[..nnz];
    for &c in &counts {
        let (h, t) = rest.split_at_mut(c);
        outs.push(h);
        rest = t;
    }
    use rayon::prelude::*;
    parallel::install(|| {
        outs.into_par_iter()
            .zip(parts.par_iter())
            .for_each(|(o, &(a, b))| {
                T::compress_isa(isa, &values[a..b], &mask[a / 8..mask_len(b)], o);
            })
    });
    Ok(nnz)
}

/// Scatter `kept` into dense `out` per `mask` (`mask_len(out.len())` bytes); zeros elsewhere.
/// `kept` must hold exactly as many values as the mask has set bits among `out.len()`.
pub fn expand<T: Lane>(mask: &[u8], kept: &[T], out: &mut [T]) -> Result<()> {
    expand_with(isa::active(), mask, kept, out)
}

/// [`expand`] at a given level.
pub fn expand_with<T: Lane>(isa: Isa, mask: &[u8], kept: &[T], out: &mut [T]) -> Result<()> {
    check_isa(isa)?;
    let n = out.len();
    if mask.len() != mask_len(n) {
        return Err(Error::arg(format!(
            "mask has {} bytes, expected {} for {n} elements",
            mask.len(),
            mask_len(n)
        )));
    }
    let parts = chunks(n);
    let counts: Vec<usize> = parts
        .iter()
        .map(|&(a, b)| popcount(&mask[a / 8..], b - a))
        .collect();
    let nnz: usize = counts.iter().sum();
    if kept.len() != nnz {
        return Err(Error::arg(format!(
            "the mask keeps {nnz} values, {} were given",
            kept.len()
        )));
    }
    if parts.len() == 1 {
        T::expand_isa(isa, mask, kept, out);
        return Ok(());
    }
    let mut ins = Vec::with_capacity(parts.len());
    let mut rest = kept;
    for &c in &counts {
        let (h, t) = rest.split_at(c);
        ins.push(h);
        rest = t;
    }
    use rayon::prelude::*;
    let outs: Vec<&mut [T]> = out.chunks_mut(CHUNK).collect();
    parallel::install(|| {
        outs.into_par_iter()
            .zip(ins.into_par_iter())
            .zip(parts.par_iter())
            .for_each(|((o, k), &(a, b))| {
                T::expand_isa(isa, &mask[a / 8..mask_len(b)], k, o);
            })
    });
    Ok(())
}

/// Build the mask of `values` into `mask` and gather the kept values into the front of `out`
/// (`out.len() >= values.len()`), in one pass where the ISA allows; returns the kept count.
/// Same result as [`build_mask`] followed by [`compress`].
pub fn mask_compress<T: Lane>(
    values: &[T],
    care: T,
    mask: &mut [u8],
    out: &mut [T],
) -> Result<usize> {
    mask_compress_with(isa::active(), values, care, mask, out)
}

/// [`mask_compress`] at a given level.
pub fn mask_compress_with<T: Lane>(
    isa: Isa,
    values: &[T],
    care: T,
    mask: &mut [u8],
    out: &mut [T],
) -> Result<usize> {
    check_isa(isa)?;
    if mask.len() != mask_len(values.len()) || out.len() < values.len() {
        return Err(Error::arg(format!(
            "mask_compress: buffers of {} mask bytes / {} values for {} elements",
            mask.len(),
            out.len(),
            values.len()
        )));
    }
    if chunks(values.len()).len() > 1 {
        // threads: the two-pass kernels split the work
        let nnz = build_mask_with(isa, values, care, mask)?;
        return compress_with(isa, values, mask, &mut out[..nnz]);
    }
    Ok(T::mask_compress_isa(isa, values, care, mask, out))
}
