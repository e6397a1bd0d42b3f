//! Wrappers of `crate::sparse` (the native half of `edgepack.sparse`).

use numpy::{
    IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::arrays::{c_slice, c_slice_mut};
use pyo3::types::{PyBytes, PyTuple};

use crate::error::Error;
use crate::kernels::sparse as k;
use crate::sparse::{DType, Dense, DenseMut, Layout, SparseTensor, Values};

/// The native sparse tensor; `edgepack.sparse.SparseTensor` wraps it.
#[derive(Debug)]
#[pyclass(name = "SparseTensorCore", module = "edgepack._core", frozen)]
pub struct PySparse {
    inner: SparseTensor,
}

fn values_to_py<'py>(py: Python<'py>, v: Values) -> Bound<'py, PyAny> {
    match v {
        Values::U8(v) => v.into_pyarray(py).into_any(),
        Values::U16(v) => v.into_pyarray(py).into_any(),
        Values::U32(v) => v.into_pyarray(py).into_any(),
    }
}

fn values_ref_to_py<'py>(py: Python<'py>, v: &Values) -> Bound<'py, PyAny> {
    match v {
        Values::U8(v) => PyArray1::from_slice(py, v).into_any(),
        Values::U16(v) => PyArray1::from_slice(py, v).into_any(),
        Values::U32(v) => PyArray1::from_slice(py, v).into_any(),
    }
}

/// Run `f` on the dense bit patterns of `x` (a C-contiguous uint8/uint16/uint32 array).
fn with_dense<R>(
    x: &Bound<'_, PyUntypedArray>,
    f: impl FnOnce(Vec<usize>, Dense) -> PyResult<R>,
) -> PyResult<R> {
    let shape = x.shape().to_vec();
    if let Ok(a) = x.cast::<PyArrayDyn<u8>>() {
        let r = a.readonly();
        return f(shape, Dense::U8(c_slice(&r, "x")?));
    }
    if let Ok(a) = x.cast::<PyArrayDyn<u16>>() {
        let r = a.readonly();
        return f(shape, Dense::U16(c_slice(&r, "x")?));
    }
    if let Ok(a) = x.cast::<PyArrayDyn<u32>>() {
        let r = a.readonly();
        return f(shape, Dense::U32(c_slice(&r, "x")?));
    }
    Err(Error::dtype(format!(
        "`x` must be viewed as uint8, uint16 or uint32, found {}",
        x.dtype()
    ))
    .into())
}

#[pymethods]
impl PySparse {
    /// Keep the nonzero entries of `x` (bit patterns), or those set in `mask` (bool array
    /// viewed as uint8, same size).
    #[staticmethod]
    #[pyo3(signature = (x, dtype, mask=None))]
    fn encode(
        py: Python<'_>,
        x: &Bound<'_, PyUntypedArray>,
        dtype: &str,
        mask: Option<numpy::PyReadonlyArrayDyn<'_, u8>>,
    ) -> PyResult<Self> {
        let dtype = DType::from_name(dtype)?;
        let m = match &mask {
            Some(a) => Some(c_slice(a, "mask")?),
            None => None,
        };
        with_dense(x, |shape, d| {
            let inner = py.detach(|| -> crate::error::Result<SparseTensor> {
                let packed = match m {
                    Some(mb) => {
                        if mb.len() != d_len(&d) {
                            return Err(Error::arg(format!(
                                "`mask` has {} elements, `x` has {}",
                                mb.len(),
                                d_len(&d)
                            )));
                        }
                        let mut p = vec![0u8; k::mask_len(mb.len())];
                        k::build_mask(mb, 0xff, &mut p)?;
                        Some(p)
                    }
                    None => None,
                };
                SparseTensor::encode(dtype, &shape, d, packed.as_deref())
            })?;
            Ok(PySparse { inner })
        })
    }

    /// N:M layout along `axis` (non-negative).
    #[staticmethod]
    fn encode_nm(
        py: Python<'_>,
        x: &Bound<'_, PyUntypedArray>,
        dtype: &str,
        n: usize,
        m: usize,
        axis: usize,
    ) -> PyResult<Self> {
        let dtype = DType::from_name(dtype)?;
        with_dense(x, |shape, d| {
            let inner = py.detach(|| SparseTensor::encode_nm(dtype, &shape, d, n, m, axis))?;
            Ok(PySparse { inner })
        })
    }

    /// Parse the byte form (raises `FormatError` on anything corrupt).
    #[staticmethod]
    fn from_bytes(py: Python<'_>, buf: &[u8]) -> PyResult<Self> {
        let inner = py.detach(|| SparseTensor::from_bytes(buf))?;
        Ok(PySparse { inner })
    }

    /// The entropy-coded byte form.
    #[pyo3(signature = (level=1))]
    fn to_bytes<'py>(&self, py: Python<'py>, level: i32) -> PyResult<Bound<'py, PyBytes>> {
        let b = py.detach(|| self.inner.to_bytes(level))?;
        Ok(PyBytes::new(py, &b))
    }

    /// The dense bit patterns, flat (uint8 / uint16 / uint32).
    fn to_dense<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = py.detach(|| self.inner.to_dense())?;
        Ok(values_to_py(py, v))
    }

    /// Write the dense bit patterns into `out` (C-contiguous, writeable uint8 / uint16 /
    /// uint32 array of `size` elements).
    fn to_dense_into(&self, py: Python<'_>, out: &Bound<'_, PyUntypedArray>) -> PyResult<()> {
        if let Ok(a) = out.cast::<PyArrayDyn<u8>>() {
            let mut w = a.try_readwrite()?;
            let o = c_slice_mut(&mut w, "out")?;
            return Ok(py.detach(|| self.inner.to_dense_into(DenseMut::U8(o)))?);
        }
        if let Ok(a) = out.cast::<PyArrayDyn<u16>>() {
            let mut w = a.try_readwrite()?;
            let o = c_slice_mut(&mut w, "out")?;
            return Ok(py.detach(|| self.inner.to_dense_into(DenseMut::U16(o)))?);
        }
        if let Ok(a) = out.cast::<PyArrayDyn<u32>>() {
            let mut w = a.try_readwrite()?;
            let o = c_slice_mut(&mut w, "out")?;
            return Ok(py.detach(|| self.inner.to_dense_into(DenseMut::U32(o)))?);
        }
        Err(Error::dtype(format!(
            "`out` must be viewed as uint8, uint16 or uint32, found {}",
            out.dtype()
        ))
        .into())
    }

    /// Packed bit mask (LSB first).
    fn mask<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let m = py.detach(|| self.inner.mask())?;
        Ok(m.into_pyarray(py))
    }

    /// Stored values (bit patterns, uint8 / uint16 / uint32).
    fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        values_ref_to_py(py, &self.inner.values)
    }

    /// Packed N:M positions (empty for the mask layout).
    fn positions<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u8>> {
        match self.inner.layout {
            Layout::Mask => PyArray1::from_slice(py, &[]),
            Layout::NM { .. } => PyArray1::from_slice(py, &self.inner.index),
        }
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.inner.shape)
    }
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype.name()
    }
    #[getter]
    fn nnz(&self) -> usize {
        self.inner.nnz()
    }
    #[getter]
    fn size(&self) -> usize {
        self.inner.numel()
    }
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }
    /// `None` for the mask layout, else `(n, m, axis)`.
    #[getter]
    fn nm(&self) -> Option<(usize, usize, usize)> {
        match self.inner.layout {
            Layout::Mask => None,
            Layout::NM { n, m, axis } => Some((n, m, axis)),
        }
    }
}

fn d_len(d: &Dense) -> usize {
    match d {
        Dense::U8(v) => v.len(),
        Dense::U16(v) => v.len(),
        Dense::U32(v) => v.len(),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySparse>()?;
    Ok(())
}
