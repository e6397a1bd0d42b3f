"""edgepack.quantize / dequantize / QuantizedTensor: parameters as ONNX Runtime's quantization
tool computes them, each convention bit-exact with its anchor, calibration, properties."""

from __future__ import annotations

import dataclasses

import edgepack as ep
import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def oracle(
    x,
    *,
    bits=8,
    symmetric=True,
    axis=None,
    block_size=None,
    convention="onnx",
    reduce_range=False,
    ranges=None,
    f16=False,
):
    """Expected (q, scale, zp) from reference.py: ranges per unit, ORT's compute_scale_zp, the
    convention's rounding."""
    x = np.asarray(x, np.float32)
    qmin, qmax = ref.qrange(bits, symmetric, reduce_range)
    rmin, rmax = ranges if ranges is not None else ref.unit_ranges(x, axis, block_size)
    rmin, rmax = np.atleast_1d(rmin), np.atleast_1d(rmax)
    sz = [
        ref.compute_scale_zp(a, b, qmin, qmax, symmetric, f16)
        for a, b in zip(rmin.reshape(-1), rmax.reshape(-1), strict=True)
    ]
    scale = np.array([s for s, _ in sz], np.float32).reshape(
        np.shape(rmin) if axis is not None else ()
    )
    zp = np.array([z for _, z in sz], np.int64).reshape(scale.shape)
    s_full = ref.broadcast_params(x.shape, scale, axis, block_size)
    z_full = ref.broadcast_params(x.shape, zp, axis, block_size)
    if convention == "onnx":
        q = ref.quantize_onnx(x, s_full, z_full, qmin, qmax)
    elif convention == "torch":
        q = ref.quantize_torch(x, s_full, z_full, qmin, qmax)
    else:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax)).astype(np.float32)
        am = ref.broadcast_params(x.shape, absmax.reshape(scale.shape), axis, block_size)
        q = np.where(am > 0, ref.quantize_tflite(x, np.where(am > 0, am, 1), qmax), 0)
        tiny = scale == 1.0
        if tiny.any():
            q = np.where(
                ref.broadcast_params(x.shape, tiny, axis, block_size),
                ref.quantize_tflite(x, np.float32(qmax), qmax),
                q,
            )
    return q, scale, zp


def values(qt):
    if qt.bits == 4:
        return ref.unpack4(qt.data, qt.size, qt.signed).reshape(qt.shape)
    return qt.data.astype(np.int64)


# ---------------------------------------------------------------- goldens from the issue


def test_onnx_vs_torch_golden():
    x = np.array([0.273939937], np.float32)
    s = np.float32(0.00214854861)
    assert ep.quantize_linear(x, s, np.uint8(0)).tolist() == [127]
    assert ref.quantize_torch(x, s, 0, 0, 255).tolist() == [128]
    # through quantize(): affine uint8 of [0, 0.547847...] gives exactly that scale
    y = np.array([0.273939937, np.float32(0.00214854861) * np.float32(255)], np.float32)
    on = ep.quantize(y, symmetric=False)
    to = ep.quantize(y, symmetric=False, convention="torch")
    assert on.scale == to.scale
    assert on.data[0] != to.data[0] or on.scale != s  # differ exactly when the scale is s
    if on.scale == s:
        assert (int(on.data[0]), int(to.data[0])) == (127, 128)


def test_tflite_vs_onnx_golden():
    x = np.array([127, 0.5, 1.5, 2.5, -0.5], np.float32)
    assert ep.quantize(x, convention="tflite").data.tolist() == [127, 1, 2, 3, -1]
    assert ep.quantize(x).data.tolist() == [127, 0, 2, 2, 0]
    assert ep.quantize(x).scale == np.float32(1.0)


def test_symmetric_int8_rule():
    x = np.array([-3.0, 1.0, 2.54], np.float32)
    qt = ep.quantize(x)
    assert qt.scale.dtype == np.float32 and qt.scale.shape == ()
    assert qt.scale == np.float32(np.float64(np.float32(3.0)) / 127)
    assert qt.zero_point == 0 and qt.zero_point.dtype == np.int8
    assert qt.data.tolist() == [-127, 42, 108]


def test_all_zero_gets_scale_one():
    qt = ep.quantize(np.zeros((3, 4), np.float32), axis=0)
    assert qt.scale.tolist() == [1.0, 1.0, 1.0] and not qt.zero_point.any() and not qt.data.any()
    qt = ep.quantize(np.zeros(5, np.float32), symmetric=False)
    assert qt.scale == 1.0 and qt.zero_point == 0


def test_affine_range_includes_zero():
    qt = ep.quantize(np.array([2.0, 3.0, 5.0], np.float32), symmetric=False)
    assert qt.zero_point == 0 and qt.scale == np.float32(5.0 / 255)
    qt = ep.quantize(np.array([-2.0, -3.0], np.float32), symmetric=False)
    assert qt.zero_point == 255


# ---------------------------------------------------------------- vs the oracle, every granularity


GRANULARITIES = [
    dict(axis=None),
    dict(axis=0),
    dict(axis=1),
    dict(axis=-1),
    dict(axis=1, block_size=4),
    dict(axis=0, block_size=3),
    dict(axis=-1, block_size=32),
]


@pytest.mark.parametrize("gran", GRANULARITIES, ids=str)
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("convention", ["onnx", "torch", "tflite"])
def test_matches_oracle(rng, heavy, gran, bits, symmetric, convention):
    if convention == "tflite" and not symmetric:
        pytest.skip("tflite is symmetric only")
    for shape in [(7, 37), (3, 5, 9), (64, 33)]:
        for x in (heavy(rng, shape), rng.standard_normal(shape).astype(np.float32)):
            if gran["axis"] is not None and gran["axis"] % len(shape) >= len(shape):
                continue
            qt = ep.quantize(x, bits=bits, symmetric=symmetric, convention=convention, **gran)
            q, s, z = oracle(x, bits=bits, symmetric=symmetric, convention=convention, **gran)
            assert qt.shape == shape and qt.bits == bits
            assert qt.scale.shape == s.shape, (qt.scale.shape, s.shape)
            assert np.array_equal(qt.scale, s)
            assert np.array_equal(qt.zero_point.astype(np.int64), z)
            assert np.array_equal(values(qt), q), (shape, gran)
            # dequantize == the oracle's DequantizeLinear
            d = qt.dequantize()
            want = ref.dequantize_linear(
                q,
                ref.broadcast_params(shape, s, gran["axis"], gran.get("block_size")),
                ref.broadcast_params(shape, z, gran["axis"], gran.get("block_size")),
            )
            assert np.array_equal(d, want)
            assert np.array_equal(ep.dequantize(qt), d)


@pytest.mark.parametrize("gran", GRANULARITIES, ids=str)
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("convention", ["onnx", "torch"])
def test_float16_scales_match_oracle(rng, heavy, gran, bits, symmetric, convention):
    """scale_dtype="float16": each scale rounded up to a float16, the zero point and the codes
    derived from it (reference.compute_scale_zp with f16=True)."""
    for shape in [(7, 37), (3, 5, 9), (64, 33)]:
        for x in (heavy(rng, shape), rng.standard_normal(shape).astype(np.float32) * 1e-3):
            qt = ep.quantize(x, bits=bits, symmetric=symmetric, convention=convention,
                             scale_dtype="float16", **gran)
            q, s, z = oracle(x, bits=bits, symmetric=symmetric, convention=convention,
                             f16=True, **gran)
            assert qt.scale.dtype == np.float16 and qt.scale_dtype == "float16"
            assert np.array_equal(qt.scale.astype(np.float64), s.astype(np.float64))
            assert np.array_equal(qt.zero_point.astype(np.int64), z)
            assert np.array_equal(values(qt), q), (shape, gran)
            d = qt.dequantize()
            want = ref.dequantize_linear(
                q,
                ref.broadcast_params(shape, s, gran["axis"], gran.get("block_size")),
                ref.broadcast_params(shape, z, gran["axis"], gran.get("block_size")),
            )
            assert np.array_equal(d, want)
            f32 = ep.quantize(x, bits=bits, symmetric=symmetric, convention=convention, **gran)
            assert qt.nbytes == f32.nbytes - f32.scale.size * 2
            # the float16 scale is never below the float32 one: nothing more is clipped
            assert np.all(qt.scale.astype(np.float32) >= f32.scale)


def test_float16_scales_bad_input(rng, heavy):
    x = heavy(rng, (8, 32))
    with pytest.raises(ep.ArgumentError, match="scale_dtype"):
        ep.quantize(x, scale_dtype="bfloat16")
    with pytest.raises(ep.ArgumentError, match="tflite"):
        ep.quantize(x, convention="tflite", scale_dtype="float16")
    big = x.copy()
    big[3, 5] = 3e6  # int4 symmetric scale 3e6 / 7 > 65504
    with pytest.raises(ep.ArgumentError, match=r"65504.*float32"):
        ep.quantize(big, bits=4, axis=1, block_size=16, scale_dtype="float16")
    qt = ep.quantize(big, bits=4, axis=1, block_size=16)  # float32 scales take it
    assert qt.scale.dtype == np.float32


@pytest.mark.parametrize("symmetric", [True, False])
def test_reduce_range(rng, heavy, symmetric):
    x = heavy(rng, (16, 40))
    qt = ep.quantize(x, symmetric=symmetric, reduce_range=True, axis=0)
    q, s, z = oracle(x, symmetric=symmetric, reduce_range=True, axis=0)
    assert np.array_equal(qt.scale, s) and np.array_equal(values(qt), q)
    lo, hi = (-64, 64) if symmetric else (0, 127)
    assert values(qt).min() >= lo and values(qt).max() <= hi
    assert values(qt).min() == lo or values(qt).max() == hi


def test_ranges_of_each_type(rng, heavy):
    x = heavy(rng, (1000,))
    assert values(ep.quantize(x)).min() >= -127
    assert values(ep.quantize(x, bits=4)).min() >= -7 and values(ep.quantize(x, bits=4)).max() <= 7
    v = values(ep.quantize(x, bits=4, symmetric=False))
    assert v.min() == 0 and v.max() == 15


def test_parameters_match_onnxruntime_tool(rng, heavy):
    qu = pytest.importorskip("onnxruntime.quantization.quant_utils")
    from onnx import TensorProto

    # onnxruntime 1.30 and older compute the range in float32 (rmax - rmin, then the divide);
    # later versions promote to float64 first, as edgepack (and reference.py) do. A range
    # where the two differ by one float32 ulp tells which one is installed.
    a, b = np.float32(-0.5356694), np.float32(0.36159506)
    q0, q1 = qu.get_qmin_qmax_for_qType(TensorProto.UINT8, reduce_range=False, symmetric=False)
    _, s_probe = qu.compute_scale_zp(a, b, q0, q1, symmetric=False)
    if np.float32(s_probe) != np.float32((np.float64(b) - np.float64(a)) / 255.0):
        pytest.skip(
            "this onnxruntime computes the scale in float32 (before its float64 promotion); "
            "edgepack follows the float64 rule"
        )
    x = heavy(rng, (8, 50))
    for symmetric, qtype in ((True, TensorProto.INT8), (False, TensorProto.UINT8)):
        for rr in (False, True):
            qmin, qmax = qu.get_qmin_qmax_for_qType(qtype, reduce_range=rr, symmetric=symmetric)
            qt = ep.quantize(x, symmetric=symmetric, reduce_range=rr, axis=0)
            for c in range(8):
                zp, s = qu.compute_scale_zp(
                    np.float32(x[c].min()), np.float32(x[c].max()), qmin, qmax, symmetric=symmetric
                )
                assert np.float32(s) == qt.scale[c] and int(zp) == int(qt.zero_point[c])


def test_torch_convention_matches_torch(rng, heavy):
    torch = pytest.importorskip("torch")
    x = heavy(rng, (16, 64))
    qt = ep.quantize(x, symmetric=False, convention="torch")
    t = torch.quantize_per_tensor(
        torch.from_numpy(x), float(qt.scale), int(qt.zero_point), torch.quint8
    )
    assert np.array_equal(t.int_repr().numpy(), qt.data)
    qt = ep.quantize(x, convention="torch", axis=0)
    t = torch.quantize_per_channel(
        torch.from_numpy(x),
        torch.from_numpy(qt.scale.astype(np.float64)),
        torch.zeros(16, dtype=torch.int64),
        0,
        torch.qint8,
    )
    assert np.array_equal(t.int_repr().numpy(), qt.data)


def test_quantize_matches_ort_quantize_linear(rng, heavy):
    import _ort

    x = heavy(rng, (32, 70))
    for kw in (dict(axis=None), dict(axis=0), dict(axis=1), dict(axis=1, block_size=16)):
        for bits, symmetric in ((8, True), (8, False), (4, True), (4, False)):
            qt = ep.quantize(x, bits=bits, symmetric=symmetric, **kw)
            axis = 1 if kw["axis"] is None else kw["axis"]
            z = qt.zero_point.astype(np.int64)
            want = _ort.quantize_linear(
                x, qt.scale, z, qt.dtype, axis=axis, block_size=kw.get("block_size", 0)
            )
            assert np.array_equal(values(qt).reshape(-1), want.reshape(-1).astype(np.int64))


# ---------------------------------------------------------------- calibration


def test_percentile_is_exact(rng, heavy):
    x = heavy(rng, (50, 201))
    for p in (99.0, 99.9, 50.0, 100.0):
        qt = ep.quantize(x, calibration="percentile", percentile=p)
        t = ref.percentile_exact(np.abs(x), p)
        q, s, z = oracle(x, ranges=(np.float32(-t), t))
        assert qt.scale == s and np.array_equal(values(qt), q)
        qt = ep.quantize(x, calibration="percentile", percentile=p, symmetric=False)
        cut = (100 - p) / 2
        lo, hi = ref.percentile_exact(x, cut), ref.percentile_exact(x, 100 - cut)
        q, s, z = oracle(x, symmetric=False, ranges=(lo, hi))
        assert qt.scale == s and qt.zero_point == z and np.array_equal(values(qt), q)
    # per channel
    qt = ep.quantize(x, calibration="percentile", percentile=99.0, axis=0)
    t = np.array([ref.percentile_exact(np.abs(r), 99.0) for r in x], np.float32)
    q, s, z = oracle(x, axis=0, ranges=(-t, t))
    assert np.array_equal(qt.scale, s) and np.array_equal(values(qt), q)
    # default percentile
    qt = ep.quantize(x, calibration="percentile")
    assert (
        qt.scale
        == oracle(
            x,
            ranges=(
                -ref.percentile_exact(np.abs(x), 99.999),
                ref.percentile_exact(np.abs(x), 99.999),
            ),
        )[1]
    )


def _err(x, qt):
    return float(np.sum((qt.dequantize().astype(np.float64) - x) ** 2))


def test_mse_beats_minmax_on_heavy_tailed(rng, heavy):
    x = heavy(rng, (64, 256))
    for kw in (
        dict(),
        dict(axis=0),
        dict(symmetric=False),
        dict(bits=4, axis=0),
        dict(axis=1, block_size=64),
    ):
        mm = ep.quantize(x, **kw)
        ms = ep.quantize(x, calibration="mse", **kw)
        assert _err(x, ms) < _err(x, mm), kw


# ---------------------------------------------------------------- QuantizedTensor


def test_quantized_tensor_is_frozen(rng):
    qt = ep.quantize(rng.standard_normal((4, 5)).astype(np.float32), axis=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        qt.scale = np.ones(4, np.float32)  # type: ignore[misc]
    with pytest.raises(ValueError):
        qt.data[0, 0] = 1
    with pytest.raises(ValueError):
        qt.scale[0] = 1


def test_quantized_tensor_fields_and_repr(rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    qt = ep.quantize(x, bits=4, axis=-1, block_size=4, symmetric=False)
    assert qt.axis == 1 and qt.block_size == 4 and qt.bits == 4 and qt.shape == (6, 10)
    assert qt.data.dtype == np.uint8 and qt.data.shape == (30,)
    assert qt.scale.shape == (6, 3) and qt.zero_point.dtype == np.uint8
    assert qt.nbytes == 30 + 18 * 4 + 18
    r = repr(qt)
    assert "uint4" in r and "(6, 10)" in r and "blocks of 4 along axis 1" in r
    assert "per tensor" in repr(ep.quantize(x)) and "scale=" in repr(ep.quantize(x))
    q8 = ep.quantize(x)
    assert q8.nbytes == 60 + 4 + 1
    # reconstruct from fields (what a file reader does)
    qt2 = ep.QuantizedTensor(
        qt.data, qt.scale, qt.zero_point, qt.axis, qt.block_size, qt.bits, qt.shape
    )
    assert np.array_equal(qt2.dequantize(), qt.dequantize())
    with pytest.raises(ValueError, match="packed"):
        ep.QuantizedTensor(qt.data[:-1], qt.scale, qt.zero_point, 1, 4, 4, (6, 10))
    with pytest.raises(TypeError, match="float32"):
        ep.QuantizedTensor(
            q8.data, q8.scale.astype(np.float64), q8.zero_point, None, None, 8, (6, 10)
        )


def test_dequantize_out(rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    qt = ep.quantize(x, axis=0)
    out = np.empty((6, 10), np.float32)
    assert ep.dequantize(qt, out=out) is out
    assert np.array_equal(out, qt.dequantize())


# ---------------------------------------------------------------- inputs


@pytest.mark.parametrize("dtype", ["float16", "float64", "bfloat16"])
def test_other_float_dtypes(rng, dtype):
    import ml_dtypes

    dt = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    x = rng.standard_normal((8, 9)).astype(dt)
    a = ep.quantize(x, axis=0)
    b = ep.quantize(x.astype(np.float32), axis=0)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.scale, b.scale)


def test_fortran_and_strided(rng, heavy):
    x = heavy(rng, (30, 20))
    for v in (np.asfortranarray(x), x[::2, ::3], x.T, x[::-1]):
        for kw in (dict(), dict(axis=0), dict(axis=1), dict(axis=1, block_size=4)):
            qt = ep.quantize(v, **kw)
            q, s, z = oracle(v, **kw)
            assert np.array_equal(values(qt), q) and np.array_equal(qt.scale, s)


def test_empty(rng):
    for shape, kw in (
        ((0,), {}),
        ((3, 0), dict(axis=0)),
        ((0, 4), dict(axis=1)),
        ((3, 0), dict(axis=1, block_size=2)),
    ):
        qt = ep.quantize(np.zeros(shape, np.float32), **kw)
        assert qt.shape == shape and qt.dequantize().shape == shape
    qt = ep.quantize(np.zeros((3, 0), np.float32), axis=0)
    assert qt.scale.tolist() == [1.0, 1.0, 1.0]
    qt = ep.quantize(np.zeros((0,), np.float32), bits=4)
    assert qt.data.shape == (0,)


def test_integer_and_complex_are_type_errors():
    for x in (np.arange(6), np.ones(3, np.complex64), np.ones(2, bool), [1, 2, 3]):
        with pytest.raises(TypeError, match="`x`"):
            ep.quantize(x)


def test_nan_and_inf_name_the_index():
    x = np.ones((10, 10), np.float32)
    x[3, 7] = np.nan
    for kw in (
        dict(),
        dict(axis=0),
        dict(axis=1),
        dict(axis=1, block_size=3),
        dict(axis=0, block_size=3),
        dict(symmetric=False),
        dict(calibration="mse"),
        dict(calibration="percentile"),
    ):
        with pytest.raises(ep.NonFiniteError, match="`x` contains NaN at index 37"):
            ep.quantize(x, **kw)
    x[3, 7] = 1
    x[9, 9] = np.inf
    with pytest.raises(ValueError, match=r"\+Inf at index 99"):
        ep.quantize(x, axis=0)


def test_bad_arguments():
    x = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match="`bits` must be 8 or 4"):
        ep.quantize(x, bits=2)
    with pytest.raises(
        ValueError, match=r"`axis` = 2 is out of range for `x` with 2 dims \(expected -2..=1\)"
    ):
        ep.quantize(x, axis=2)
    with pytest.raises(ValueError, match="`block_size` needs an `axis`"):
        ep.quantize(x, block_size=2)
    with pytest.raises(ValueError, match="`block_size` must be >= 1"):
        ep.quantize(x, axis=0, block_size=0)
    with pytest.raises(ValueError, match="convention"):
        ep.quantize(x, convention="tf")
    with pytest.raises(ValueError, match="symmetric=True"):
        ep.quantize(x, convention="tflite", symmetric=False)
    with pytest.raises(ValueError, match="calibration"):
        ep.quantize(x, calibration="kl")
    with pytest.raises(ValueError, match=r"`percentile` must be in \(0, 100\]"):
        ep.quantize(x, calibration="percentile", percentile=0)
    with pytest.raises(ValueError, match="only used with calibration='percentile'"):
        ep.quantize(x, percentile=99.0)
    with pytest.raises(ValueError, match="reduce_range"):
        ep.quantize(x, bits=4, reduce_range=True)
    with pytest.raises(TypeError, match="QuantizedTensor"):
        ep.dequantize(x)  # type: ignore[arg-type]


# ---------------------------------------------------------------- properties


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.integers(1, 300), elements=finite),
    bits=st.sampled_from([8, 4]),
    symmetric=st.booleans(),
)
def test_round_trip_error_at_most_half_a_step(x, bits, symmetric):
    qt = ep.quantize(x, bits=bits, symmetric=symmetric)
    err = np.abs(qt.dequantize().astype(np.float64) - x)
    # inside the range every value is within scale / 2 (plus float32 rounding of the product)
    s = float(qt.scale)
    assert np.all(err <= s / 2 * (1 + 1e-5) + np.abs(x) * 2e-7)


@settings(max_examples=200, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.integers(1, 200), elements=finite),
    scale=st.floats(0.0009765625, 10, width=32),
    zp=st.integers(-128, 127),
)
def test_saturation_at_the_ends(x, scale, zp):
    q = ep.quantize_linear(x, np.float32(scale), np.int8(zp)).astype(np.int64)
    v = np.rint(x / np.float32(scale)).astype(np.float64) + zp
    assert np.all(q[v >= 127] == 127) and np.all(q[v <= -128] == -128)
    inside = (v > -128) & (v < 127)
    assert np.array_equal(q[inside], v[inside].astype(np.int64))


@pytest.mark.parametrize("block_size", [255, 256, 300, 1000])
def test_large_blocks_match_oracle(rng, heavy, block_size):
    x = heavy(rng, (3, 700))
    for symmetric in (True, False):
        qt = ep.quantize(x, axis=1, block_size=block_size, symmetric=symmetric)
        q, s, z = oracle(x, axis=1, block_size=block_size, symmetric=symmetric)
        assert np.array_equal(qt.scale, s) and np.array_equal(values(qt), q)
        d = ep.dequantize_linear(qt.data, qt.scale, qt.zero_point, axis=1, block_size=block_size)
        assert np.array_equal(d, qt.dequantize())
        g = ep.quantize_linear(x, qt.scale, qt.zero_point, axis=1, block_size=block_size)
        assert np.array_equal(g, qt.data)


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_give_identical_results(rng, heavy, threads):
    """Large tensors run on row groups in parallel: same bytes as one thread and the oracle."""
    x = heavy(rng, (1100, 2050))  # > 2M elements: every parallel path engages
    cases = [
        dict(),
        dict(symmetric=False),
        dict(axis=0),
        dict(axis=1),
        dict(axis=1, block_size=32),
        dict(axis=1, block_size=512),
        dict(axis=0, block_size=64),
        dict(axis=1, block_size=32, bits=4),
    ]
    before = ep.get_num_threads()
    try:
        for kw in cases:
            ep.set_num_threads(1)
            a = ep.quantize(x, **kw)
            da = a.dequantize()
            ep.set_num_threads(threads)
            b = ep.quantize(x, **kw)
            assert np.array_equal(a.data, b.data) and np.array_equal(a.scale, b.scale), kw
            assert np.array_equal(da, b.dequantize()), kw
        q, s, z = oracle(x, axis=0)
        assert np.array_equal(values(ep.quantize(x, axis=0)), q)
        y1, s1, z1 = ep.dynamic_quantize_linear(x)
        ry, rs, rz = ref.dynamic_quantize_linear(x)
        assert s1 == rs and z1 == rz and np.array_equal(y1, ry)
        g = ep.quantize_linear(x, np.float32(0.01), np.uint8(100))
        assert np.array_equal(g, ref.quantize_onnx(x, np.float32(0.01), 100, 0, 255))
    finally:
        ep.set_num_threads(before)


def test_mse_is_the_grid_argmin(rng, heavy):
    """calibration='mse' picks, among thresholds f * range (f = 1.00, 0.99, .., 0.20), the one
    with the smallest squared reconstruction error (checked with the numpy oracle)."""
    x = heavy(rng, (40, 50))
    for symmetric in (True, False):
        qt = ep.quantize(x, calibration="mse", symmetric=symmetric)
        mn, mx = np.float32(x.min()), np.float32(x.max())
        best = None
        for k in range(81):
            f = np.float32(1) - np.float32(k) / np.float32(100)
            q, s, z = oracle(x, symmetric=symmetric, ranges=(mn * f, mx * f))
            err = float(np.sum((ref.dequantize_linear(q, s, z).astype(np.float64) - x) ** 2))
            if best is None or err < best[0]:
                best = (err, s, z, q)
        assert qt.scale == best[1] and qt.zero_point == best[2]
        assert np.array_equal(values(qt), best[3])


def test_dequantize_takes_fortran_ordered_parameters(rng):
    """A Fortran-ordered zero point / scale (e.g. a transposed view) is read in C order."""
    w = rng.standard_t(3, size=(6, 40)).astype(np.float32)
    qt = ep.quantize(w, bits=8, symmetric=False, axis=1, block_size=8)
    want = ref.dequantize_linear(
        np.asarray(qt.data), ref.broadcast_params(w.shape, qt.scale, 1, 8),
        ref.broadcast_params(w.shape, qt.zero_point, 1, 8),
    )
    f = ep.QuantizedTensor(
        data=qt.data,
        scale=np.asfortranarray(qt.scale),
        zero_point=np.asfortranarray(qt.zero_point),
        axis=1,
        block_size=8,
        bits=8,
        shape=qt.shape,
    )
    assert not f.zero_point.flags.c_contiguous
    np.testing.assert_array_equal(f.dequantize(), want)
