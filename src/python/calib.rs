//! Wrappers of the calibration solvers in `crate::calib` (GPTQ, SparseGPT, the output error,
//! HQQ, SmoothQuant scales). `edgepack/methods.py` coerces dtypes, layouts and contiguity;
//! these borrow the arrays, check shapes, release the GIL while the core runs and hand the
//! results to numpy without copying.

use numpy::ndarray::{Array1, Array2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::arrays::c_slice;

use crate::calib::awq::{self, Scheme};
use crate::calib::gptq::GptqOptions;
use crate::calib::grid::Grid;
use crate::calib::hessian::Precision;
use crate::calib::hqq::HqqOptions;
use crate::calib::objective::{self, Hessian};
use crate::calib::smooth;
use crate::calib::sparsegpt::Structure;
use crate::error::{Error, Result};
use crate::quant::{Calibration, Convention, Spec};

/// `(rows, cols)` of a 2-D array.
fn dims<T: numpy::Element>(a: &PyReadonlyArray2<'_, T>) -> (usize, usize) {
    let s = a.shape();
    (s[0], s[1])
}

/// Check that `h` is `(n, n)`.
fn square(h: &PyReadonlyArray2<'_, f64>, n: usize) -> Result<()> {
    let s = dims(h);
    if s != (n, n) {
        return Err(Error::arg(format!(
            "`h` has shape ({}, {}), expected ({n}, {n}) (the input channels of `w`)",
            s.0, s.1
        )));
    }
    Ok(())
}

/// A `(rows, cols)` numpy array owning `v` (no copy).
fn array2<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    shape: (usize, usize),
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let a = Array2::from_shape_vec(shape, v).map_err(|e| Error::arg(e.to_string()))?;
    Ok(a.into_pyarray(py))
}

/// The grid arguments as a validated [`Grid`].
#[allow(clippy::too_many_arguments)]
fn grid<'a>(
    scale: &'a PyReadonlyArray2<'_, f32>,
    zero_point: Option<&'a PyReadonlyArray2<'_, i32>>,
    row_block: usize,
    col_block: usize,
    qmin: i32,
    qmax: i32,
    out: usize,
    inp: usize,
) -> PyResult<Grid<'a>> {
    let zp = match zero_point {
        Some(z) => Some((c_slice(z, "zero_point")?, dims(z))),
        None => None,
    };
    Ok(Grid::new(
        c_slice(scale, "scale")?,
        dims(scale),
        zp,
        row_block,
        col_block,
        qmin,
        qmax,
        out,
        inp,
    )?)
}

/// `_core.gptq(w, h, scale, zero_point, row_block, col_block, qmin, qmax, damp, act_order,
/// block, precision)` -> `(codes int32 (out, in), damp_used)`.
#[pyfunction]
#[pyo3(signature = (w, h, scale, zero_point, row_block, col_block, qmin, qmax, damp=0.01, act_order=true, block=128, precision="float32"))]
#[allow(clippy::too_many_arguments)]
fn gptq<'py>(
    py: Python<'py>,
    w: PyReadonlyArray2<'py, f32>,
    h: PyReadonlyArray2<'py, f64>,
    scale: PyReadonlyArray2<'py, f32>,
    zero_point: Option<PyReadonlyArray2<'py, i32>>,
    row_block: usize,
    col_block: usize,
    qmin: i32,
    qmax: i32,
    damp: f64,
    act_order: bool,
    block: usize,
    precision: &str,
) -> PyResult<(Bound<'py, PyArray2<i32>>, f64)> {
    let precision = Precision::parse(precision)?;
    let (out, inp) = dims(&w);
    square(&h, inp)?;
    let g = grid(
        &scale,
        zero_point.as_ref(),
        row_block,
        col_block,
        qmin,
        qmax,
        out,
        inp,
    )?;
    let (ws, hs) = (c_slice(&w, "w")?, c_slice(&h, "h")?);
    let opts = GptqOptions {
        damp,
        act_order,
        block,
        precision,
    };
    let r = py.detach(|| crate::calib::gptq::gptq(ws, out, inp, hs, &g, opts))?;
    Ok((array2(py, r.codes, (out, inp))?, r.damp_used))
}

type SparseOut<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<bool>>,
    Option<Bound<'py, PyArray2<i32>>>,
    f64,
);

/// `_core.sparsegpt(w, h, sparsity, structure, n, m, block_shape, scale, zero_point,
/// row_block, col_block, qmin, qmax, damp, block, precision)` -> `(w_out, keep, codes | None,
/// damp_used)`.
#[pyfunction]
#[pyo3(signature = (w, h, sparsity, structure="unstructured", n=2, m=4, block_shape=(1, 4), scale=None, zero_point=None, row_block=0, col_block=0, qmin=0, qmax=0, damp=0.01, block=128, precision="float32"))]
#[allow(clippy::too_many_arguments)]
fn sparsegpt<'py>(
    py: Python<'py>,
    w: PyReadonlyArray2<'py, f32>,
    h: PyReadonlyArray2<'py, f64>,
    sparsity: f64,
    structure: &str,
    n: usize,
    m: usize,
    block_shape: (usize, usize),
    scale: Option<PyReadonlyArray2<'py, f32>>,
    zero_point: Option<PyReadonlyArray2<'py, i32>>,
    row_block: usize,
    col_block: usize,
    qmin: i32,
    qmax: i32,
    damp: f64,
    block: usize,
    precision: &str,
) -> PyResult<SparseOut<'py>> {
    let precision = Precision::parse(precision)?;
    let (out, inp) = dims(&w);
    square(&h, inp)?;
    let structure = match structure {
        "unstructured" => Structure::Unstructured,
        "nm" => Structure::Nm { n, m },
        "block" => Structure::Block {
            br: block_shape.0,
            bc: block_shape.1,
        },
        other => {
            return Err(Error::arg(format!(
                "`structure` must be 'unstructured', 'nm' or 'block', found {other:?}"
            ))
            .into())
        }
    };
    let g = match &scale {
        Some(s) => Some(grid(
            s,
            zero_point.as_ref(),
            row_block,
            col_block,
            qmin,
            qmax,
            out,
            inp,
        )?),
        None if zero_point.is_some() => {
            return Err(Error::arg("`zero_point` given without `scale`").into())
        }
        None => None,
    };
    let (ws, hs) = (c_slice(&w, "w")?, c_slice(&h, "h")?);
    let r = py.detach(|| {
        crate::calib::sparsegpt::sparsegpt(
            ws,
            out,
            inp,
            hs,
            sparsity,
            structure,
            g.as_ref(),
            damp,
            block,
            precision,
        )
    })?;
    let codes = match r.codes {
        Some(c) => Some(array2(py, c, (out, inp))?),
        None => None,
    };
    Ok((
        array2(py, r.w, (out, inp))?,
        array2(py, r.keep, (out, inp))?,
        codes,
        r.damp_used,
    ))
}

/// `_core.calib_objective(w, w_hat, h)`: `tr((w - w_hat) h (w - w_hat)^T)` with `h` of shape
/// `(in, in)`, or `sum_j h_j ||w[:, j] - w_hat[:, j]||^2` with `h` of shape `(in,)`.
#[pyfunction]
fn calib_objective<'py>(
    py: Python<'py>,
    w: PyReadonlyArray2<'py, f32>,
    w_hat: PyReadonlyArray2<'py, f32>,
    h: PyReadonlyArrayDyn<'py, f64>,
) -> PyResult<f64> {
    let (out, inp) = dims(&w);
    if dims(&w_hat) != (out, inp) {
        let s = dims(&w_hat);
        return Err(Error::arg(format!(
            "`w_hat` has shape ({}, {}), expected ({out}, {inp}) (the shape of `w`)",
            s.0, s.1
        ))
        .into());
    }
    let hshape = h.shape().to_vec();
    let (ws, whs, hs) = (
        c_slice(&w, "w")?,
        c_slice(&w_hat, "w_hat")?,
        c_slice(&h, "h")?,
    );
    let hh = hessian_arg(&hshape, hs, inp)?;
    Ok(py.detach(|| objective::objective(ws, whs, out, inp, hh))?)
}

type RefinedGrid<'py> = (Bound<'py, PyArray2<f32>>, Option<Bound<'py, PyArray2<i32>>>);

/// `_core.hqq(w, scale, zero_point, row_block, col_block, qmin, qmax, iters, p, col_weight)`
/// -> `(scale float32 (rg, cg), zero_point int32 (rg, cg) | None)`.
#[pyfunction]
#[pyo3(signature = (w, scale, zero_point, row_block, col_block, qmin, qmax, iters=20, p=0.7, col_weight=None))]
#[allow(clippy::too_many_arguments)]
fn hqq<'py>(
    py: Python<'py>,
    w: PyReadonlyArray2<'py, f32>,
    scale: PyReadonlyArray2<'py, f32>,
    zero_point: Option<PyReadonlyArray2<'py, i32>>,
    row_block: usize,
    col_block: usize,
    qmin: i32,
    qmax: i32,
    iters: usize,
    p: f64,
    col_weight: Option<PyReadonlyArray1<'py, f64>>,
) -> PyResult<RefinedGrid<'py>> {
    let (out, inp) = dims(&w);
    let shape = dims(&scale);
    let g = grid(
        &scale,
        zero_point.as_ref(),
        row_block,
        col_block,
        qmin,
        qmax,
        out,
        inp,
    )?;
    let ws = c_slice(&w, "w")?;
    let cw = match &col_weight {
        Some(c) => Some(c_slice(c, "col_weight")?),
        None => None,
    };
    let opts = HqqOptions { iters, p };
    let r = py.detach(|| crate::calib::hqq::hqq(ws, out, inp, &g, cw, opts))?;
    let zp = match r.zero_point {
        Some(z) => Some(array2(py, z, shape)?),
        None => None,
    };
    Ok((array2(py, r.scale, shape)?, zp))
}

/// `_core.smoothquant_scales(act_max, w, alpha)` -> float32 `(in,)`.
#[pyfunction]
#[pyo3(signature = (act_max, w, alpha=0.5))]
fn smoothquant_scales<'py>(
    py: Python<'py>,
    act_max: PyReadonlyArray1<'py, f64>,
    w: PyReadonlyArray2<'py, f32>,
    alpha: f64,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let (out, inp) = dims(&w);
    let (a, ws) = (c_slice(&act_max, "act_max")?, c_slice(&w, "w")?);
    let s = py.detach(|| smooth::smoothquant_scales(a, ws, out, inp, alpha))?;
    Ok(Array1::from_vec(s).into_pyarray(py))
}

type AwqSearch<'py> = (
    Bound<'py, PyArray1<f32>>,
    f64,
    f64,
    Bound<'py, PyArray1<f64>>,
);

/// `_core.awq_search(w, in_axis, h, mean_abs, bits, symmetric, axis, block_size,
/// calibration="minmax", percentile=None, n_grid=20)` -> `(scale float32 (in,), alpha,
/// error, errors float64 (n_grid,))`: the AWQ scale search of `crate::calib::awq` on `w` as
/// given (`in_axis` = its input dimension), the grid derived as `_core.quantize` derives it
/// (ONNX convention).
#[pyfunction]
#[pyo3(signature = (w, in_axis, h, mean_abs, bits, symmetric, axis, block_size, calibration="minmax", percentile=None, n_grid=20))]
#[allow(clippy::too_many_arguments)]
fn awq_search<'py>(
    py: Python<'py>,
    w: PyReadonlyArray2<'py, f32>,
    in_axis: usize,
    h: PyReadonlyArrayDyn<'py, f64>,
    mean_abs: PyReadonlyArray1<'py, f64>,
    bits: u8,
    symmetric: bool,
    axis: Option<i64>,
    block_size: Option<i64>,
    calibration: &str,
    percentile: Option<f64>,
    n_grid: usize,
) -> PyResult<AwqSearch<'py>> {
    let shape = dims(&w);
    let inp = if in_axis == 0 { shape.0 } else { shape.1 };
    let calibration = match (calibration, percentile) {
        ("minmax", None) => Calibration::MinMax,
        ("mse", None) => Calibration::Mse,
        ("percentile", p) => Calibration::Percentile(p.unwrap_or(99.999)),
        (c, _) => {
            return Err(Error::arg(format!(
                "`calibration` = {c:?} with percentile={percentile:?} is not known; expected \
                 'minmax', 'mse' or 'percentile' (with a percentile)"
            ))
            .into())
        }
    };
    let scheme = Scheme {
        axis,
        block_size,
        spec: Spec {
            bits,
            symmetric,
            reduce_range: false,
            convention: Convention::Onnx,
            calibration,
            // the search compares candidates on float32 grids (methods.awq quantizes the
            // result on the float16 grid when asked)
            scale_f16: false,
        },
    };
    let hshape = h.shape().to_vec();
    let (ws, hs, ma) = (
        c_slice(&w, "w")?,
        c_slice(&h, "h")?,
        c_slice(&mean_abs, "mean_abs")?,
    );
    let hh = hessian_arg(&hshape, hs, inp)?;
    let r = py.detach(|| awq::awq(ws, [shape.0, shape.1], in_axis, hh, ma, &scheme, n_grid))?;
    Ok((
        Array1::from_vec(r.scale).into_pyarray(py),
        r.alpha,
        r.error,
        Array1::from_vec(r.errors).into_pyarray(py),
    ))
}

/// `_core.awq_clip(w, h, scale, zero_point, row_block, col_block, qmin, qmax, n_grid=20,
/// max_shrink=0.5)` -> `(scale float32 (rg, cg), zero_point int32 (rg, cg) | None)`: AWQ's
/// clipping search per group of a `(out, in)` weight (`row_block` 1), on the layout of the
/// given grid (its values are not used).
#[pyfunction]
#[pyo3(signature = (w, h, scale, zero_point, row_block, col_block, qmin, qmax, n_grid=20, max_shrink=0.5))]
#[allow(clippy::too_many_arguments)]
fn awq_clip<'py>(
    py: Python<'py>,
    w: PyReadonlyArray2<'py, f32>,
    h: PyReadonlyArrayDyn<'py, f64>,
    scale: PyReadonlyArray2<'py, f32>,
    zero_point: Option<PyReadonlyArray2<'py, i32>>,
    row_block: usize,
    col_block: usize,
    qmin: i32,
    qmax: i32,
    n_grid: usize,
    max_shrink: f64,
) -> PyResult<RefinedGrid<'py>> {
    let (out, inp) = dims(&w);
    let shape = dims(&scale);
    let g = grid(
        &scale,
        zero_point.as_ref(),
        row_block,
        col_block,
        qmin,
        qmax,
        out,
        inp,
    )?;
    let hshape = h.shape().to_vec();
    let (ws, hs) = (c_slice(&w, "w")?, c_slice(&h, "h")?);
    let hh = hessian_arg(&hshape, hs, inp)?;
    let (s, z) = py.detach(|| awq::clip(ws, out, inp, hh, &g, n_grid, max_shrink))?;
    let zp = match z {
        Some(z) => Some(array2(py, z, shape)?),
        None => None,
    };
    Ok((array2(py, s, shape)?, zp))
}

/// `_core.awq_scales(mean_abs, alpha)` -> float32 `(in,)`: the AWQ scales of one alpha.
#[pyfunction]
fn awq_scales<'py>(
    py: Python<'py>,
    mean_abs: PyReadonlyArray1<'py, f64>,
    alpha: f64,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let ma = c_slice(&mean_abs, "mean_abs")?;
    let s = awq::awq_scales(ma, alpha)?;
    Ok(Array1::from_vec(s).into_pyarray(py))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(awq_search, m)?)?;
    m.add_function(wrap_pyfunction!(awq_scales, m)?)?;
    m.add_function(wrap_pyfunction!(awq_clip, m)?)?;
    m.add_function(wrap_pyfunction!(gptq, m)?)?;
    m.add_function(wrap_pyfunction!(sparsegpt, m)?)?;
    m.add_function(wrap_pyfunction!(calib_objective, m)?)?;
    m.add_function(wrap_pyfunction!(hqq, m)?)?;
    m.add_function(wrap_pyfunction!(smoothquant_scales, m)?)?;
    Ok(())
}

/// `h` as the full `(in, in)` second moment or its diagonal `(in,)`, else a named error.
fn hessian_arg<'a>(hshape: &[usize], hs: &'a [f64], inp: usize) -> PyResult<Hessian<'a>> {
    match hshape {
        [n] if *n == inp => Ok(Hessian::Diag(hs)),
        [a, b] if (*a, *b) == (inp, inp) => Ok(Hessian::Full(hs)),
        _ => Err(Error::arg(format!(
            "`h` has shape {hshape:?}, expected ({inp}, {inp}) or ({inp},)"
        ))
        .into()),
    }
}
