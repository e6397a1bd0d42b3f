//! SmoothQuant migration scales (Xiao et al. 2022, "SmoothQuant: Accurate and Efficient
//! Post-Training Quantization for Large Language Models").
//!
//! `s_j = act_max_j^alpha / max_i |W_ij|^(1 - alpha)` per input channel `j` of a `(out, in)`
//! weight (computed in f64), `s_j = 1` where either maximum is 0, clamped to `[1e-5, 1e5]`.
//! The activations are divided by `s` and the weight's columns multiplied by it
//! (`X W^T = (X / s) (W * s)^T`), which moves quantization difficulty from activations with
//! outlier channels to the weights.
//!
//! numpy: `s = np.clip(a ** alpha / np.abs(w).max(0) ** (1 - alpha), 1e-5, 1e5)` (1 where
//! `a == 0` or a column of `w` is 0).

use rayon::prelude::*;

use crate::calib::grid::{check_finite_f64, check_weight};
use crate::error::{Error, Result};
use crate::parallel;

/// The per-input-channel scales `s` (see the module docs).
pub fn smoothquant_scales(
    act_max: &[f64],
    w: &[f32],
    out: usize,
    inp: usize,
    alpha: f64,
) -> Result<Vec<f32>> {
    check_weight(w, out, inp, "`w`")?;
    if act_max.len() != inp {
        return Err(Error::arg(format!(
            "`act_max` has length {}, expected {inp} (the input channels of `w`)",
            act_max.len()
        )));
    }
    check_finite_f64(act_max, "`act_max`")?;
    if let Some(i) = act_max.iter().position(|&v| v < 0.0) {
        return Err(Error::arg(format!(
            "`act_max` must be non-negative, found {} at index {i}",
            act_max[i]
        )));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::arg(format!(
            "`alpha` must be in [0, 1], found {alpha}"
        )));
    }
    let wmax: Vec<f32> = if inp == 0 || out == 0 {
        vec![0.0; inp]
    } else {
        parallel::install(|| {
            w.par_chunks(inp)
                .fold(
                    || vec![0f32; inp],
                    |mut m, row| {
                        for (a, &x) in m.iter_mut().zip(row) {
                            *a = a.max(x.abs());
                        }
                        m
                    },
                )
                .reduce(
                    || vec![0f32; inp],
                    |mut a, b| {
                        for (x, y) in a.iter_mut().zip(b) {
                            *x = x.max(y);
                        }
                        a
                    },
                )
        })
    };
    Ok(act_max
        .iter()
        .zip(&wmax)
        .map(|(&a, &m)| {
            if a == 0.0 || m == 0.0 {
                1.0
            } else {
                (a.powf(alpha) / (m as f64).powf(1.0 - alpha)).clamp(1e-5, 1e5) as f32
            }
        })
        .collect())
}
