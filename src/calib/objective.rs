//! The calibrated output error of replacing `W` by `W'` (both `(out, in)`):
//! `tr((W - W') H (W - W')^T)` = the mean over calibration tokens of `||(W - W') x||^2`.
//!
//! numpy: `E = (w - w_hat).astype(np.float64); np.einsum("ij,ij->", E @ h, E)`; with only the
//! diagonal `d` of `H`: `((E ** 2) * d).sum()`.
//!
//! Everything in float64: `E @ H` by faer (threaded) over chunks of rows, then a dot product
//! per row; the per-row sums are added in row order. `H` need not be symmetric.

use faer::{Accum, MatMut, MatRef};
use rayon::prelude::*;

use crate::calib::grid::{check_finite_f64, check_weight};
use crate::calib::hessian;
use crate::error::{Error, Result};
use crate::parallel;

/// `H` as given: full `(in, in)` or its diagonal `(in,)`.
#[derive(Clone, Copy, Debug)]
pub enum Hessian<'a> {
    /// Full, row-major.
    Full(&'a [f64]),
    /// Diagonal only.
    Diag(&'a [f64]),
}

/// Rows of `E` per matrix product.
const ROWS: usize = 256;

/// `tr((w - w_hat) H (w - w_hat)^T)` in f64 (see the module docs).
pub fn objective(w: &[f32], w_hat: &[f32], out: usize, inp: usize, h: Hessian<'_>) -> Result<f64> {
    check_weight(w, out, inp, "`w`")?;
    check_weight(w_hat, out, inp, "`w_hat`")?;
    match h {
        Hessian::Diag(d) => {
            if d.len() != inp {
                return Err(Error::arg(format!(
                    "`h` (diagonal) has length {}, expected {inp} (the input channels of `w`)",
                    d.len()
                )));
            }
            check_finite_f64(d, "`h`")?;
            if inp == 0 {
                return Ok(0.0);
            }
            let sums: Vec<f64> = parallel::install(|| {
                w.par_chunks(inp)
                    .zip(w_hat.par_chunks(inp))
                    .map(|(a, b)| {
                        a.iter()
                            .zip(b)
                            .zip(d)
                            .map(|((&x, &y), &dj)| {
                                let e = x as f64 - y as f64;
                                dj * e * e
                            })
                            .sum::<f64>()
                    })
                    .collect()
            });
            Ok(sums.iter().sum())
        }
        Hessian::Full(hf) => {
            let nn = inp
                .checked_mul(inp)
                .ok_or_else(|| Error::limit("`h` is too large"))?;
            if hf.len() != nn {
                return Err(Error::arg(format!(
                    "`h` holds {} values, expected {nn} for shape ({inp}, {inp})",
                    hf.len()
                )));
            }
            check_finite_f64(hf, "`h`")?;
            if inp == 0 || out == 0 {
                return Ok(0.0);
            }
            Ok(parallel::install(|| {
                let par = hessian::par();
                let hm = MatRef::from_column_major_slice(hf, inp, inp); // = H^T
                let mut total = 0f64;
                let mut e = vec![0f64; ROWS.min(out) * inp];
                let mut f = vec![0f64; ROWS.min(out) * inp];
                let mut r0 = 0;
                while r0 < out {
                    let rows = ROWS.min(out - r0);
                    let e = &mut e[..rows * inp];
                    let f = &mut f[..rows * inp];
                    let (a, b) = (&w[r0 * inp..(r0 + rows) * inp], &w_hat[r0 * inp..]);
                    e.par_chunks_mut(inp)
                        .zip(a.par_chunks(inp).zip(b.par_chunks(inp)))
                        .for_each(|(er, (ar, br))| {
                            for ((x, &p), &q) in er.iter_mut().zip(ar).zip(br) {
                                *x = p as f64 - q as f64;
                            }
                        });
                    // F^T = H^T E^T, everything column-major and contiguous (E's rows are
                    // E^T's columns); tr(E H^T E^T) = tr(E H E^T) for any H.
                    faer::linalg::matmul::matmul(
                        MatMut::from_column_major_slice_mut(f, inp, rows),
                        Accum::Replace,
                        hm,
                        MatRef::from_column_major_slice(e, inp, rows),
                        1.0,
                        par,
                    );
                    let sums: Vec<f64> = e
                        .par_chunks(inp)
                        .zip(f.par_chunks(inp))
                        .map(|(er, fr)| er.iter().zip(fr).map(|(x, y)| x * y).sum::<f64>())
                        .collect();
                    total += sums.iter().sum::<f64>();
                    r0 += rows;
                }
                total
            }))
        }
    }
}
