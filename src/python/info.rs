//! Build facts, ISA and thread settings.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::kernels::isa;
use crate::parallel;

/// `edgepack.build_info()`: version, build profile, ISAs detected and the one in use.
#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", env!("CARGO_PKG_VERSION"))?;
    d.set_item(
        "profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    d.set_item("target_arch", std::env::consts::ARCH)?;
    let detected: Vec<&str> = isa::detected().iter().map(|i| i.name()).collect();
    d.set_item("isa_detected", detected)?;
    d.set_item("isa", isa::active().name())?;
    d.set_item("num_threads", parallel::num_threads())?;
    let spin = parallel::spin_window().map_err(super::errors::to_pyerr)?;
    d.set_item("spin_us", spin.as_micros() as u64)?;
    d.set_item("buffer_cache_limit", crate::buffers::limit())?;
    Ok(d)
}

/// `edgepack.set_num_threads(n)`.
#[pyfunction]
fn set_num_threads(n: i64) -> PyResult<()> {
    let n = usize::try_from(n)
        .map_err(|_| crate::error::Error::arg(format!("`n` must be >= 1 threads, found {n}")))?;
    Ok(parallel::set_num_threads(n)?)
}

/// `edgepack.get_num_threads()`.
#[pyfunction]
fn get_num_threads() -> usize {
    parallel::num_threads()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    Ok(())
}
