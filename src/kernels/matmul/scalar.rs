//! The scalar twin (defines the semantics) and the portable path.

use super::pack::{PackedMatrix, GROUP_BYTES, PANEL};
use super::{finish_rows, row_tiles, Dtype, Job};

/// The definition, on plain row-major B (K x N):
/// `((a.astype(np.int64) - a_zp[:, None]) @ (b.astype(np.int64) - b_zp[None, :])).astype(np.int32)`
/// (the int64 product, wrapped to int32; zero points are empty = 0, one value, or per row / column).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[u8],
    a_dtype: Dtype,
    m: usize,
    k: usize,
    a_zp: &[i32],
    b: &[u8],
    b_dtype: Dtype,
    n: usize,
    b_zp: &[i32],
) -> Vec<i32> {
    let zp = |z: &[i32], i: usize| -> i64 {
        match z.len() {
            0 => 0,
            1 => z[0] as i64,
            _ => z[i] as i64,
        }
    };
    let mut out = vec![0i32; m * n];
    let mut acc = vec![0i64; n];
    for i in 0..m {
        acc.iter_mut().for_each(|x| *x = 0);
        let za = zp(a_zp, i);
        for kk in 0..k {
            let av = a_dtype.value(a[i * k + kk]) as i64 - za;
            let row = &b[kk * n..(kk + 1) * n];
            for (j, (x, &bv)) in acc.iter_mut().zip(row).enumerate() {
                *x += av * (b_dtype.value(bv) as i64 - zp(b_zp, j));
            }
        }
        for (o, &x) in out[i * n..(i + 1) * n].iter_mut().zip(&acc) {
            *o = x as i32;
        }
    }
    out
}

/// Portable path: raw `Au @ Bs` tiles read from packed B, then the shared epilogue.
pub(super) fn gemm_block(job: &Job, m0: usize, m1: usize, p0: usize, p1: usize) {
    let b: &PackedMatrix = job.b;
    let data = b.data();
    let kp = b.kp();
    let groups = kp / 4;
    let pbytes = b.panel_bytes();
    let flip = if job.flip { 0x80u8 } else { 0 };
    let mut tile = vec![0i32; 8 * PANEL];
    for p in p0..p1 {
        row_tiles(job.m, m0, m1, |m, rows| {
            for r in 0..rows {
                let arow = &job.a[(m + r) * job.lda..(m + r) * job.lda + kp];
                let t = &mut tile[r * PANEL..(r + 1) * PANEL];
                t.iter_mut().for_each(|x| *x = 0);
                let panel = &data[p * pbytes..p * pbytes + groups * GROUP_BYTES];
                for s in 0..PANEL / 16 {
                    let ts = &mut t[s * 16..(s + 1) * 16];
                    for g in 0..groups {
                        let av = &arow[4 * g..4 * g + 4];
                        let at = g * GROUP_BYTES + s * 64;
                        let line = &panel[at..at + 64];
                        for (c, x) in ts.iter_mut().enumerate() {
                            let mut d = 0i32;
                            for i in 0..4 {
                                d += (av[i] ^ flip) as i32 * (line[c * 4 + i] as i8) as i32;
                            }
                            *x = x.wrapping_add(d);
                        }
                    }
                }
            }
            finish_rows(job, m, rows, p, &mut tile);
        });
    }
}
