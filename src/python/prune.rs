//! Wrappers of `crate::prune` (the masks behind `edgepack.prune`).

use numpy::{IntoPyArray, PyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::arrays::c_slice;

use crate::error::Error;
use crate::prune::{self, Norm};

/// Flat keep mask of `x` pruned in `groups` equal C-order slices.
#[pyfunction]
#[pyo3(signature = (x, groups, sparsity, importance=None))]
fn prune_magnitude_mask<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    groups: usize,
    sparsity: f64,
    importance: Option<PyReadonlyArrayDyn<'py, f32>>,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let xs = c_slice(&x, "x")?;
    let imp = match &importance {
        Some(a) => Some(c_slice(a, "importance")?),
        None => None,
    };
    let keep = py.detach(|| prune::magnitude_mask(xs, groups, imp, sparsity))?;
    Ok(keep.into_pyarray(py))
}

/// Flat N:M keep mask of `x` (C order) with groups along `axis` (non-negative).
#[pyfunction]
fn prune_nm_mask<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    n: usize,
    m: usize,
    axis: usize,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let shape = x.shape().to_vec();
    if axis >= shape.len() {
        return Err(Error::arg(format!(
            "`axis` {axis} is out of range for {} dimensions",
            shape.len()
        ))
        .into());
    }
    let (outer, len, inner) = crate::sparse::split_axis(&shape, axis);
    let xs = c_slice(&x, "x")?;
    let keep = py.detach(|| prune::nm_mask(xs, outer, len, inner, n, m))?;
    Ok(keep.into_pyarray(py))
}

/// Flat keep mask of whole blocks of `x`.
#[pyfunction]
fn prune_block_mask<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    block: Vec<usize>,
    sparsity: f64,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let shape = x.shape().to_vec();
    let xs = c_slice(&x, "x")?;
    let keep = py.detach(|| prune::block_mask(xs, &shape, &block, sparsity))?;
    Ok(keep.into_pyarray(py))
}

/// One keep flag per channel of `x` seen as `(channels, rest)`.
#[pyfunction]
fn prune_channel_mask<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    channels: usize,
    norm: &str,
    sparsity: f64,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let norm = match norm {
        "1" => Norm::L1,
        "2" => Norm::L2,
        "inf" => Norm::Inf,
        other => {
            return Err(Error::arg(format!("`norm` must be 1, 2 or inf, found {other}")).into())
        }
    };
    let xs = c_slice(&x, "x")?;
    let keep = py.detach(|| prune::channel_mask(xs, channels, norm, sparsity))?;
    Ok(keep.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(prune_magnitude_mask, m)?)?;
    m.add_function(wrap_pyfunction!(prune_nm_mask, m)?)?;
    m.add_function(wrap_pyfunction!(prune_block_mask, m)?)?;
    m.add_function(wrap_pyfunction!(prune_channel_mask, m)?)?;
    Ok(())
}
