//! The scalar twin (defines the semantics) and the portable path.

use super::blocking::{gemm_block, Block, PackedKernel, Tile};
use super::epilogue::Job;
use super::layout::{Lhs, Rhs, GROUP_BYTES, PANEL};

/// The definition, on plain row-major B (K x N):
/// `((a.astype(np.int64) - a_zp[:, None]) @ (b.astype(np.int64) - b_zp[None, :])).astype(np.int32)`
/// (the int64 product, wrapped to int32; zero points are empty = 0, one value, or per row / column;
/// nothing is checked).
pub fn matmul(a: &Lhs, a_zp: &[i64], b: &Rhs) -> Vec<i32> {
    let (m, k, n) = (a.rows, a.k, b.n);
    let zp = |z: &[i64], i: usize| -> i64 {
        match z.len() {
            0 => 0,
            1 => z[0],
            _ => z[i],
        }
    };
    let mut out = vec![0i32; m * n];
    let mut acc = vec![0i64; n];
    for i in 0..m {
        acc.iter_mut().for_each(|x| *x = 0);
        let za = zp(a_zp, i);
        for kk in 0..k {
            let av = a.dtype.value(a.data[i * k + kk]) as i64 - za;
            let row = &b.data[kk * n..(kk + 1) * n];
            for (j, (x, &bv)) in acc.iter_mut().zip(row).enumerate() {
                *x += av * (b.dtype.value(bv) as i64 - zp(b.zero_point, j));
            }
        }
        for (o, &x) in out[i * n..(i + 1) * n].iter_mut().zip(&acc) {
            *o = x as i32;
        }
    }
    out
}

/// The portable micro-kernel: plain loops over the packed layout.
pub(super) struct Scalar;

impl PackedKernel for Scalar {
    const KC_GROUPS: usize = usize::MAX;
    const PRE_FLIP: bool = false;
    const STORES: bool = false;

    #[inline(always)]
    unsafe fn tile(t: &Tile) {
        let flip = if t.flip { 0x80u8 } else { 0 };
        // SAFETY: the `tile` contract: the panel holds `groups` k-groups.
        let panel = unsafe { std::slice::from_raw_parts(t.b, t.groups * GROUP_BYTES) };
        for r in 0..t.rows {
            // SAFETY: the `tile` contract: row r of A holds 4 * groups bytes, the tile `rows`
            // rows of PANEL int32, apart from A and B.
            let (arow, acc) = unsafe {
                (
                    std::slice::from_raw_parts(t.a.add(r * t.lda), 4 * t.groups),
                    std::slice::from_raw_parts_mut(t.acc.add(r * PANEL), PANEL),
                )
            };
            tile_row(arow, panel, acc, flip, t.accumulate);
        }
    }
}

/// One row of a tile: `acc[c] (+)= sum_k (arow[k] ^ flip) * Bs[k, c]` over the panel. Slices
/// as arguments, so that the compiler knows the stores to `acc` leave A and B alone.
#[inline]
fn tile_row(arow: &[u8], panel: &[u8], acc: &mut [i32], flip: u8, accumulate: bool) {
    if !accumulate {
        acc.iter_mut().for_each(|x| *x = 0);
    }
    let groups = arow.len() / 4;
    for s in 0..PANEL / 16 {
        let ts = &mut acc[s * 16..(s + 1) * 16];
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

/// Block `blk` of `job` ([`gemm_block`] with [`Scalar`]).
pub(super) fn gemm(job: &Job, blk: Block) {
    // SAFETY: the scalar kernel needs no CPU feature; `blk` lies within `job` (plan::run).
    unsafe { gemm_block::<Scalar>(job, blk) }
}
