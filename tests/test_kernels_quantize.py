"""edgepack.kernels: QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear, bit-exact with
the ONNX spec (golden vectors), the numpy oracles and onnxruntime."""

from __future__ import annotations

import edgepack as ep
import numpy as np
import pytest
import reference as ref
from edgepack import kernels

QTYPES = ["int8", "uint8", "int4", "uint4"]
NP8 = {"int8": np.int8, "uint8": np.uint8}


def unpacked(r, qtype, n):
    """Our result as int64 values (4-bit results are packed)."""
    if qtype in ("int4", "uint4"):
        return ref.unpack4(r, n, qtype == "int4")
    return np.asarray(r).astype(np.int64)


def zp_array(z, qtype):
    z = np.asarray(z)
    if qtype in NP8:
        return z.astype(NP8[qtype])
    import ml_dtypes

    return z.astype(getattr(ml_dtypes, qtype))


# ---------------------------------------------------------------- ONNX spec golden vectors


def test_onnx_golden_ties_to_even():
    x = np.array([0.25, 0.75, 1.25, 1.75, -0.25, -0.75, -1.25], np.float32)
    q = kernels.quantize_linear(x, np.float32(0.5), np.int8(0))
    assert q.dtype == np.int8
    assert q.tolist() == [0, 2, 2, 4, 0, -2, -2]


def test_onnx_golden_saturation():
    x = np.array([-1000, -127.6, -127.4, 127.5, 1000], np.float32)
    q = kernels.quantize_linear(x, np.float32(1), np.int8(0))
    assert q.tolist() == [-128, -128, -127, 127, 127]


def test_onnx_golden_uint8_default_zero_point():
    x = np.array([0, 2, 3, 1000, -254, -1000], np.float32)
    q = kernels.quantize_linear(x, np.float32(2), np.uint8(128))
    assert q.dtype == np.uint8 and q.tolist() == [128, 129, 130, 255, 1, 0]
    q = kernels.quantize_linear(x, np.float32(2))  # no zero point: uint8, zp 0
    assert q.dtype == np.uint8 and q.tolist() == [0, 1, 2, 255, 0, 0]


def test_onnx_golden_per_axis():
    x = np.array(
        [[[-162, 10], [-100, 232], [-20, -50]], [[-76, 0], [0, 252], [32, -44]]], np.float32
    )
    q = kernels.quantize_linear(x, np.float32([2, 4, 5]), np.uint8([84, 24, 196]), axis=1)
    assert q.tolist() == [[[3, 89], [0, 82], [192, 186]], [[46, 84], [24, 87], [202, 187]]]


def test_onnx_golden_blocked():
    x = np.array([[6.0, 12.0, 50.0, 5.0], [1.0, 8.0, 4.0, 5.0], [0.0, 20.0, 10.0, 4.0]], np.float32)
    s = np.array([[1.5, 2.5], [3.0, 4.9], [5.1, 6.9]], np.float32)
    z = np.array([[0, 1], [1, 0], [2, 3]], np.uint8)
    q = kernels.quantize_linear(x, s, z, axis=1, block_size=2)
    assert q.tolist() == [[4, 8, 21, 3], [1, 4, 1, 1], [2, 6, 4, 4]]


def test_onnx_golden_int4():
    x = np.array([0.0, 1.0, 2.0, 100000.0, 254.0, -4.0, -6.0], np.float32).reshape(-1)
    s = np.float32(2)
    q = kernels.quantize_linear(x, s, np.int8(1), output_dtype="int4")
    assert q.dtype == np.uint8 and q.shape == (4,)
    assert ref.unpack4(q, 7, True).tolist() == [1, 1, 2, 7, 7, -1, -2]
    assert q.tolist() == ref.pack4([1, 1, 2, 7, 7, -1, -2]).tolist()
    assert q[0] == (1 | 1 << 4)  # first element in the low nibble


def test_onnx_golden_dynamic():
    x = np.array([0, 2, -3, -2.5, 1.34, 0.5], np.float32)
    y, s, z = kernels.dynamic_quantize_linear(x)
    assert y.dtype == np.uint8 and y.tolist() == [153, 255, 0, 26, 221, 179]
    assert s == np.float32(0.019607844) and z == 153
    y, s, z = kernels.dynamic_quantize_linear(
        np.array([1, 2.1, 1.3, 2.5, 3.34, 4.0, 1.5, 2.6, 3.9, 4.0, 3.0, 2.345], np.float32)
    )
    assert y.tolist() == [64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149]
    assert z == 0


def test_all_zero_dynamic_gives_scale_one():
    y, s, z = kernels.dynamic_quantize_linear(np.zeros(10, np.float32))
    assert s == np.float32(1.0) and z == 0 and not y.any()


def test_division_not_reciprocal():
    # x / scale = 127.4999... (onnx) while x * float32(1 / scale) rounds to 127.5 -> 128.
    x = np.array([0.273939937], np.float32)
    assert kernels.quantize_linear(x, np.float32(0.00214854861)).tolist() == [127]


# ---------------------------------------------------------------- data generators


def data(kind, rng, shape, scale=0.05, heavy=None):
    if kind == "random":
        return rng.standard_normal(shape).astype(np.float32)
    if kind == "ties":
        # exact .5 multiples of the scale (x = (k + 0.5) * scale is exact for these scales)
        k = rng.integers(-300, 300, size=shape)
        return ((k + 0.5) * scale).astype(np.float32)
    return heavy(rng, shape)


SHAPES = [(37,), (5, 33), (3, 4, 17), (2, 65, 3)]


# ---------------------------------------------------------------- bit-exact with onnxruntime


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("kind", ["random", "ties", "heavy"])
def test_per_tensor_matches_ort(rng, heavy, qtype, kind):
    import _ort

    lo, hi = ref.QRANGE[qtype]
    for shape in SHAPES + [(4099,), (1, 1000)]:
        x = data(kind, rng, shape, 0.0625, heavy=heavy)
        for scale in (np.float32(0.0625), np.float32(0.00214854861), np.float32(0.3)):
            zp = int(rng.integers(lo, hi + 1))
            got = kernels.quantize_linear(x, scale, zp_array(zp, qtype))
            want = _ort.quantize_linear(
                x, scale, zp_array(zp, qtype) if qtype in NP8 else np.array(zp), qtype
            )
            assert np.array_equal(
                unpacked(got, qtype, x.size),
                want.reshape(-1).astype(np.int64) if qtype[-1] == "4" else want.astype(np.int64),
            ), (shape, scale, zp)
            oracle = ref.quantize_onnx(x, scale, zp, lo, hi)
            assert np.array_equal(unpacked(got, qtype, x.size).reshape(-1), oracle.reshape(-1))


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("kind", ["random", "ties", "heavy"])
def test_per_axis_matches_ort(rng, heavy, qtype, kind):
    import _ort

    lo, hi = ref.QRANGE[qtype]
    for shape in SHAPES[1:]:
        for axis in range(-len(shape), len(shape)):
            x = data(kind, rng, shape, 0.0625, heavy=heavy)
            c = shape[axis]
            scale = (rng.choice([0.0625, 0.125, 0.01, 0.3], size=c)).astype(np.float32)
            zp = rng.integers(lo, hi + 1, size=c)
            got = kernels.quantize_linear(x, scale, zp_array(zp, qtype), axis=axis)
            want = _ort.quantize_linear(x, scale, zp, qtype, axis=axis)
            assert np.array_equal(
                unpacked(got, qtype, x.size).reshape(-1), want.reshape(-1).astype(np.int64)
            ), (shape, axis)
            s = ref.broadcast_params(shape, scale, axis)
            z = ref.broadcast_params(shape, zp, axis)
            assert np.array_equal(
                unpacked(got, qtype, x.size).reshape(-1),
                ref.quantize_onnx(x, s, z, lo, hi).reshape(-1),
            )


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("kind", ["random", "ties", "heavy"])
def test_blocked_matches_ort(rng, heavy, qtype, kind):
    import _ort

    lo, hi = ref.QRANGE[qtype]
    for shape in SHAPES[1:]:
        for axis in range(len(shape)):
            for bs in (1, 2, 3, 16):
                x = data(kind, rng, shape, 0.0625, heavy=heavy)
                pshape = list(shape)
                pshape[axis] = -(-shape[axis] // bs)
                scale = rng.choice([0.0625, 0.125, 0.01, 0.3], size=pshape).astype(np.float32)
                zp = rng.integers(lo, hi + 1, size=pshape)
                got = kernels.quantize_linear(
                    x, scale, zp_array(zp, qtype), axis=axis, block_size=bs
                )
                want = _ort.quantize_linear(x, scale, zp, qtype, axis=axis, block_size=bs)
                assert np.array_equal(
                    unpacked(got, qtype, x.size).reshape(-1), want.reshape(-1).astype(np.int64)
                ), (shape, axis, bs)
                s = ref.broadcast_params(shape, scale, axis, bs)
                z = ref.broadcast_params(shape, zp, axis, bs)
                assert np.array_equal(
                    unpacked(got, qtype, x.size).reshape(-1),
                    ref.quantize_onnx(x, s, z, lo, hi).reshape(-1),
                )


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_matches_ort(rng, qtype):
    import _ort
    import ml_dtypes

    lo, hi = ref.QRANGE[qtype]
    npt = NP8.get(qtype) or getattr(ml_dtypes, qtype)
    for shape in SHAPES:
        q = rng.integers(lo, hi + 1, size=shape)
        # per tensor
        s, z = np.float32(0.0173), int(rng.integers(lo, hi + 1))
        got = kernels.dequantize_linear(q.astype(npt), s, zp_array(z, qtype))
        assert got.dtype == np.float32
        want = _ort.dequantize_linear(q, s, z, qtype)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
        assert np.array_equal(got, ref.dequantize_linear(q, s, z))
        # per axis and blocked
        for axis in range(len(shape)):
            c = shape[axis]
            s = rng.uniform(0.001, 2, size=c).astype(np.float32)
            z = rng.integers(lo, hi + 1, size=c)
            got = kernels.dequantize_linear(q.astype(npt), s, zp_array(z, qtype), axis=axis)
            want = _ort.dequantize_linear(q, s, z, qtype, axis=axis)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
            for bs in (1, 3, 16):
                pshape = list(shape)
                pshape[axis] = -(-shape[axis] // bs)
                s = rng.uniform(0.001, 2, size=pshape).astype(np.float32)
                z = rng.integers(lo, hi + 1, size=pshape)
                got = kernels.dequantize_linear(
                    q.astype(npt), s, zp_array(z, qtype), axis=axis, block_size=bs
                )
                want = _ort.dequantize_linear(q, s, z, qtype, axis=axis, block_size=bs)
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (shape, axis, bs)


@pytest.mark.parametrize("kind", ["random", "ties", "heavy"])
def test_dynamic_matches_ort(rng, heavy, kind):
    import _ort

    for shape in [(1,), (7,), (33, 5), (4096,), (3, 1000)]:
        x = data(kind, rng, shape, heavy=heavy)
        for xx in (x, np.abs(x), -np.abs(x)):
            y, s, z = kernels.dynamic_quantize_linear(xx)
            wy, ws, wz = _ort.dynamic_quantize_linear(xx)
            assert s == ws and z == wz, shape
            assert np.array_equal(y, wy)
            ry, rs, rz = ref.dynamic_quantize_linear(xx)
            assert s == rs and z == rz and np.array_equal(y, ry)


def test_special_values_match_ort():
    import _ort

    x = np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            np.nan,
            3.4e38,
            -3.4e38,
            1e-45,
            -1e-45,
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
        ],
        np.float32,
    )
    for qtype in QTYPES:
        lo, hi = ref.QRANGE[qtype]
        for zp in (lo, 0 if lo < 0 else 3, hi):
            got = kernels.quantize_linear(x, np.float32(1.0), zp_array(zp, qtype))
            want = _ort.quantize_linear(x, np.float32(1.0), np.array(zp), qtype)
            assert np.array_equal(
                unpacked(got, qtype, x.size).reshape(-1), want.reshape(-1).astype(np.int64)
            ), (qtype, zp)


# ---------------------------------------------------------------- dtypes, layouts, empties


@pytest.mark.parametrize("dtype", ["float16", "float64", "bfloat16"])
def test_other_float_inputs_are_converted(rng, dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        dt = ml_dtypes.bfloat16
    else:
        dt = np.dtype(dtype)
    x = rng.standard_normal((6, 7)).astype(dt)
    x32 = x.astype(np.float32)
    assert np.array_equal(
        kernels.quantize_linear(x, np.float32(0.02), np.int8(3)),
        kernels.quantize_linear(x32, np.float32(0.02), np.int8(3)),
    )
    y, s, z = kernels.dynamic_quantize_linear(x)
    y2, s2, z2 = kernels.dynamic_quantize_linear(x32)
    assert np.array_equal(y, y2) and s == s2 and z == z2


def test_fortran_and_strided_inputs(rng):
    x = rng.standard_normal((40, 30)).astype(np.float32)
    for v in (np.asfortranarray(x), x[::2, 1::3], x.T, x[:, ::-1]):
        want = ref.quantize_onnx(v, np.float32(0.01), 0, -128, 127)
        got = kernels.quantize_linear(v, np.float32(0.01), np.int8(0))
        assert np.array_equal(got, want)
        s = (np.arange(v.shape[1]) * 0.001 + 0.01).astype(np.float32)
        got = kernels.quantize_linear(v, s, np.zeros(v.shape[1], np.int8), axis=1)
        assert np.array_equal(
            got, ref.quantize_onnx(v, ref.broadcast_params(v.shape, s, 1), 0, -128, 127)
        )
        q = got.T  # non-contiguous int8 input
        d = kernels.dequantize_linear(q, np.float32(0.5), np.int8(1))
        assert np.array_equal(d, ref.dequantize_linear(q, np.float32(0.5), 1))


def test_empty_arrays():
    for shape in [(0,), (3, 0), (0, 4)]:
        x = np.zeros(shape, np.float32)
        q = kernels.quantize_linear(x, np.float32(1), np.int8(0))
        assert q.shape == shape and q.dtype == np.int8
        q4 = kernels.quantize_linear(x, np.float32(1), np.int8(0), output_dtype="int4")
        assert q4.shape == (0,)
        d = kernels.dequantize_linear(q, np.float32(1))
        assert d.shape == shape
        y, s, z = kernels.dynamic_quantize_linear(x)
        assert y.shape == shape and s == 1.0 and z == 0
    x = np.zeros((3, 0), np.float32)
    q = kernels.quantize_linear(x, np.ones(3, np.float32), np.zeros(3, np.int8), axis=0)
    assert q.shape == (3, 0)


def test_scalar_input():
    q = kernels.quantize_linear(np.float32(1.3), np.float32(0.5), np.int8(0))
    assert q.shape == () and int(q) == 3


def test_out_parameter(rng):
    x = rng.standard_normal((64, 33)).astype(np.float32)
    out = np.full(x.shape, 77, np.int8)
    r = kernels.quantize_linear(x, np.float32(0.02), np.int8(0), out=out)
    assert r is out
    assert np.array_equal(out, kernels.quantize_linear(x, np.float32(0.02), np.int8(0)))
    out4 = np.zeros((x.size + 1) // 2, np.uint8)
    kernels.quantize_linear(x, np.float32(0.5), np.int8(0), output_dtype="int4", out=out4)
    assert np.array_equal(
        out4, kernels.quantize_linear(x, np.float32(0.5), np.int8(0), output_dtype="int4")
    )
    fo = np.empty(x.shape, np.float32)
    assert kernels.dequantize_linear(out, np.float32(0.02), out=fo) is fo
    assert np.array_equal(fo, ref.dequantize_linear(out, np.float32(0.02), 0))
    yo = np.empty(x.shape, np.uint8)
    y, s, z = kernels.dynamic_quantize_linear(x, out=yo)
    assert y is yo and np.array_equal(yo, ref.dynamic_quantize_linear(x)[0])
    with pytest.raises(TypeError, match="dtype"):
        kernels.quantize_linear(x, np.float32(0.02), np.int8(0), out=np.empty(x.shape, np.uint8))
    with pytest.raises(ValueError, match="shape"):
        kernels.quantize_linear(x, np.float32(0.02), np.int8(0), out=np.empty((3,), np.int8))
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.quantize_linear(x, np.float32(0.02), np.int8(0), out=np.empty((33, 64), np.int8).T)


def test_output_dtype_conventions():
    x = np.array([-3.0, 200.0], np.float32)
    assert kernels.quantize_linear(x, 1.0, output_dtype=np.int8).dtype == np.int8
    assert kernels.quantize_linear(x, 1.0, output_dtype=3).tolist() == [-3, 127]  # TensorProto.INT8
    assert kernels.quantize_linear(x, 1.0, output_dtype="uint8").tolist() == [0, 200]
    import ml_dtypes

    q = kernels.quantize_linear(x, 1.0, np.array(0, ml_dtypes.int4))
    assert ref.unpack4(q, 2, True).tolist() == [-3, 7]
    with pytest.raises(ValueError, match="must agree"):
        kernels.quantize_linear(x, 1.0, np.uint8(0), output_dtype="int8")


# ---------------------------------------------------------------- bad input


def test_integer_and_complex_inputs_are_type_errors():
    for x in (
        np.arange(4),
        np.arange(4, dtype=np.int8),
        np.ones(3, np.complex64),
        np.array([True]),
    ):
        with pytest.raises(TypeError, match="`x`.*float"):
            kernels.quantize_linear(x, 1.0)
        with pytest.raises(TypeError, match="`x`"):
            kernels.dynamic_quantize_linear(x)
    with pytest.raises(TypeError, match="`q` must be int8"):
        kernels.dequantize_linear(np.ones(3, np.float32), 1.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf, np.nan, 1e-40])
def test_bad_scale_names_the_parameter(bad):
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"`y_scale` must be positive, finite and not subnormal"):
        kernels.quantize_linear(x, np.float32(bad))
    with pytest.raises(ValueError, match="index 1"):
        kernels.quantize_linear(np.ones((2, 3), np.float32), np.float32([1, bad, 1]), axis=1)
    with pytest.raises(ValueError, match=r"`x_scale` must be positive, finite and not subnormal"):
        kernels.dequantize_linear(np.ones(4, np.int8), np.float32(bad))


def test_nan_in_dynamic_names_the_index():
    x = np.ones(100, np.float32)
    x[37] = np.nan
    with pytest.raises(ep.NonFiniteError, match="`x` contains NaN at index 37"):
        kernels.dynamic_quantize_linear(x)
    x[37] = 1
    x[50] = -np.inf
    with pytest.raises(ValueError, match="-Inf at index 50"):
        kernels.dynamic_quantize_linear(x)


def test_infinities_with_given_scale_saturate():
    x = np.array([np.inf, -np.inf], np.float32)
    assert kernels.quantize_linear(x, 1.0, np.int8(0)).tolist() == [127, -128]
    assert kernels.quantize_linear(x, 1.0, np.uint8(9)).tolist() == [255, 0]


def test_bad_shapes_state_the_expected_shape():
    x = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match=r"`y_scale` has shape \(5,\), expected \(6,\)"):
        kernels.quantize_linear(x, np.ones(5, np.float32), axis=1)
    with pytest.raises(ValueError, match=r"expected \(4, 2\)"):
        kernels.quantize_linear(x, np.ones((4, 3), np.float32), axis=1, block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        kernels.quantize_linear(x, np.ones((4, 2), np.float32), axis=1)
    with pytest.raises(ValueError, match=r"`y_zero_point` has shape \(5,\), expected \(6,\)"):
        kernels.quantize_linear(x, np.ones(6, np.float32), np.zeros(5, np.uint8), axis=1)
    with pytest.raises(ValueError, match=r"`axis` = 2 is out of range .* \(expected -2..=1\)"):
        kernels.quantize_linear(x, np.ones(6, np.float32), axis=2)
    with pytest.raises(ValueError, match="`block_size` must be >= 0"):
        kernels.quantize_linear(x, np.ones((4, 2), np.float32), axis=1, block_size=-1)
    with pytest.raises(ValueError, match=r"`x_scale` has shape"):
        kernels.dequantize_linear(np.ones((4, 6), np.int8), np.ones(3, np.float32), axis=0)


def test_zero_point_outside_type():
    x = np.ones(3, np.float32)
    with pytest.raises(
        ValueError,
        match=r"`y_zero_point` value 300 at index 0 is outside the uint8 range \[0, 255\]",
    ):
        kernels.quantize_linear(x, 1.0, np.array([300]), output_dtype="uint8")
    with pytest.raises(ValueError, match=r"outside the int4 range \[-8, 7\]"):
        kernels.quantize_linear(x, 1.0, np.int8(9), output_dtype="int4")
    with pytest.raises(TypeError, match="integer"):
        kernels.quantize_linear(x, 1.0, np.float32(1))
