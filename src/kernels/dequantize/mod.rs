//! Dequantize a contiguous run of 8-bit integers (int8 / uint8, or unpacked 4-bit values) to
//! float32: `y = float32(q - zp) * scale`. See [`scalar`].

use crate::error::{Error, Result};
use crate::kernels::isa::Vector;
use crate::kernels::isa::{self, Isa};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod scalar;
#[cfg(test)]
mod tests;

fn check(q: usize, out: usize) -> Result<()> {
    if q != out {
        return Err(Error::arg(format!(
            "`out` has {out} elements, expected {q} (one per quantized element)"
        )));
    }
    Ok(())
}

/// Dequantize `q` (int8 bytes if `signed`, else uint8) into `out`, on the active ISA.
pub fn dequantize(q: &[u8], out: &mut [f32], signed: bool, scale: f32, zp: i32) -> Result<()> {
    dequantize_with(isa::active(), q, out, signed, scale, zp)
}

/// [`dequantize`] on a given ISA.
pub fn dequantize_with(
    isa: Isa,
    q: &[u8],
    out: &mut [f32],
    signed: bool,
    scale: f32,
    zp: i32,
) -> Result<()> {
    check(q.len(), out.len())?;
    match isa::kernels(isa).dequantize {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: AVX-512 supported (checked); slice lengths checked above.
            unsafe { avx512::dequantize(q, out, signed, scale, zp) };
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: AVX2 + FMA supported (checked); slice lengths checked above.
            unsafe { avx2::dequantize(q, out, signed, scale, zp) };
            return Ok(());
        }
        Vector::Scalar => {}
    }
    scalar::dequantize(q, out, signed, scale, zp);
    Ok(())
}

/// Per-element parameters, on the active ISA.
pub fn dequantize_each(
    q: &[u8],
    out: &mut [f32],
    signed: bool,
    scale: &[f32],
    zp: &[i32],
) -> Result<()> {
    dequantize_each_with(isa::active(), q, out, signed, scale, zp)
}

/// [`dequantize_each`] on a given ISA.
pub fn dequantize_each_with(
    isa: Isa,
    q: &[u8],
    out: &mut [f32],
    signed: bool,
    scale: &[f32],
    zp: &[i32],
) -> Result<()> {
    check(q.len(), out.len())?;
    if scale.len() != q.len() || zp.len() != q.len() {
        return Err(Error::arg(format!(
            "per-element parameters have {} scales and {} zero points, expected {}",
            scale.len(),
            zp.len(),
            q.len()
        )));
    }
    match isa::kernels(isa).dequantize {
        #[cfg(target_arch = "x86_64")]
        Vector::Avx512 => {
            // SAFETY: AVX-512 supported (checked); slice lengths checked above.
            unsafe { avx512::dequantize_each(q, out, signed, scale, zp) };
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        Vector::Avx2 => {
            // SAFETY: AVX2 + FMA supported (checked); slice lengths checked above.
            unsafe { avx2::dequantize_each(q, out, signed, scale, zp) };
            return Ok(());
        }
        Vector::Scalar => {}
    }
    scalar::dequantize_each(q, out, signed, scale, zp);
    Ok(())
}
