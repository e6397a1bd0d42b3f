//! Borrowing numpy arrays as slices in C order. `PyReadonlyArray::as_slice` accepts any
//! contiguous array, including a Fortran-ordered one, whose elements it then yields in the
//! wrong order for an N-d kernel; every binding goes through these instead, so such an array
//! (or a strided view) is a named `ArgumentError`, never a silently transposed result.

use numpy::ndarray::Dimension;
use numpy::{Element, PyReadonlyArray, PyReadwriteArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::error::Error;

fn not_c(name: &str) -> PyErr {
    Error::arg(format!(
        "`{name}` must be a C-contiguous array (found a Fortran-ordered or strided one; \
         pass np.ascontiguousarray({name}))"
    ))
    .into()
}

/// The elements of `a` in C order, or an error naming `name`.
pub fn c_slice<'a, T: Element, D: Dimension>(
    a: &'a PyReadonlyArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a [T]> {
    if !a.is_c_contiguous() {
        return Err(not_c(name));
    }
    Ok(a.as_slice()?)
}

/// The elements of a writable `a` in C order, or an error naming `name`.
pub fn c_slice_mut<'a, T: Element, D: Dimension>(
    a: &'a mut PyReadwriteArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a mut [T]> {
    if !a.is_c_contiguous() {
        return Err(not_c(name));
    }
    Ok(a.as_slice_mut()?)
}
