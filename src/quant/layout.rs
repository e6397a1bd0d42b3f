//! Where each element's quantization parameters come from: per tensor, per channel along an
//! axis, or per block along an axis (ONNX opset 21 layouts).
//!
//! A tensor of shape `s` with axis `k` is viewed as `(outer, len, inner)` with
//! `outer = prod(s[..k])`, `len = s[k]`, `inner = prod(s[k+1..])`. Parameters ("units"):
//!
//! * per tensor: 1 unit;
//! * per axis: `len` units, element `(o, a, i)` uses unit `a`;
//! * per block of `bs` along the axis: shape `(outer, nb, inner)` with `nb = ceil(len / bs)`
//!   (the last block may be partial), element `(o, a, i)` uses unit `(o * nb + a / bs) * inner + i`.

use crate::error::{Error, Result};

/// The granularity of the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One scale / zero point for the whole tensor.
    Tensor,
    /// One per index along the axis.
    Axis,
    /// One per block of this many elements along the axis.
    Block(usize),
}

/// The `(outer, len, inner)` view of a tensor plus its granularity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// The normalised axis (0 for per tensor).
    pub axis: usize,
    /// Product of the dims before the axis.
    pub outer: usize,
    /// The dim along the axis.
    pub len: usize,
    /// Product of the dims after the axis.
    pub inner: usize,
    /// The granularity.
    pub gran: Granularity,
}

/// Normalise an ONNX-style axis (`-rank..rank`).
pub fn normalize_axis(axis: i64, rank: usize, what: &str) -> Result<usize> {
    let r = rank as i64;
    if rank == 0 || axis < -r || axis >= r {
        let expect = if rank == 0 {
            "a tensor with at least 1 dim".to_string()
        } else {
            format!("{}..={}", -r, r - 1)
        };
        return Err(Error::arg(format!(
            "`axis` = {axis} is out of range for {what} with {rank} dims (expected {expect})"
        )));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

fn prod(d: &[usize], what: &str) -> Result<usize> {
    d.iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| {
            Error::limit(format!(
                "the shape {d:?} of {what} has more elements than fit in memory"
            ))
        })
}

/// Format a shape like numpy: `(3,)`, `(2, 3)`, `()`.
pub fn shape_str(s: &[usize]) -> String {
    match s.len() {
        0 => "()".into(),
        1 => format!("({},)", s[0]),
        _ => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl Layout {
    /// Build a layout for `shape` (of the tensor named `what`).
    pub fn new(shape: &[usize], axis: usize, gran: Granularity, what: &str) -> Result<Layout> {
        let n = prod(shape, what)?;
        if gran == Granularity::Tensor {
            return Ok(Layout {
                shape: shape.to_vec(),
                axis: 0,
                outer: 1,
                len: n,
                inner: 1,
                gran,
            });
        }
        if axis >= shape.len() {
            return Err(Error::arg(format!(
                "`axis` = {axis} is out of range for {what} with {} dims",
                shape.len()
            )));
        }
        if let Granularity::Block(bs) = gran {
            if bs == 0 {
                return Err(Error::arg("`block_size` must be >= 1, found 0"));
            }
        }
        Ok(Layout {
            shape: shape.to_vec(),
            axis,
            outer: prod(&shape[..axis], what)?,
            len: shape[axis],
            inner: prod(&shape[axis + 1..], what)?,
            gran,
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.outer * self.len * self.inner
    }

    /// Number of blocks along the axis (block granularity), else 1.
    pub fn blocks(&self) -> usize {
        match self.gran {
            Granularity::Block(bs) => self.len.div_ceil(bs),
            _ => 1,
        }
    }

    /// Number of parameter units.
    pub fn units(&self) -> usize {
        match self.gran {
            Granularity::Tensor => 1,
            Granularity::Axis => self.len,
            Granularity::Block(_) => self.outer * self.blocks() * self.inner,
        }
    }

    /// The shape of the scale / zero point arrays.
    pub fn param_shape(&self) -> Vec<usize> {
        match self.gran {
            Granularity::Tensor => vec![],
            Granularity::Axis => vec![self.len],
            Granularity::Block(_) => {
                let mut s = self.shape.clone();
                s[self.axis] = self.blocks();
                s
            }
        }
    }

    /// Copy the values of unit `u` into `buf` (cleared first), in C order.
    pub fn gather(&self, x: &[f32], u: usize, buf: &mut Vec<f32>) {
        buf.clear();
        match self.gran {
            Granularity::Tensor => buf.extend_from_slice(x),
            Granularity::Axis => {
                for o in 0..self.outer {
                    let s = (o * self.len + u) * self.inner;
                    buf.extend_from_slice(&x[s..s + self.inner]);
                }
            }
            Granularity::Block(bs) => {
                let nb = self.blocks();
                let i = u % self.inner;
                let ob = u / self.inner;
                let (o, b) = (ob / nb, ob % nb);
                for a in b * bs..((b + 1) * bs).min(self.len) {
                    buf.push(x[(o * self.len + a) * self.inner + i]);
                }
            }
        }
    }

    /// Infer the layout of given parameters (ONNX QuantizeLinear / DequantizeLinear rules):
    /// a scalar or 1-element 1-D scale is per tensor (as ONNX Runtime); with `block_size > 0`
    /// the scale has the rank of `x` and `ceil(shape[axis] / block_size)` along `axis`;
    /// otherwise a 1-D scale has `shape[axis]` entries.
    pub fn from_params(
        shape: &[usize],
        scale_shape: &[usize],
        scale_name: &str,
        axis: i64,
        block_size: i64,
    ) -> Result<Layout> {
        let scale_n = prod(scale_shape, scale_name)?;
        if block_size < 0 {
            return Err(Error::arg(format!(
                "`block_size` must be >= 0, found {block_size}"
            )));
        }
        if block_size == 0 {
            if scale_shape.is_empty() || (scale_shape.len() == 1 && scale_n == 1) {
                return Layout::new(shape, 0, Granularity::Tensor, "`x`");
            }
            if scale_shape.len() == 1 {
                let ax = normalize_axis(axis, shape.len(), "`x`")?;
                if scale_shape[0] != shape[ax] {
                    return Err(Error::arg(format!(
                        "`{scale_name}` has shape {}, expected ({},) (x.shape[{ax}]) for per-axis quantization along axis {ax} of x with shape {}",
                        shape_str(scale_shape),
                        shape[ax],
                        shape_str(shape)
                    )));
                }
                return Layout::new(shape, ax, Granularity::Axis, "`x`");
            }
            return Err(Error::arg(format!(
                "`{scale_name}` has shape {}: expected a scalar (per tensor), a 1-D array (per axis), or the rank of x {} with `block_size` > 0 (blocked)",
                shape_str(scale_shape),
                shape_str(shape)
            )));
        }
        let bs = usize::try_from(block_size)
            .map_err(|_| Error::limit(format!("`block_size` = {block_size} is too large")))?;
        let ax = normalize_axis(axis, shape.len(), "`x`")?;
        let lay = Layout::new(shape, ax, Granularity::Block(bs), "`x`")?;
        let want = lay.param_shape();
        if scale_shape != want.as_slice() {
            return Err(Error::arg(format!(
                "`{scale_name}` has shape {}, expected {} for blocks of {bs} along axis {ax} of x with shape {}",
                shape_str(scale_shape),
                shape_str(&want),
                shape_str(shape)
            )));
        }
        Ok(lay)
    }
}
