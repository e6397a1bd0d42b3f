//! THE bindings: the only code that names pyo3 / numpy. Each file wraps one area of the core;
//! no algorithm lives here. A wrapper borrows numpy arrays, validates through the core, runs the
//! kernel with the GIL released (`py.detach`), wraps the output without copying, and lets `?`
//! map errors through `errors.rs`.

use pyo3::prelude::*;

mod arrays;
mod buffers;
mod calib; // calibration solvers: GPTQ, SparseGPT, HQQ, SmoothQuant, objective
mod calib_stats; // CalibrationStats (activation statistics)
pub mod errors;
mod info;
// .epk file format
mod format;
mod matmul;
mod prune;
mod quant; // quantize / dequantize
mod sparse;

/// The native module `edgepack._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Refuse to import with an invalid EDGEPACK_ISA / EDGEPACK_NUM_THREADS /
    // EDGEPACK_SPIN_US / EDGEPACK_BUFFER_CACHE_MB: a silent fallback would hide a
    // misconfigured deployment.
    crate::kernels::isa::configured().map_err(errors::to_pyerr)?;
    crate::parallel::threads_from_env().map_err(errors::to_pyerr)?;
    crate::parallel::spin_window().map_err(errors::to_pyerr)?;
    crate::buffers::limit_from_env().map_err(errors::to_pyerr)?;
    info::register(m)?;
    calib::register(m)?;
    calib_stats::register(m)?;
    buffers::register(m)?;
    format::register(m)?;
    quant::register(m)?;
    prune::register(m)?;
    sparse::register(m)?;
    matmul::register(m)?; // int8 matmul
    Ok(())
}
