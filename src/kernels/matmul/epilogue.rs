//! The epilogue every kernel shares: how a finished int32 tile becomes output (the correction
//! terms of the zero points, a bias, and the int32 / float32 / requantized store), and the
//! [`Job`] that carries one multiplication's operands and terms to the kernels.

use super::layout::{SyncPtr, PANEL};
use super::packed::PackedMatrix;

/// How the epilogue writes a finished int32 tile.
#[derive(Clone, Copy)]
pub(crate) enum Out<'a> {
    /// `out[m, n] = c` (int32).
    I32(SyncPtr<i32>),
    /// `out[m, n] = float32(c) * (row_scale[m] * col_scale[n]) (+ bias[n])`.
    F32 {
        ptr: SyncPtr<f32>,
        row_scale: &'a [f32],
        col_scale: &'a [f32],
        bias: Option<&'a [f32]>,
    },
    /// `out[m, n] = clamp(rint(float32(c) * mult[n]), lo - zp, hi - zp) + zp` (bytes).
    Q8 {
        ptr: SyncPtr<u8>,
        mult: &'a [f32],
        zp: i32,
        lo: i32,
        hi: i32,
    },
}

/// One multiplication: operands, precomputed correction terms and the output.
pub(crate) struct Job<'a> {
    /// A rows (bytes before the XOR when `flip`), stride `lda >= kp`, readable for `m * lda`.
    pub a: &'a [u8],
    pub lda: usize,
    pub m: usize,
    /// A is int8: the kernels XOR each byte with 0x80 (`Au = A + 128`).
    pub flip: bool,
    pub b: &'a PackedMatrix,
    /// Added to every column: `bias_i32[n] - a' colsum[n]` (scalar a') or `bias_i32[n]`.
    pub col_add: &'a [i32],
    /// Per-row `a'[m]` when the A zero point is per row (then `- a'[m] colsum[n]`).
    pub row_a: Option<&'a [i32]>,
    /// `K a'[m] - rowsum(Au)[m]`, multiplied by `b'[n]` when B has one.
    pub row_r: &'a [i32],
    pub out: Out<'a>,
}

/// Finish rows `m0..m0+rows` of panel `p` from the raw tile (row stride [`PANEL`]): add the
/// correction terms, transform and store. Plain Rust so each ISA shell vectorizes it.
#[inline(always)]
pub(crate) fn finish_rows(job: &Job, m0: usize, rows: usize, p: usize, tile: &mut [i32]) {
    let n = job.b.n();
    let n0 = p * PANEL;
    let nc = (n - n0).min(PANEL);
    let cs = &job.b.col_sums()[n0..n0 + nc];
    let ca = &job.col_add[n0..n0 + nc];
    let bp = job.b.b_prime().map(|v| &v[n0..n0 + nc]);
    for r in 0..rows {
        let m = m0 + r;
        let t = &mut tile[r * PANEL..r * PANEL + nc];
        // `col_add` is added in the output loops below (one pass; no memcpy for int32).
        if let Some(ra) = job.row_a {
            let ra = ra[m];
            for (x, &c) in t.iter_mut().zip(cs) {
                *x = x.wrapping_sub(ra.wrapping_mul(c));
            }
        }
        if let Some(bp) = bp {
            let rr = job.row_r[m];
            for (x, &c) in t.iter_mut().zip(bp) {
                *x = x.wrapping_add(c.wrapping_mul(rr));
            }
        }
        let at = m * n + n0;
        match job.out {
            Out::I32(ptr) => {
                // SAFETY: row m, columns n0..n0+nc of the M x N output; tiles are disjoint.
                let o = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(at), nc) };
                for ((o, &x), &c) in o.iter_mut().zip(t.iter()).zip(ca) {
                    *o = x.wrapping_add(c);
                }
            }
            Out::F32 {
                ptr,
                row_scale,
                col_scale,
                bias,
            } => {
                // SAFETY: as above.
                let o = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(at), nc) };
                let rs = row_scale[if row_scale.len() == 1 { 0 } else { m }];
                let cs = &col_scale[n0..n0 + nc];
                match bias {
                    Some(b) => {
                        for ((((o, &x), &c), &s), &b) in o
                            .iter_mut()
                            .zip(t.iter())
                            .zip(ca)
                            .zip(cs)
                            .zip(&b[n0..n0 + nc])
                        {
                            *o = x.wrapping_add(c) as f32 * (rs * s) + b;
                        }
                    }
                    None => {
                        for (((o, &x), &c), &s) in o.iter_mut().zip(t.iter()).zip(ca).zip(cs) {
                            *o = x.wrapping_add(c) as f32 * (rs * s);
                        }
                    }
                }
            }
            Out::Q8 {
                ptr,
                mult,
                zp,
                lo,
                hi,
            } => {
                // SAFETY: as above.
                let o = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(at), nc) };
                let (flo, fhi) = ((lo - zp) as f32, (hi - zp) as f32);
                for (((o, &x), &c), &s) in
                    o.iter_mut().zip(t.iter()).zip(ca).zip(&mult[n0..n0 + nc])
                {
                    let q = (x.wrapping_add(c) as f32 * s)
                        .max(flo)
                        .min(fhi)
                        .round_ties_even();
                    // SAFETY: q is an integer within lo-zp..=hi-zp (max/min send NaN to a
                    // bound), representable in i32.
                    *o = (unsafe { q.to_int_unchecked::<i32>() } + zp) as u8;
                }
            }
        }
    }
}
