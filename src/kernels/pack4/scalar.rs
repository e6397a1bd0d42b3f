//! The reference twin of 4-bit packing (ONNX layout: two values per byte, the first element in
//! the low nibble, an odd count leaves the last high nibble 0).
//!
//! numpy: `p = q[0::2] & 15 | (q[1::2] & 15) << 4` (padded), `tests/reference.py::pack4`.

/// `out[i] = (q[2i] & 15) | (q[2i+1] & 15) << 4`.
pub fn pack(q: &[u8], out: &mut [u8]) {
    for (i, o) in out.iter_mut().enumerate() {
        let a = q[2 * i] & 15;
        let b = if 2 * i + 1 < q.len() {
            q[2 * i + 1] & 15
        } else {
            0
        };
        *o = a | (b << 4);
    }
}

/// The inverse of [`pack`] for `out.len()` values; `signed` sign-extends each nibble (int4).
pub fn unpack(p: &[u8], out: &mut [u8], signed: bool) {
    for (i, o) in out.iter_mut().enumerate() {
        let b = p[i / 2];
        let v = if i % 2 == 0 { b & 15 } else { b >> 4 };
        *o = if signed {
            (((v << 4) as i8) >> 4) as u8
        } else {
            v
        };
    }
}
