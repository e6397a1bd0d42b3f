//! int8 matmul wrappers: `pack_matrix`, `matmul_integer`, `qlinear_matmul`,
//! `linear_forward`. The Python layer (`edgepack/kernels.py`, `edgepack/linear.py`) coerces
//! inputs to C-contiguous 2-D byte views and flat zero points; everything else is checked here
//! through the core. The GIL is released while the kernels run.

use std::sync::Arc;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::arrays::{c_slice, c_slice_mut};

use super::buffers::result_array;

use crate::kernels::matmul::{self, linear, Dtype, Lhs};

fn dtype(signed: bool) -> Dtype {
    if signed {
        Dtype::I8
    } else {
        Dtype::U8
    }
}

/// B packed once for the int8 kernels (see `edgepack.kernels.pack_matrix`).
#[pyclass(frozen, module = "edgepack._core", name = "PackedMatrix")]
#[derive(Debug)]
pub struct PyPackedMatrix {
    inner: Arc<matmul::PackedMatrix>,
}

#[pymethods]
impl PyPackedMatrix {
    /// (K, N) of the unpacked matrix.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.inner.k(), self.inner.n())
    }
    /// Bytes held by the packed data and its precomputed terms.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }
    /// "int8" or "uint8".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().name()
    }
    /// The zero point given at pack time: None, an int, or a list of N ints.
    #[getter]
    fn zero_point<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let z = self.inner.zero_point();
        Ok(match z.len() {
            0 => py.None().into_bound(py),
            1 => z[0].into_pyobject(py)?.into_any(),
            _ => PyArray1::from_slice(py, z).into_any(),
        })
    }
    fn __repr__(&self) -> String {
        format!(
            "PackedMatrix(shape=({}, {}), dtype={}, nbytes={})",
            self.inner.k(),
            self.inner.n(),
            self.inner.dtype().name(),
            self.inner.nbytes()
        )
    }
}

/// `_pack_matrix(b, b_signed, b_zero_point)`: b is (K, N) uint8 bytes.
#[pyfunction]
fn _pack_matrix(
    py: Python<'_>,
    b: PyReadonlyArray2<'_, u8>,
    b_signed: bool,
    b_zero_point: PyReadonlyArray1<'_, i64>,
) -> PyResult<PyPackedMatrix> {
    let (k, n) = (b.shape()[0], b.shape()[1]);
    let data = c_slice(&b, "b")?;
    let zp = c_slice(&b_zero_point, "b_zero_point")?;
    let packed = py.detach(|| matmul::PackedMatrix::pack(data, k, n, dtype(b_signed), zp))?;
    Ok(PyPackedMatrix {
        inner: Arc::new(packed),
    })
}

/// `_matmul_integer(a, a_signed, a_zero_point, b, out=None)`: a is (M, K) bytes; returns
/// (M, N) int32, written into `out` (C-contiguous (M, N) int32) when given.
#[pyfunction]
#[pyo3(signature = (a, a_signed, a_zero_point, b, out=None))]
fn _matmul_integer<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, u8>,
    a_signed: bool,
    a_zero_point: PyReadonlyArray1<'py, i64>,
    b: &Bound<'py, PyPackedMatrix>,
    out: Option<Bound<'py, PyArray2<i32>>>,
) -> PyResult<Bound<'py, PyArray2<i32>>> {
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let data = c_slice(&a, "a")?;
    let zp = c_slice(&a_zero_point, "a_zero_point")?;
    let packed = b.get().inner.clone();
    let lhs = Lhs {
        data,
        rows: m,
        k,
        dtype: dtype(a_signed),
    };
    match out {
        Some(arr) => {
            {
                let mut rw = arr.try_readwrite()?;
                let o = c_slice_mut(&mut rw, "out")?;
                py.detach(|| matmul::matmul_integer_into(&lhs, zp, &packed, o))?;
            }
            Ok(arr)
        }
        None => {
            // A recycled result buffer (no page faults for large results; see buffers.rs).
            let arr = result_array::<i32>(py, &[m, packed.n()])?.cast_into::<PyArray2<i32>>()?;
            {
                let mut rw = arr.try_readwrite()?;
                let o = c_slice_mut(&mut rw, "out")?;
                py.detach(|| matmul::matmul_integer_into(&lhs, zp, &packed, o))?;
            }
            Ok(arr)
        }
    }
}

/// `_matmul_integer_b(a, a_signed, a_zero_point, b, b_signed, b_zero_point, out=None)`: B a
/// plain (K, N) byte matrix (multiplied from its bytes up to 16 rows of A, else packed for this
/// call only); written into `out` (C-contiguous (M, N) int32) when given.
#[pyfunction]
#[pyo3(signature = (a, a_signed, a_zero_point, b, b_signed, b_zero_point, out=None))]
#[allow(clippy::too_many_arguments)]
fn _matmul_integer_b<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, u8>,
    a_signed: bool,
    a_zero_point: PyReadonlyArray1<'py, i64>,
    b: PyReadonlyArray2<'py, u8>,
    b_signed: bool,
    b_zero_point: PyReadonlyArray1<'py, i64>,
    out: Option<Bound<'py, PyArray2<i32>>>,
) -> PyResult<Bound<'py, PyArray2<i32>>> {
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let (kb, n) = (b.shape()[0], b.shape()[1]);
    let data = c_slice(&a, "a")?;
    let zp = c_slice(&a_zero_point, "a_zero_point")?;
    let bd = c_slice(&b, "b")?;
    let bzp = c_slice(&b_zero_point, "b_zero_point")?;
    let lhs = Lhs {
        data,
        rows: m,
        k,
        dtype: dtype(a_signed),
    };
    let arr = match out {
        Some(arr) => arr,
        // A recycled result buffer (no page faults for large results; see buffers.rs).
        None => result_array::<i32>(py, &[m, n])?.cast_into::<PyArray2<i32>>()?,
    };
    {
        let mut rw = arr.try_readwrite()?;
        let o = c_slice_mut(&mut rw, "out")?;
        py.detach(|| {
            let rhs = matmul::Rhs {
                data: bd,
                k: kb,
                n,
                dtype: dtype(b_signed),
                zero_point: bzp,
            };
            matmul::matmul_integer_unpacked_into(&lhs, zp, &rhs, o)
        })?;
    }
    Ok(arr)
}

/// `_qlinear_matmul(a, a_signed, a_scale, a_zero_point, b, b_scale, y_scale, y_zero_point,
/// y_signed)`: returns (M, N) bytes of the output dtype.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn _qlinear_matmul<'py>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, u8>,
    a_signed: bool,
    a_scale: f32,
    a_zero_point: PyReadonlyArray1<'py, i64>,
    b: &Bound<'py, PyPackedMatrix>,
    b_scale: PyReadonlyArray1<'py, f32>,
    y_scale: f32,
    y_zero_point: i64,
    y_signed: bool,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let data = c_slice(&a, "a")?;
    let zp = c_slice(&a_zero_point, "a_zero_point")?;
    let bs = c_slice(&b_scale, "b_scale")?;
    let packed = b.get().inner.clone();
    let lhs = Lhs {
        data,
        rows: m,
        k,
        dtype: dtype(a_signed),
    };
    // A recycled result buffer (no page faults for large results; see buffers.rs).
    let arr = result_array::<u8>(py, &[m, packed.n()])?.cast_into::<PyArray2<u8>>()?;
    {
        let mut rw = arr.try_readwrite()?;
        let o = c_slice_mut(&mut rw, "out")?;
        py.detach(|| {
            let q = matmul::QLinear {
                a_scale,
                a_zero_point: zp,
                b_scale: bs,
                y_scale,
                y_zero_point,
                y_dtype: dtype(y_signed),
            };
            matmul::qlinear_matmul_into(&lhs, &packed, &q, o)
        })?;
    }
    Ok(arr)
}

fn activations(mode: &str, scale: f32, zero_point: i64) -> PyResult<linear::Activations> {
    Ok(match mode {
        "dynamic" => linear::Activations::Dynamic,
        "dynamic-per-row" => linear::Activations::DynamicPerRow,
        "static" => linear::Activations::Static { scale, zero_point },
        other => {
            return Err(crate::error::Error::arg(format!(
                "`activations` must be 'dynamic', 'dynamic-per-row' or 'static', found {other:?}"
            ))
            .into())
        }
    })
}

/// `_linear_forward(x, b, w_scale, bias, activations, input_scale, input_zero_point)`:
/// x is (rows, in_features) float32; returns (rows, out_features) float32.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn _linear_forward<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    b: &Bound<'py, PyPackedMatrix>,
    w_scale: PyReadonlyArray1<'py, f32>,
    bias: Option<PyReadonlyArray1<'py, f32>>,
    activations_mode: &str,
    input_scale: f32,
    input_zero_point: i64,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let rows = x.shape()[0];
    let act = activations(activations_mode, input_scale, input_zero_point)?;
    let xs = c_slice(&x, "x")?;
    let ws = c_slice(&w_scale, "w_scale")?;
    let bs = match &bias {
        Some(b) => Some(c_slice(b, "bias")?),
        None => None,
    };
    let packed = b.get().inner.clone();
    let arr = result_array::<f32>(py, &[rows, packed.n()])?.cast_into::<PyArray2<f32>>()?;
    {
        let mut rw = arr.try_readwrite()?;
        let o = c_slice_mut(&mut rw, "out")?;
        py.detach(|| {
            let w = linear::Weights {
                packed: &packed,
                scale: ws,
                bias: bs,
            };
            linear::linear_f32_into_with(crate::kernels::isa::active(), xs, rows, &w, act, o)
        })?;
    }
    Ok(arr)
}

/// `_linear_forward_q8(x, b, w_scale, bias, input_scale, input_zero_point, output_scale,
/// output_zero_point, output_signed)`: static path with int8 / uint8 output bytes.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn _linear_forward_q8<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    b: &Bound<'py, PyPackedMatrix>,
    w_scale: PyReadonlyArray1<'py, f32>,
    bias: Option<PyReadonlyArray1<'py, f32>>,
    input_scale: f32,
    input_zero_point: i64,
    output_scale: f32,
    output_zero_point: i64,
    output_signed: bool,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let rows = x.shape()[0];
    let xs = c_slice(&x, "x")?;
    let ws = c_slice(&w_scale, "w_scale")?;
    let bs = match &bias {
        Some(b) => Some(c_slice(b, "bias")?),
        None => None,
    };
    let packed = b.get().inner.clone();
    let arr = result_array::<u8>(py, &[rows, packed.n()])?.cast_into::<PyArray2<u8>>()?;
    {
        let mut rw = arr.try_readwrite()?;
        let o = c_slice_mut(&mut rw, "out")?;
        py.detach(|| {
            let w = linear::Weights {
                packed: &packed,
                scale: ws,
                bias: bs,
            };
            let q8 = linear::StaticQ8 {
                in_scale: input_scale,
                in_zero_point: input_zero_point,
                out_scale: output_scale,
                out_zero_point: output_zero_point,
                out_dtype: dtype(output_signed),
            };
            linear::linear_q8_into_with(crate::kernels::isa::active(), xs, rows, &w, &q8, o)
        })?;
    }
    Ok(arr)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPackedMatrix>()?;
    m.add_function(wrap_pyfunction!(_pack_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(_matmul_integer, m)?)?;
    m.add_function(wrap_pyfunction!(_matmul_integer_b, m)?)?;
    m.add_function(wrap_pyfunction!(_qlinear_matmul, m)?)?;
    m.add_function(wrap_pyfunction!(_linear_forward, m)?)?;
    m.add_function(wrap_pyfunction!(_linear_forward_q8, m)?)?;
    Ok(())
}
