//! Wrapper of `crate::calib::stats::StatsSet` (the native half of
//! `edgepack.CalibrationStats`). The GIL is released while a batch is validated and
//! accumulated, and entry locks are only ever taken with the GIL released, so Python threads
//! updating different layers run in parallel and never deadlock on the GIL.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::arrays::c_slice;
use pyo3::types::PyDict;

use crate::calib::stats::{ChannelSums, EntryParts, Layout, Rows, StatsSet};
use crate::error::Error;

/// Native activation statistics; `edgepack.calibration.CalibrationStats` wraps it.
#[derive(Debug)]
#[pyclass(name = "CalibrationStatsCore", module = "edgepack._core", frozen)]
pub struct PyCalibStats {
    inner: StatsSet,
}

fn layouts(l: Option<Vec<String>>) -> PyResult<Option<Vec<Layout>>> {
    Ok(l.map(|v| {
        v.iter()
            .map(|s| Layout::parse(s))
            .collect::<Result<Vec<_>, _>>()
    })
    .transpose()?)
}

#[pymethods]
impl PyCalibStats {
    #[new]
    #[pyo3(signature = (full=true))]
    fn new(full: bool) -> Self {
        PyCalibStats {
            inner: StatsSet::new(full),
        }
    }

    /// Whether `X^T X` is kept.
    #[getter]
    fn full(&self) -> bool {
        self.inner.full()
    }

    /// Record `x` (C-contiguous 2-D float32 / float64, (tokens, in)) for the layers `names`
    /// (one shared entry); `layouts`: one per name, or None.
    #[pyo3(signature = (names, x, layouts=None))]
    fn update(
        &self,
        py: Python<'_>,
        names: Vec<String>,
        x: &Bound<'_, PyUntypedArray>,
        layouts: Option<Vec<String>>,
    ) -> PyResult<()> {
        let ls = self::layouts(layouts)?;
        if x.ndim() != 2 {
            return Err(Error::arg(format!(
                "`x` must be 2-D (tokens, in_features), found {} dimensions",
                x.ndim()
            ))
            .into());
        }
        let (rows, cols) = (x.shape()[0], x.shape()[1]);
        let set = &self.inner;
        if let Ok(a) = x.cast::<PyArray2<f32>>() {
            let r = a.readonly();
            let s = c_slice(&r, "x")?;
            return Ok(py.detach(|| set.update(&names, ls.as_deref(), Rows::F32(s), rows, cols))?);
        }
        if let Ok(a) = x.cast::<PyArray2<f64>>() {
            let r = a.readonly();
            let s = c_slice(&r, "x")?;
            return Ok(py.detach(|| set.update(&names, ls.as_deref(), Rows::F64(s), rows, cols))?);
        }
        Err(Error::dtype(format!(
            "`x` must be float32 or float64, found {}",
            x.dtype()
        ))
        .into())
    }

    /// Every recorded name, sorted.
    fn names(&self, py: Python<'_>) -> Vec<String> {
        py.detach(|| self.inner.names())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| self.inner.len())
    }

    fn __contains__(&self, py: Python<'_>, name: &str) -> bool {
        py.detach(|| self.inner.contains(name))
    }

    /// Groups of names sharing one entry, each sorted, ordered by first name.
    fn groups(&self, py: Python<'_>) -> Vec<Vec<String>> {
        py.detach(|| self.inner.groups())
    }

    /// The names sharing `name`'s entry.
    fn group(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        Ok(py.detach(|| self.inner.group(name))?)
    }

    fn layout(&self, py: Python<'_>, name: &str) -> PyResult<&'static str> {
        Ok(py.detach(|| self.inner.layout(name))?.name())
    }

    fn in_features(&self, py: Python<'_>, name: &str) -> PyResult<usize> {
        Ok(py.detach(|| self.inner.in_features(name))?)
    }

    fn count(&self, py: Python<'_>, name: &str) -> PyResult<u64> {
        Ok(py.detach(|| self.inner.count(name))?)
    }

    /// `X^T X / count`, (in, in) float64, symmetric.
    fn hessian<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (n, h) = py.detach(|| -> crate::error::Result<_> {
            Ok((self.inner.in_features(name)?, self.inner.hessian(name)?))
        })?;
        h.into_pyarray(py).reshape([n, n])
    }

    /// `{"mean", "mean_abs", "mean_sq", "max_abs"}` float64 arrays (in,).
    fn channel_stats<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let c = py.detach(|| self.inner.channel_stats(name))?;
        let d = PyDict::new(py);
        d.set_item("mean", c.sum.into_pyarray(py))?;
        d.set_item("mean_abs", c.sum_abs.into_pyarray(py))?;
        d.set_item("mean_sq", c.sum_sq.into_pyarray(py))?;
        d.set_item("max_abs", c.max_abs.into_pyarray(py))?;
        Ok(d)
    }

    /// The raw parts of `name`'s entry: `(names, layouts, count, sum, sum_abs, sum_sq,
    /// max_abs, xtx_packed | None)`; `xtx_packed` is the upper triangle of `X^T X` in
    /// row-major order (`S[np.triu_indices(n)]`).
    #[allow(clippy::type_complexity)]
    fn parts<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<(
        Vec<String>,
        Vec<&'static str>,
        u64,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Option<Bound<'py, PyArray1<f64>>>,
    )> {
        let p = py.detach(|| self.inner.parts(name))?;
        Ok((
            p.names,
            p.layouts.iter().map(|l| l.name()).collect(),
            p.count,
            p.sums.sum.into_pyarray(py),
            p.sums.sum_abs.into_pyarray(py),
            p.sums.sum_sq.into_pyarray(py),
            p.sums.max_abs.into_pyarray(py),
            p.xtx_packed.map(|v| v.into_pyarray(py)),
        ))
    }

    /// Add an entry from raw parts (validated; errors are `FormatError`).
    #[pyo3(signature = (names, layouts, count, sum, sum_abs, sum_sq, max_abs, xtx_packed=None))]
    #[allow(clippy::too_many_arguments)]
    fn insert_parts(
        &self,
        py: Python<'_>,
        names: Vec<String>,
        layouts: Vec<String>,
        count: u64,
        sum: PyReadonlyArray1<'_, f64>,
        sum_abs: PyReadonlyArray1<'_, f64>,
        sum_sq: PyReadonlyArray1<'_, f64>,
        max_abs: PyReadonlyArray1<'_, f64>,
        xtx_packed: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<()> {
        let layouts = layouts
            .iter()
            .map(|s| Layout::parse(s).map_err(|e| Error::format(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let sums = ChannelSums {
            sum: c_slice(&sum, "sum")?.to_vec(),
            sum_abs: c_slice(&sum_abs, "sum_abs")?.to_vec(),
            sum_sq: c_slice(&sum_sq, "sum_sq")?.to_vec(),
            max_abs: c_slice(&max_abs, "max_abs")?.to_vec(),
        };
        let xtx = match &xtx_packed {
            Some(a) => Some(c_slice(a, "xtx_packed")?),
            None => None,
        };
        py.detach(|| {
            self.inner.insert_parts(EntryParts {
                names,
                layouts,
                count,
                sums,
                xtx_packed: xtx.map(<[f64]>::to_vec),
            })
        })?;
        Ok(())
    }

    /// Add every entry of `other` (see `StatsSet::merge`).
    fn merge(&self, py: Python<'_>, other: &Bound<'_, PyCalibStats>) -> PyResult<()> {
        let o = other.get();
        Ok(py.detach(|| self.inner.merge(&o.inner))?)
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCalibStats>()?;
    Ok(())
}
