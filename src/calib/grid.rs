//! A fixed quantization grid: one scale (and zero point) per element group of a weight in
//! PyTorch `(out, in)` layout, and the rounding that the `.epk` `quant` encoding decodes.
//!
//! Element `(r, c)` uses `scale[r / row_block, c / col_block]` (and the zero point at the same
//! place; none = symmetric, zero point 0). Rounding, exactly as ONNX QuantizeLinear and
//! `edgepack.quantize` (`crate::kernels::quantize::scalar`):
//! `q = clamp(round_ties_even(w / scale) + zp, qmin, qmax)` with the division in f32 (computed
//! as `round_ties_even(clamp(w / scale, qmin - zp, qmax - zp)) + zp`, which is the same for
//! integer bounds), and `w' = f32(q - zp) * scale` in f32.
//!
//! numpy: `q = np.clip(np.rint(w / s), qmin - zp, qmax - zp) + zp`, `w' = (q - zp) * s`.

use crate::error::{Error, Result};

/// The largest `|qmin|`, `|qmax|` accepted: within it [`round_ties_even_small`] is exact.
pub const Q_LIMIT: i32 = 1 << 22;

/// A validated grid over a `(out, in)` weight.
#[derive(Clone, Copy, Debug)]
pub struct Grid<'a> {
    /// Scales, `(rg, cg)` row-major.
    pub scale: &'a [f32],
    /// Zero points, `(rg, cg)` row-major; `None` = symmetric (all 0).
    pub zero_point: Option<&'a [i32]>,
    /// Columns of the scale array (`cg`).
    pub cg: usize,
    /// Rows of the weight per scale row.
    pub row_block: usize,
    /// Columns of the weight per scale column.
    pub col_block: usize,
    /// Smallest code.
    pub qmin: i32,
    /// Largest code.
    pub qmax: i32,
}

impl<'a> Grid<'a> {
    /// Check a grid for a `(out, inp)` weight: `row_block, col_block >= 1`, `scale` of shape
    /// `(ceil(out / row_block), ceil(inp / col_block))` (given as `scale_shape`), positive,
    /// finite and not subnormal, `zero_point` of the same shape with every value in
    /// `[qmin, qmax]` (so that 0 is representable), `qmin < qmax`, both within `+-2^24`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scale: &'a [f32],
        scale_shape: (usize, usize),
        zero_point: Option<(&'a [i32], (usize, usize))>,
        row_block: usize,
        col_block: usize,
        qmin: i32,
        qmax: i32,
        out: usize,
        inp: usize,
    ) -> Result<Self> {
        if row_block == 0 || col_block == 0 {
            return Err(Error::arg(format!(
                "`row_block` and `col_block` must be >= 1, found {row_block} and {col_block}"
            )));
        }
        if qmin >= qmax {
            return Err(Error::arg(format!(
                "`qmin` must be < `qmax`, found qmin={qmin} and qmax={qmax}"
            )));
        }
        if qmin < -Q_LIMIT || qmax > Q_LIMIT {
            return Err(Error::arg(format!(
                "`qmin` and `qmax` must lie in [-{Q_LIMIT}, {Q_LIMIT}], found {qmin} and {qmax}"
            )));
        }
        let want = (out.div_ceil(row_block), inp.div_ceil(col_block));
        if scale_shape != want {
            return Err(Error::arg(format!(
                "`scale` has shape ({}, {}), expected ({}, {}) for a weight of shape ({out}, \
                 {inp}) with row_block={row_block} and col_block={col_block}",
                scale_shape.0, scale_shape.1, want.0, want.1
            )));
        }
        if scale.len() != want.0 * want.1 {
            return Err(Error::arg(format!(
                "`scale` holds {} values, expected {}",
                scale.len(),
                want.0 * want.1
            )));
        }
        crate::quant::check_scales(scale, "scale")?;
        let zero_point = match zero_point {
            None => None,
            Some((z, zshape)) => {
                if zshape != scale_shape || z.len() != scale.len() {
                    return Err(Error::arg(format!(
                        "`zero_point` has shape ({}, {}), expected ({}, {}) (the shape of `scale`)",
                        zshape.0, zshape.1, want.0, want.1
                    )));
                }
                if let Some(i) = z.iter().position(|&v| v < qmin || v > qmax) {
                    return Err(Error::arg(format!(
                        "`zero_point` must lie in [qmin, qmax] = [{qmin}, {qmax}], found {} at \
                         index {i}",
                        z[i]
                    )));
                }
                Some(z)
            }
        };
        Ok(Grid {
            scale,
            zero_point,
            cg: want.1,
            row_block,
            col_block,
            qmin,
            qmax,
        })
    }

    /// The flat index into `scale` of element `(r, c)`.
    #[inline]
    pub fn index(&self, r: usize, c: usize) -> usize {
        (r / self.row_block) * self.cg + c / self.col_block
    }

    /// `(scale, zero point)` of element `(r, c)`.
    #[inline]
    pub fn params(&self, r: usize, c: usize) -> (f32, i32) {
        let i = self.index(r, c);
        (self.scale[i], self.zero_point.map_or(0, |z| z[i]))
    }

    /// The scales and zero points of weight row `r`, indexed by column group `c / col_block`.
    #[inline]
    pub fn row(&self, r: usize) -> (&'a [f32], Option<&'a [i32]>) {
        let a = (r / self.row_block) * self.cg;
        (
            &self.scale[a..a + self.cg],
            self.zero_point.map(|z| &z[a..a + self.cg]),
        )
    }

    /// The column group of every column in `order` (`order[p] / col_block`).
    pub fn col_groups(&self, order: &[usize]) -> Vec<usize> {
        order.iter().map(|&c| c / self.col_block).collect()
    }

    /// `(code, dequantized value)` of `w` at `(r, c)`.
    #[inline]
    pub fn quantize(&self, w: f32, r: usize, c: usize) -> (i32, f32) {
        let (s, z) = self.params(r, c);
        quantize_one(w, s, z, self.qmin, self.qmax)
    }
}

/// `(q, w')` with `q = clamp(round_ties_even(w / s) + zp, qmin, qmax)` (division in f32) and
/// `w' = f32(q - zp) * s`. `w` must not be NaN (callers check their inputs); `qmin`, `qmax`
/// and `zp` within [`Q_LIMIT`] (as [`Grid::new`] checks).
#[inline]
pub fn quantize_one(w: f32, s: f32, zp: i32, qmin: i32, qmax: i32) -> (i32, f32) {
    let lo = (qmin - zp) as f32;
    let hi = (qmax - zp) as f32;
    let v = w / s;
    let c = if v > lo { v } else { lo };
    let c = if c < hi { c } else { hi };
    let q = round_ties_even_small(c) as i32;
    (q + zp, q as f32 * s)
}

/// `x.round_ties_even()` for `|x| <= 2^22` (`f32::round_ties_even` is a libm call per element
/// on baseline x86-64): adding and subtracting `1.5 * 2^23` rounds to an integer in the
/// current (default: to nearest, ties to even) rounding mode.
#[inline]
pub fn round_ties_even_small(x: f32) -> f32 {
    const M: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + M) - M
}

/// The flat index and value of the first NaN / infinity of `x` as an error naming `what`.
pub fn check_finite_f32(x: &[f32], what: &str) -> Result<()> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value: x[index],
        }),
        None => Ok(()),
    }
}

/// [`check_finite_f32`] for f64 data (the value is reported as f32: NaN / +-Inf survive).
pub fn check_finite_f64(x: &[f64], what: &str) -> Result<()> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value: x[index] as f32,
        }),
        None => Ok(()),
    }
}

/// Check that `w` holds `out * inp` values (the product without overflow).
pub fn check_weight(w: &[f32], out: usize, inp: usize, what: &str) -> Result<()> {
    let n = out
        .checked_mul(inp)
        .ok_or_else(|| Error::limit(format!("{what} shape ({out}, {inp}) is too large")))?;
    if w.len() != n {
        return Err(Error::arg(format!(
            "{what} holds {} values, expected {n} for shape ({out}, {inp})",
            w.len()
        )));
    }
    check_finite_f32(w, what)
}
