//! Result arrays backed by `crate::buffers` (recycled large buffers), so a call returning a
//! fresh large array does not pay first-touch page faults every time.

use numpy::ndarray::{ArrayViewD, IxDyn};
use numpy::{Element, PyArray, PyArrayDyn};
use pyo3::prelude::*;

use crate::buffers::{self, Buffer};
use crate::error::Error;

/// Owns the memory of a result array (its numpy `base`); the buffer goes back to the cache when
/// the last array viewing it is freed.
#[pyclass(frozen, module = "edgepack._core", name = "_ResultBuffer")]
struct ResultBuffer {
    _buf: Buffer,
}

/// A C-ordered array of `shape` to be filled completely by a kernel. Small results are numpy
/// arrays; large ones live in a recycled buffer whose previous contents are unspecified.
pub fn result_array<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let bytes = shape
        .iter()
        .try_fold(std::mem::size_of::<T>(), |a, &b| a.checked_mul(b))
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| Error::limit(format!("a result of shape {shape:?} is too large")))?;
    if bytes < buffers::MIN_BYTES || buffers::limit() == 0 {
        return Ok(PyArrayDyn::<T>::zeros(py, shape.to_vec(), false));
    }
    let mut buf = Buffer::take(bytes)?;
    let ptr = buf.as_mut_ptr().cast::<T>();
    let owner = Bound::new(py, ResultBuffer { _buf: buf })?.into_any();
    // SAFETY: `ptr` is page aligned (so aligned for `T`), valid for `bytes` = size_of::<T>() x
    // the element count, and the mapping stays put for as long as `owner` lives; `owner`
    // becomes the array's base, so it outlives every view of the array.
    let view = unsafe { ArrayViewD::from_shape_ptr(IxDyn(shape), ptr.cast_const()) };
    // SAFETY: as above; the array is created writeable over memory nothing else references.
    Ok(unsafe { PyArray::borrow_from_array(&view, owner) })
}

/// `_core.release_buffers()`: unmap every cached result buffer; returns the bytes freed.
#[pyfunction]
fn release_buffers() -> usize {
    buffers::release()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(release_buffers, m)?)?;
    Ok(())
}
