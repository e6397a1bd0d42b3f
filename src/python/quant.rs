//! Wrappers of `crate::quant`: ONNX-style quantize / dequantize with given parameters, dynamic
//! quantization, and derive-and-quantize. The Python layer (`edgepack/kernels.py`,
//! `edgepack/quantize.py`) coerces dtypes and contiguity; these borrow, check, release the GIL
//! and wrap the outputs without copying.

use numpy::{
    IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::buffers::result_array;
use crate::error::Error;
use crate::quant::{self, Calibration, Convention, QType, Spec};

/// Run `f` on the elements of `out` when given (C-contiguous, writeable), else of a fresh
/// result array of `shape` ([`result_array`]: its previous contents are unspecified, `f` writes
/// every element), with the GIL released; returns the array and `f`'s value.
fn fill<'py, T: numpy::Element, R: Send>(
    py: Python<'py>,
    out: Option<Bound<'py, PyArrayDyn<T>>>,
    shape: &[usize],
    f: impl FnOnce(&mut [T]) -> crate::error::Result<R> + Send,
) -> PyResult<(Bound<'py, PyArrayDyn<T>>, R)> {
    let a = match out {
        Some(o) => {
            if !o.is_c_contiguous() {
                return Err(Error::arg("`out` must be C-contiguous").into());
            }
            o
        }
        None => result_array::<T>(py, shape)?,
    };
    let r = {
        let mut w = a
            .try_readwrite()
            .map_err(|e| Error::arg(format!("`out` is not writeable: {e}")))?;
        let os = w.as_slice_mut()?;
        py.detach(|| f(os))?
    };
    Ok((a, r))
}

/// A zero point argument as (values, shape).
fn zero_point_parts<'a>(
    z: &'a Option<PyReadonlyArrayDyn<'_, i32>>,
) -> PyResult<Option<(&'a [i32], Vec<usize>)>> {
    z.as_ref()
        .map(|z| Ok((z.as_slice()?, z.shape().to_vec())))
        .transpose()
}

/// `_core.quantize_linear(x, scale, zero_point, dtype, axis, block_size, out)`.
#[pyfunction]
#[pyo3(signature = (x, scale, zero_point, dtype, axis, block_size, out=None))]
#[allow(clippy::too_many_arguments)]
fn quantize_linear<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    scale: PyReadonlyArrayDyn<'py, f32>,
    zero_point: Option<PyReadonlyArrayDyn<'py, i32>>,
    dtype: &str,
    axis: i64,
    block_size: i64,
    out: Option<Bound<'py, PyArrayDyn<u8>>>,
) -> PyResult<Bound<'py, PyAny>> {
    let qtype = QType::parse(dtype)?;
    let shape = x.shape().to_vec();
    let (xs, ss, sshape) = (x.as_slice()?, scale.as_slice()?, scale.shape().to_vec());
    let zp = zero_point_parts(&zero_point)?;
    let zp = zp.as_ref().map(|(v, s)| (*v, s.as_slice()));
    let n: usize = shape.iter().product();
    let oshape = if qtype.bits == 8 {
        shape.clone()
    } else {
        vec![qtype.storage_len(n)]
    };
    let (a, ()) = fill(py, out, &oshape, |os| {
        quant::quantize_linear(xs, &shape, ss, &sshape, zp, qtype, axis, block_size, os)
    })?;
    Ok(a.into_any())
}

/// `_core.dequantize_linear(q, dtype, shape, scale, zero_point, axis, block_size, out,
/// in_scale=None, in_axis=0)`; with `in_scale` (AWQ, FORMAT.md section 5) the result is then
/// divided by it along `in_axis`: `(f32(q - zp) * scale) / in_scale`.
#[pyfunction]
#[pyo3(signature = (q, dtype, shape, scale, zero_point, axis, block_size, out=None, in_scale=None, in_axis=0))]
#[allow(clippy::too_many_arguments)]
fn dequantize_linear<'py>(
    py: Python<'py>,
    q: PyReadonlyArrayDyn<'py, u8>,
    dtype: &str,
    shape: Vec<usize>,
    scale: PyReadonlyArrayDyn<'py, f32>,
    zero_point: Option<PyReadonlyArrayDyn<'py, i32>>,
    axis: i64,
    block_size: i64,
    out: Option<Bound<'py, PyArrayDyn<f32>>>,
    in_scale: Option<PyReadonlyArrayDyn<'py, f32>>,
    in_axis: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let qtype = QType::parse(dtype)?;
    let ins = match &in_scale {
        Some(a) => {
            if a.ndim() != 1 {
                return Err(Error::arg(format!(
                    "`in_scale` must be 1-D, found shape {:?}",
                    a.shape()
                ))
                .into());
            }
            Some(a.as_slice()?)
        }
        None => None,
    };
    let (qs, ss, sshape) = (q.as_slice()?, scale.as_slice()?, scale.shape().to_vec());
    let zp = zero_point_parts(&zero_point)?;
    let zp = zp.as_ref().map(|(v, s)| (*v, s.as_slice()));
    if out.is_none() {
        // Checked before allocating the result (its size comes from `shape`, not from `q`).
        let n = shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(|| Error::limit(format!("shape {shape:?} is too large")))?;
        if qs.len() != qtype.storage_len(n) {
            return Err(Error::arg(format!(
                "quantized data has {} bytes, expected {} for {n} {} values of shape {}",
                qs.len(),
                qtype.storage_len(n),
                qtype.name(),
                quant::shape_str(&shape)
            ))
            .into());
        }
    }
    let (a, ()) = fill(py, out, &shape, |os| {
        quant::dequantize_linear(qs, qtype, &shape, ss, &sshape, zp, axis, block_size, os)?;
        match ins {
            Some(s) => quant::divide_in_scale(os, &shape, in_axis, s),
            None => Ok(()),
        }
    })?;
    Ok(a.into_any())
}

/// `_core.dynamic_quantize_linear(x, out)` -> `(y, scale, zero_point)`.
#[pyfunction]
#[pyo3(signature = (x, out=None))]
fn dynamic_quantize_linear<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    out: Option<Bound<'py, PyArrayDyn<u8>>>,
) -> PyResult<(Bound<'py, PyAny>, f32, u8)> {
    let shape = x.shape().to_vec();
    let xs = x.as_slice()?;
    let (a, (s, z)) = fill(py, out, &shape, |os| quant::dynamic_quantize_linear(xs, os))?;
    Ok((a.into_any(), s, z))
}

type Quantized<'py> = (
    Bound<'py, PyArray1<u8>>,
    Bound<'py, PyArrayDyn<f32>>,
    Bound<'py, PyArrayDyn<i32>>,
);

/// `_core.quantize(x, bits, symmetric, axis, block_size, convention, reduce_range,
/// calibration, percentile, out)` -> `(data, scale, zero_point)`; `data` is flat (`out` when
/// given).
#[pyfunction]
#[pyo3(signature = (x, bits, symmetric, axis, block_size, convention, reduce_range, calibration, percentile, out=None, scale_dtype="float32"))]
#[allow(clippy::too_many_arguments)]
fn quantize<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, f32>,
    bits: u8,
    symmetric: bool,
    axis: Option<i64>,
    block_size: Option<i64>,
    convention: &str,
    reduce_range: bool,
    calibration: &str,
    percentile: Option<f64>,
    out: Option<Bound<'py, PyArray1<u8>>>,
    scale_dtype: &str,
) -> PyResult<Quantized<'py>> {
    let scale_f16 = match scale_dtype {
        "float32" => false,
        "float16" => true,
        s => {
            return Err(Error::arg(format!(
                "`scale_dtype` must be 'float32' or 'float16', found {s:?}"
            ))
            .into())
        }
    };
    let calibration = match (calibration, percentile) {
        ("minmax", None) => Calibration::MinMax,
        ("mse", None) => Calibration::Mse,
        ("percentile", p) => Calibration::Percentile(p.unwrap_or(99.999)),
        ("minmax" | "mse", Some(_)) => {
            return Err(Error::arg(format!(
                "`percentile` is only used with calibration='percentile', found calibration={calibration:?}"
            ))
            .into())
        }
        (c, _) => {
            return Err(Error::arg(format!(
                "`calibration` = {c:?} is not known; expected 'minmax', 'percentile' or 'mse'"
            ))
            .into())
        }
    };
    let spec = Spec {
        bits,
        symmetric,
        reduce_range,
        convention: Convention::parse(convention)?,
        calibration,
        scale_f16,
    };
    let shape = x.shape().to_vec();
    let xs = x.as_slice()?;
    let out = out.map(|o| o.to_dyn().clone());
    let (data, d) = fill(py, out, &[spec.qtype().storage_len(xs.len())], |os| {
        quant::quantize_into(xs, &shape, axis, block_size, &spec, os)
    })?;
    let data = data.cast_into::<PyArray1<u8>>()?;
    let scale = d.scale.into_pyarray(py).reshape(d.param_shape.clone())?;
    let zp = d.zero_point.into_pyarray(py).reshape(d.param_shape)?;
    Ok((data, scale, zp))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(quantize_linear, m)?)?;
    m.add_function(wrap_pyfunction!(dequantize_linear, m)?)?;
    m.add_function(wrap_pyfunction!(dynamic_quantize_linear, m)?)?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    Ok(())
}
