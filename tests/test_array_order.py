"""Fortran-ordered and strided inputs (the as_slice() bug class: a binding computing on the
wrong element order).

`PyReadonlyArray::as_slice` accepts a Fortran-contiguous N-d array and yields its elements in
Fortran order; a kernel reading that as C order computes on a transposed tensor without any
error (found in dequantize before). Every binding now borrows through
`src/python/arrays.rs` (C-contiguous or a named ArgumentError), and the public wrappers
coerce: with the same values in any memory order they give the answer of the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgepack
from edgepack import _core, kernels, prune, sparse

import reference as ref


def _orders(x: np.ndarray) -> dict[str, np.ndarray]:
    """The same values as a Fortran-ordered array and as a strided view."""
    big = np.empty((x.shape[0], 2 * x.shape[1]), dtype=x.dtype)
    big[:, ::2] = x
    out = {"fortran": np.asfortranarray(x), "strided": big[:, ::2]}
    assert not out["fortran"].flags.c_contiguous and not out["strided"].flags.c_contiguous
    np.testing.assert_array_equal(out["strided"], x)
    return out


@pytest.fixture
def w(rng, heavy):
    return heavy(rng, (6, 10))  # rows != cols, so a transposed read changes the answer


def test_quantize_linear_per_axis_any_order(w):
    scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)
    want = ref.quantize_onnx(w, scale[None, :], np.zeros((1, 10), np.int32), -128, 127).astype(np.int8)
    for kind, x in _orders(w).items():
        got = kernels.quantize_linear(x, scale, np.zeros(10, np.int8), axis=1)
        np.testing.assert_array_equal(got, want, err_msg=kind)


def test_dequantize_linear_any_order(rng, w):
    q = rng.integers(-128, 128, size=w.shape, dtype=np.int8)
    scale = rng.uniform(0.01, 0.1, size=10).astype(np.float32)
    want = ref.dequantize_linear(q, scale[None, :], np.zeros((1, 10), np.int8))
    for kind, qq in _orders(q).items():
        got = kernels.dequantize_linear(qq, scale, np.zeros(10, np.int8), axis=1)
        np.testing.assert_array_equal(got, want, err_msg=kind)


def test_quantize_and_dequantize_any_order(w):
    want = edgepack.quantize(w, bits=8, axis=0)
    for kind, x in _orders(w).items():
        got = edgepack.quantize(x, bits=8, axis=0)
        np.testing.assert_array_equal(np.asarray(got.data), np.asarray(want.data), err_msg=kind)
        np.testing.assert_array_equal(edgepack.dequantize(got), edgepack.dequantize(want), err_msg=kind)


def test_dequantize_of_a_fortran_ordered_quantized_tensor(w):
    qt = edgepack.quantize(w, bits=8, axis=0)
    want = ref.dequantize_linear(np.asarray(qt.data), np.asarray(qt.scale)[:, None], np.zeros((6, 1), np.int8))
    import dataclasses

    qf = dataclasses.replace(qt, data=np.asfortranarray(qt.data))
    np.testing.assert_array_equal(edgepack.dequantize(qf), want)


def test_prune_masks_any_order(w):
    want = {
        "magnitude": ref.magnitude_keep(w, 0.5),
        "nm": ref.nm_keep(w, 2, 5, axis=-1),
        "block": ref.block_keep(w, 0.5, (2, 2)),
    }
    for kind, x in _orders(w).items():
        np.testing.assert_array_equal(prune.magnitude_mask(x, 0.5), want["magnitude"], err_msg=kind)
        np.testing.assert_array_equal(prune.nm_mask(x, 2, 5), want["nm"], err_msg=kind)
        np.testing.assert_array_equal(prune.block_mask(x, 0.5, block=(2, 2)), want["block"], err_msg=kind)


def test_sparse_encode_and_to_dense_any_order(w):
    x = np.where(np.abs(w) > 0.02, w, np.float32(0))
    for kind, xx in _orders(x).items():
        st = sparse.encode(xx)
        np.testing.assert_array_equal(st.to_dense(), x, err_msg=kind)
        out = np.asfortranarray(np.full(x.shape, 7.0, np.float32))
        with pytest.raises((edgepack.ArgumentError, ValueError)):
            st.to_dense(out=out)  # a Fortran-ordered out= is refused, never filled transposed


def test_matmul_integer_any_order(rng):
    a = rng.integers(-128, 128, size=(5, 7), dtype=np.int8)
    b = rng.integers(-128, 128, size=(7, 3), dtype=np.int8)
    want = ref.matmul_integer(a, b)
    for ka, aa in _orders(a).items():
        for kb, bb in _orders(b).items():
            np.testing.assert_array_equal(kernels.matmul_integer(aa, bb), want, err_msg=f"{ka} x {kb}")


def test_compress_fortran_ordered_weights(tmp_path, w):
    m = edgepack.compress({"w": np.asfortranarray(w)}, {"rules": [{"pattern": "*", "action": "keep"}]})
    np.testing.assert_array_equal(m["w"], w)


def test_calibration_update_any_order(rng, w):
    x = rng.standard_t(3, size=(9, 10)).astype(np.float32)
    want = edgepack.CalibrationStats(full=True)
    want.update("l", x)
    for kind, xx in _orders(x).items():
        s = edgepack.CalibrationStats(full=True)
        s.update("l", xx)
        np.testing.assert_array_equal(s.hessian("l"), want.hessian("l"), err_msg=kind)


# -- the bindings themselves: a named error, never a transposed read ----------------------------


def _refused(call):
    with pytest.raises(edgepack.ArgumentError, match="C-contiguous"):
        call()


def test_core_bindings_refuse_fortran_arrays(w):
    f = np.asfortranarray(w)
    s1 = np.ones(1, np.float32)
    _refused(lambda: _core.quantize_linear(f, s1, None, "int8", 1, 0))
    _refused(lambda: _core.dynamic_quantize_linear(f))
    _refused(lambda: _core.quantize(f, 8, True, 0, None, "onnx", False, "minmax", None))
    q = np.asfortranarray(np.ones((6, 10), np.int8)).view(np.uint8)
    _refused(lambda: _core.dequantize_linear(q, "int8", [6, 10], s1, None, 1, 0))
    _refused(lambda: _core.prune_magnitude_mask(f, 1, 0.5))
    _refused(lambda: _core.prune_nm_mask(f, 2, 5, 1))
    _refused(lambda: _core.prune_block_mask(f, [2, 2], 0.5))
    _refused(lambda: _core.prune_channel_mask(f, 6, "2", 0.5))
    _refused(lambda: _core.SparseTensorCore.encode(f.view(np.uint32), "float32"))
    _refused(lambda: _core._pack_matrix(np.asfortranarray(np.ones((4, 3), np.uint8)), True, np.zeros(1, np.int64)))
