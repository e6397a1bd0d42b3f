//! Bindings of the `.epk` reader and writer (`src/format/`): `EpkReader`, `EpkWriter`,
//! `epk_validate`. The Python side (`edgepack.model`) builds on these.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use super::arrays::c_slice;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::format::header::{parse_json, Header};
use crate::format::{encode_payload, Dtype, Encoding, Parsed, Reader, TensorMeta, Writer};

/// An opened, validated `.epk` file (memory-mapped; payloads decoded on access).
#[pyclass(frozen, module = "edgepack._core")]
struct EpkReader {
    inner: Reader,
}

#[pymethods]
impl EpkReader {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| Reader::open(&path))?;
        Ok(EpkReader { inner })
    }

    /// The file's path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// The validated header, as canonical JSON; without the `recipe` key when `recipe` is
    /// false (read it on demand with `recipe_json`).
    #[pyo3(signature = (recipe=true))]
    fn header_json(&self, recipe: bool) -> String {
        self.inner.header().to_json_parts(recipe)
    }

    /// The file's recipe as canonical JSON (`null` or an object).
    fn recipe_json(&self) -> String {
        self.inner.header().recipe_json()
    }

    /// Verify one payload and return its decoded bytes as a uint8 array: for an uncompressed
    /// payload a read-only view of this reader's memory map (no copy; the array keeps the
    /// reader alive), else a fresh decoded array. Never re-opens the path: a file replaced or
    /// deleted since it was opened does not change what the reader returns.
    fn payload<'py>(
        slf: &Bound<'py, Self>,
        tensor: &str,
        role: &str,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let py = slf.py();
        let inner = &slf.get().inner;
        if let Some(bytes) = py.detach(|| inner.verified_bytes(tensor, role))? {
            if bytes.is_empty() {
                return Ok(PyArray1::<u8>::zeros(py, 0, false));
            }
            let view = ArrayView1::from(bytes);
            // SAFETY: `bytes` borrows the reader's memory map, which lives (unmoved, never
            // unmapped) as long as the `EpkReader` object; that object becomes the array's
            // base, so it outlives the array and every view of it. The array is made read-only
            // below before Python sees it (the map is PROT_READ).
            let arr = unsafe { PyArray1::borrow_from_array(&view, slf.clone().into_any()) };
            arr.getattr("flags")?.setattr("writeable", false)?;
            return Ok(arr);
        }
        let v = py.detach(|| inner.payload(tensor, role))?;
        Ok(v.into_pyarray(py))
    }

    /// Write the file's bytes, as validated when it was opened, to `dest` atomically
    /// (temporary file next to `dest`, fsync, rename).
    fn save(&self, py: Python<'_>, dest: PathBuf) -> PyResult<()> {
        Ok(py.detach(|| self.inner.save(&dest))?)
    }

    /// Verify every payload (reads the whole file).
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.detach(|| self.inner.verify())?)
    }

    /// Size of the file in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.bytes().len()
    }
}

fn parse_obj(s: Option<&str>, what: &str) -> Result<Option<Map<String, Value>>, Error> {
    match s {
        None => Ok(None),
        Some(s) => match parse_json(s.as_bytes(), what)? {
            Value::Object(m) => Ok(Some(m)),
            _ => Err(Error::arg(format!("{what} must be a JSON object"))),
        },
    }
}

fn dtype(s: &str, what: &str) -> Result<Dtype, Error> {
    Dtype::parse(s).ok_or_else(|| Error::dtype(format!("{what}: unsupported dtype {s:?}")))
}

/// An `.epk` file being written; `add` may be called from several threads at once
/// (compression runs without the GIL and without the writer's lock).
#[pyclass(frozen, module = "edgepack._core")]
struct EpkWriter {
    inner: Mutex<Option<Writer>>,
}

type PayloadArg<'py> = (String, String, Vec<u64>, PyReadonlyArray1<'py, u8>);

#[pymethods]
impl EpkWriter {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        Ok(EpkWriter {
            inner: Mutex::new(Some(Writer::create(path)?)),
        })
    }

    /// Add one tensor: `payloads` is a list of `(role, dtype, shape, bytes as a uint8 array)`.
    #[pyo3(signature = (name, dtype, shape, encoding, params_json, stats_json, payloads, zstd_level=None))]
    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        py: Python<'_>,
        name: String,
        dtype: &str,
        shape: Vec<u64>,
        encoding: &str,
        params_json: &str,
        stats_json: Option<&str>,
        payloads: Vec<PayloadArg<'_>>,
        zstd_level: Option<i32>,
    ) -> PyResult<()> {
        let what = format!("tensor {name:?}");
        let meta = TensorMeta {
            dtype: self::dtype(dtype, &what)?,
            encoding: Encoding::parse(encoding)
                .ok_or_else(|| Error::arg(format!("{what}: unknown encoding {encoding:?}")))?,
            params: parse_obj(Some(params_json), "params")?.unwrap_or_default(),
            stats: parse_obj(stats_json, "stats")?,
            shape,
            name,
        };
        let mut parts = Vec::with_capacity(payloads.len());
        for (role, dt, shp, arr) in &payloads {
            parts.push((
                role.as_str(),
                self::dtype(dt, &what)?,
                shp.as_slice(),
                c_slice(arr, "payloads")?,
            ));
        }
        py.detach(|| -> Result<(), Error> {
            let encoded = parts
                .iter()
                .map(|(r, d, s, b)| encode_payload(r, *d, s, b, zstd_level))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| match e {
                    Error::InvalidArgument(m) => Error::arg(format!("{what}: {m}")),
                    o => o,
                })?;
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            match g.as_mut() {
                Some(w) => w.add(meta, &encoded),
                None => Err(Error::arg("the writer is already finished or aborted")),
            }
        })?;
        Ok(())
    }

    /// Write the file (fsync + atomic rename).
    #[pyo3(signature = (metadata, recipe_json=None))]
    fn finish(
        &self,
        py: Python<'_>,
        metadata: BTreeMap<String, String>,
        recipe_json: Option<&str>,
    ) -> PyResult<()> {
        let recipe = match parse_obj(recipe_json, "recipe")? {
            Some(m) => Value::Object(m),
            None => Value::Null,
        };
        let w = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| Error::arg("the writer is already finished or aborted"))?;
        py.detach(|| w.finish(metadata, recipe))?;
        Ok(())
    }

    /// Abandon the file: temporary files are removed, the destination is untouched.
    fn abort(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// One tensor of a safetensors header: `(name, dtype, shape, begin, end)`.
type StTensorTuple = (String, &'static str, Vec<u64>, u64, u64);

/// Read and validate a safetensors file's header (`src/format/safetensors.rs`): returns
/// `(metadata or None, tensors sorted by name, data_start, file_len)`.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn safetensors_header(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<(
    Option<BTreeMap<String, String>>,
    Vec<StTensorTuple>,
    u64,
    u64,
)> {
    let h = py.detach(|| crate::format::safetensors::read_header(&path))?;
    let tensors = h
        .tensors
        .into_iter()
        .map(|t| (t.name, t.dtype.name(), t.shape, t.begin, t.end))
        .collect();
    Ok((h.metadata, tensors, h.data_start, h.file_len))
}

/// Check JSON text from an untrusted file with the `.epk` header's limits (node count, depth,
/// duplicate keys) before Python parses it; a `FormatError` naming `what` otherwise.
#[pyfunction]
fn check_json(py: Python<'_>, text: &str, what: &str) -> PyResult<()> {
    py.detach(|| parse_json(text.as_bytes(), what).map(|_| ()))?;
    Ok(())
}

/// Validate the bytes of a whole `.epk` file; returns its header as canonical JSON.
#[pyfunction]
fn epk_validate(py: Python<'_>, data: &[u8]) -> PyResult<String> {
    let h: Header = py.detach(|| Parsed::parse(data).map(|p| p.header))?;
    Ok(h.to_json())
}

/// `(sxx, syy, sxy, sdd, max_abs, zeros)` of `y` against `x` (f64 sums, see
/// `src/model/stats.rs`).
#[pyfunction]
fn error_sums(
    py: Python<'_>,
    x: PyReadonlyArray1<'_, f32>,
    y: PyReadonlyArray1<'_, f32>,
) -> PyResult<(f64, f64, f64, f64, f64, u64)> {
    let (xs, ys) = (c_slice(&x, "x")?, c_slice(&y, "y")?);
    let s = py.detach(|| crate::model::stats::error_sums(xs, ys))?;
    Ok((s.sxx, s.syy, s.sxy, s.sdd, s.max_abs, s.zeros))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(error_sums, m)?)?;
    m.add_class::<EpkReader>()?;
    m.add_class::<EpkWriter>()?;
    m.add_function(wrap_pyfunction!(epk_validate, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_header, m)?)?;
    m.add_function(wrap_pyfunction!(check_json, m)?)?;
    Ok(())
}
