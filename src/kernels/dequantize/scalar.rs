//! The reference twin of the dequantize kernels: `y = float32(q - zp) * scale`, one float32
//! multiply (exact integer difference, one rounding), as ONNX DequantizeLinear.
//!
//! numpy: `(q.astype(np.int32) - zp).astype(np.float32) * np.float32(scale)`
//! (`tests/reference.py::dequantize_linear`).

#[inline]
pub(crate) fn widen(b: u8, signed: bool) -> i32 {
    if signed {
        b as i8 as i32
    } else {
        b as i32
    }
}

/// One `(scale, zp)` for the run; `q` holds int8 (`signed`) or uint8 bytes.
pub fn dequantize(q: &[u8], out: &mut [f32], signed: bool, scale: f32, zp: i32) {
    for (o, &b) in out.iter_mut().zip(q) {
        *o = (widen(b, signed) - zp) as f32 * scale;
    }
}

/// Per-element `(scale[i], zp[i])`.
pub fn dequantize_each(q: &[u8], out: &mut [f32], signed: bool, scale: &[f32], zp: &[i32]) {
    for i in 0..q.len() {
        out[i] = (widen(q[i], signed) - zp[i]) as f32 * scale[i];
    }
}
