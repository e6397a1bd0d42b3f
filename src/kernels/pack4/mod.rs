//! 4-bit packing, ONNX layout: two values per byte, the first element in the low nibble.

use crate::error::{Error, Result};
use crate::kernels::isa::Avx2Only;
use crate::kernels::isa::{self, Isa};

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod scalar;
#[cfg(test)]
mod tests;

/// Bytes that hold `n` packed 4-bit values.
pub fn packed_len(n: usize) -> usize {
    n.div_ceil(2)
}

/// Pack the low nibbles of `q` into `out` (`out.len() == ceil(q.len() / 2)`).
pub fn pack(q: &[u8], out: &mut [u8]) -> Result<()> {
    pack_with(isa::active(), q, out)
}

/// [`pack`] on a given ISA.
pub fn pack_with(isa: Isa, q: &[u8], out: &mut [u8]) -> Result<()> {
    if out.len() != packed_len(q.len()) {
        return Err(Error::arg(format!(
            "`out` has {} bytes, expected {} for {} 4-bit values",
            out.len(),
            packed_len(q.len()),
            q.len()
        )));
    }
    match isa::kernels(isa).pack4 {
        #[cfg(target_arch = "x86_64")]
        Avx2Only::Avx2 => {
            // SAFETY: AVX2 is supported at the Avx2 and Avx512 levels; lengths checked above.
            unsafe { avx2::pack(q, out) };
            return Ok(());
        }
        Avx2Only::Scalar => {}
    }
    scalar::pack(q, out);
    Ok(())
}

/// Unpack `out.len()` 4-bit values from `p` (sign-extended if `signed`).
pub fn unpack(p: &[u8], out: &mut [u8], signed: bool) -> Result<()> {
    unpack_with(isa::active(), p, out, signed)
}

/// [`unpack`] on a given ISA.
pub fn unpack_with(isa: Isa, p: &[u8], out: &mut [u8], signed: bool) -> Result<()> {
    if p.len() != packed_len(out.len()) {
        return Err(Error::arg(format!(
            "packed 4-bit data has {} bytes, expected {} for {} values",
            p.len(),
            packed_len(out.len()),
            out.len()
        )));
    }
    match isa::kernels(isa).pack4 {
        #[cfg(target_arch = "x86_64")]
        Avx2Only::Avx2 => {
            // SAFETY: AVX2 is supported at the Avx2 and Avx512 levels; lengths checked above.
            unsafe { avx2::unpack(p, out, signed) };
            return Ok(());
        }
        Avx2Only::Scalar => {}
    }
    scalar::unpack(p, out, signed);
    Ok(())
}
