"""int8 matmul: matmul_integer, pack_matrix, qlinear_matmul, QuantizedLinear.

Expected values come from tests/reference.py (int64 numpy) and from onnxruntime.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import pathlib

import edgepack as ep
import numpy as np
import pytest
import reference as ref

# `from conftest import heavy_tailed` breaks when benches/conftest.py was imported first as
# "conftest" (plain `pytest` collects both folders): load tests/conftest.py by path instead.
_spec = importlib.util.spec_from_file_location(
    "_edgepack_tests_conftest", pathlib.Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
heavy_tailed = _conftest.heavy_tailed


DTYPES = [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8), (np.int8, np.uint8)]


def _rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)


def _zp(rng, dtype, kind, length):
    info = np.iinfo(dtype)
    if kind == "none":
        return None
    if kind == "scalar":
        return dtype(rng.integers(info.min, info.max + 1))
    return rng.integers(info.min, info.max + 1, size=length).astype(dtype)


@pytest.mark.parametrize("adt,bdt", DTYPES)
@pytest.mark.parametrize("akind", ["none", "scalar", "vector"])
@pytest.mark.parametrize("bkind", ["none", "scalar", "vector"])
def test_zero_point_forms(rng, adt, bdt, akind, bkind):
    m, k, n = 13, 45, 70
    a, b = _rand(rng, adt, (m, k)), _rand(rng, bdt, (k, n))
    za, zb = _zp(rng, adt, akind, m), _zp(rng, bdt, bkind, n)
    got = ep.matmul_integer(a, b, za, zb)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref.matmul_integer(a, b, za, zb))
    packed = ep.pack_matrix(b, zb)
    np.testing.assert_array_equal(ep.matmul_integer(a, packed, za), got)


@pytest.mark.parametrize("adt,bdt", DTYPES)
@pytest.mark.parametrize("m", [1, 5, 8, 20])
def test_out_with_plain_and_packed_b(rng, adt, bdt, m):
    # Up to 8 rows a plain B is multiplied from its bytes (direct path), beyond it is packed;
    # `out=` must take the same paths, write every element and return `out` itself.
    k, n = 70, 131
    a, b = _rand(rng, adt, (2, m, k)), _rand(rng, bdt, (k, n))
    za, zb = _zp(rng, adt, "scalar", m), _zp(rng, bdt, "vector", n)
    want = ref.matmul_integer(a, b, za, zb)
    for bb in (b, ep.pack_matrix(b, zb)):
        out = np.full((2, m, n), -(2**31) + 7, np.int32)
        got = ep.matmul_integer(a, bb, za, None if isinstance(bb, ep.PackedMatrix) else zb, out=out)
        assert got is out
        np.testing.assert_array_equal(out, want)
    with pytest.raises(ep.ArgumentError, match=r"`out` must be a writeable C-contiguous array"):
        ep.matmul_integer(a, b, za, zb, out=np.empty((2, m, n + 1), np.int32))
    with pytest.raises(ep.DtypeError, match="`out` must be an int32"):
        ep.matmul_integer(a, b, za, zb, out=np.empty((2, m, n), np.int64))


def test_odd_and_tiny_shapes(rng):
    sizes = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 67]
    for i, m in enumerate(sizes):
        for j, k in enumerate(sizes):
            n = sizes[(i * 3 + j * 5) % len(sizes)]
            adt, bdt = DTYPES[(i + j) % 4]
            a, b = _rand(rng, adt, (m, k)), _rand(rng, bdt, (k, n))
            za = _zp(rng, adt, ["none", "scalar", "vector"][(i + j) % 3], m)
            zb = _zp(rng, bdt, ["vector", "none", "scalar"][(i * j) % 3], n)
            np.testing.assert_array_equal(
                ep.matmul_integer(a, b, za, zb),
                ref.matmul_integer(a, b, za, zb),
                err_msg=f"{m=} {k=} {n=}",
            )


@pytest.mark.parametrize(
    "shape",
    [(1, 4096, 300), (200, 257, 130), (37, 1000, 65), (129, 64, 1030), (305, 2100, 200)],
)
def test_beyond_tile_sizes(rng, shape):
    m, k, n = shape
    for adt, bdt in DTYPES[:2]:
        a, b = _rand(rng, adt, (m, k)), _rand(rng, bdt, (k, n))
        np.testing.assert_array_equal(ep.matmul_integer(a, b), ref.matmul_integer(a, b))


def test_every_thread_count_gives_the_exact_product(rng):
    """Row blocks (about 256 KiB of A each) x panel blocks, split differently per thread count."""
    a, b = _rand(rng, np.int8, (305, 2100)), _rand(rng, np.int8, (2100, 200))
    want = ref.matmul_integer(a, b)
    packed = ep.pack_matrix(b)
    threads = ep.get_num_threads()
    try:
        for t in (1, 2, 3, 5):
            ep.set_num_threads(t)
            np.testing.assert_array_equal(ep.matmul_integer(a, packed), want, err_msg=f"{t=}")
    finally:
        ep.set_num_threads(threads)


def test_batch_dims_and_vector(rng):
    a = _rand(rng, np.uint8, (2, 3, 5, 19))
    b = _rand(rng, np.int8, (19, 11))
    za = rng.integers(0, 256, size=5).astype(np.uint8)
    got = ep.matmul_integer(a, b, za, np.int8(-3))
    assert got.shape == (2, 3, 5, 11)
    np.testing.assert_array_equal(got, ref.matmul_integer(a, b, za, np.int8(-3)))
    v = _rand(rng, np.int8, (19,))
    got = ep.matmul_integer(v, b)
    assert got.shape == (11,)
    np.testing.assert_array_equal(got, ref.matmul_integer(v, b))


def test_non_contiguous_inputs(rng):
    a_big = _rand(rng, np.int8, (40, 90))
    b_big = _rand(rng, np.uint8, (70, 60))
    a = a_big[::2, 3:70]  # (20, 67), strided
    b = b_big[:67, ::-1][:, ::2]  # (67, 30), negative and step strides
    b_t = _rand(rng, np.uint8, (30, 67)).T  # Fortran order
    for bb in (b, b_t):
        np.testing.assert_array_equal(
            ep.matmul_integer(a, bb, 5, 7), ref.matmul_integer(a, bb, 5, 7)
        )


@pytest.mark.parametrize("adt", [np.uint8, np.int8])
@pytest.mark.parametrize("m,k,n", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_empty_dimensions(m, k, n, adt):
    a = np.ones((m, k), adt)
    b = np.ones((k, n), np.int8)
    got = ep.matmul_integer(a, b, 1, 2)
    assert got.shape == (m, n) and got.dtype == np.int32
    np.testing.assert_array_equal(got, ref.matmul_integer(a, b, 1, 2))
    got = ep.matmul_integer(np.ones((2, 0, k), np.uint8), b)
    assert got.shape == (2, 0, n)


@pytest.mark.parametrize(
    "adt,av,bdt,bv,limit",
    [
        (np.uint8, 255, np.int8, -128, 65793),
        (np.uint8, 255, np.int8, 127, 65793),
        (np.int8, -128, np.int8, -128, 131071),
        (np.uint8, 255, np.uint8, 255, 33025),
        (np.int8, -128, np.uint8, 255, 65793),
    ],
)
def test_extreme_operands_at_the_k_limit(adt, av, bdt, bv, limit):
    a = np.full((3, limit), av, adt)
    b = np.full((limit, 5), bv, bdt)
    np.testing.assert_array_equal(ep.matmul_integer(a, b), ref.matmul_integer(a, b))
    a1 = np.full((3, limit + 1), av, adt)
    b1 = np.full((limit + 1, 5), bv, bdt)
    with pytest.raises(ep.LimitError, match=str(limit)) as e:
        ep.matmul_integer(a1, b1)
    assert isinstance(e.value, ValueError)


def test_bad_inputs(rng):
    a = _rand(rng, np.uint8, (4, 6))
    b = _rand(rng, np.int8, (6, 3))
    with pytest.raises(TypeError, match="`a` must be int8 or uint8, found float32"):
        ep.matmul_integer(a.astype(np.float32), b)
    with pytest.raises(TypeError, match="`b` must be int8 or uint8, found int16"):
        ep.matmul_integer(a, b.astype(np.int16))
    with pytest.raises(ValueError, match="K=5 columns but `b` has K=6 rows"):
        ep.matmul_integer(a[:, :5], b)
    with pytest.raises(ValueError, match=r"`a_zero_point` value 256 .* uint8"):
        ep.matmul_integer(a, b, 256)
    with pytest.raises(ValueError, match=r"`b_zero_point` value -129 .* int8"):
        ep.matmul_integer(a, b, None, -129)
    with pytest.raises(ValueError, match=r"`a_zero_point` must be a scalar or have shape \(4,\)"):
        ep.matmul_integer(a, b, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"`b_zero_point` must be a scalar or have shape \(3,\)"):
        ep.matmul_integer(a, b, None, np.zeros((2, 2), np.int8))
    with pytest.raises(TypeError, match="`a_zero_point` must be an integer"):
        ep.matmul_integer(a, b, 1.5)
    with pytest.raises(ValueError, match="must be None when `b` is a PackedMatrix"):
        ep.matmul_integer(a, ep.pack_matrix(b), None, 0)
    with pytest.raises(ValueError, match=r"`b` must be a \(K, N\) matrix"):
        ep.pack_matrix(_rand(rng, np.int8, (2, 6, 3)))
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="`a_scale` must be finite and > 0"):
            ep.qlinear_matmul(a, bad, 0, b, 0.1, 0, 0.2, np.uint8(0))
    with pytest.raises(ValueError, match="`b_scale` must be finite and > 0"):
        ep.qlinear_matmul(a, 0.1, 0, b, np.array([0.1, -1, 0.1], np.float32), 0, 0.2, np.uint8(0))
    with pytest.raises(ValueError, match="`b_scale` has 2 values"):
        ep.qlinear_matmul(a, 0.1, 0, b, np.array([0.1, 0.1], np.float32), 0, 0.2, np.uint8(0))


def test_packed_matrix_attributes(rng):
    b = _rand(rng, np.uint8, (100, 70))
    p = ep.pack_matrix(b, np.arange(70))
    assert p.shape == (100, 70) and p.dtype == "uint8" and p.nbytes >= 100 * 70
    np.testing.assert_array_equal(p.zero_point, np.arange(70))
    assert ep.pack_matrix(b, 3).zero_point == 3 and ep.pack_matrix(b).zero_point is None
    assert "PackedMatrix" in repr(p)


def test_packed_matrix_shared_by_eight_threads(rng):
    b = _rand(rng, np.int8, (300, 200))
    packed = ep.pack_matrix(b, np.int8(3))
    inputs = [_rand(rng, np.uint8, (1 + 17 * i, 300)) for i in range(8)]
    want = [ref.matmul_integer(a, b, 7, np.int8(3)) for a in inputs]

    def work(i):
        return [ep.matmul_integer(inputs[i], packed, 7) for _ in range(20)]

    with cf.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(work, range(8)))
    for i, outs in enumerate(results):
        for got in outs:
            np.testing.assert_array_equal(got, want[i])


# ----------------------------------------------------------------------------- onnxruntime peers

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402


def _run_ort(op, inputs, initializers, out_dtype, domain=""):
    """One-node graph: `inputs` are fed, `initializers` are constants (name -> array or None)."""
    names = []
    graph_inputs = []
    inits = []
    for name, arr in list(inputs.items()) + list(initializers.items()):
        names.append("" if arr is None else name)
    for name, arr in inputs.items():
        graph_inputs.append(
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape
            )
        )
    for name, arr in initializers.items():
        if arr is not None:
            inits.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    order = [*inputs.keys(), *initializers.keys()]
    node_inputs = [n if (n in inputs or initializers.get(n) is not None) else "" for n in order]
    node = helper.make_node(op, node_inputs, ["y"], domain=domain)
    out = helper.make_tensor_value_info(
        "y", helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)), None
    )
    graph = helper.make_graph([node], "g", graph_inputs, [out], initializer=inits)
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)[0]


def _ort_supports(fn):
    try:
        return fn()
    except Exception as e:  # an unsupported type combination (NOT_IMPLEMENTED)
        if "NOT_IMPLEMENTED" in str(e) or "Could not find an implementation" in str(e):
            return None
        raise


@pytest.mark.parametrize("adt,bdt", DTYPES)
def test_matmul_integer_bit_exact_with_onnxruntime(rng, adt, bdt):
    checked = 0
    for m, k, n in [(1, 64, 48), (7, 33, 65), (33, 200, 130), (64, 512, 256)]:
        a, b = _rand(rng, adt, (m, k)), _rand(rng, bdt, (k, n))
        za = np.array(rng.integers(np.iinfo(adt).min, np.iinfo(adt).max + 1), adt)
        zb = np.array(rng.integers(np.iinfo(bdt).min, np.iinfo(bdt).max + 1), bdt)
        want = _ort_supports(
            lambda a=a, b=b, za=za, zb=zb: _run_ort(
                "MatMulInteger",
                {"a": a},
                {"b": b, "a_zero_point": za, "b_zero_point": zb},
                np.int32,
            )
        )
        if want is None:
            continue
        checked += 1
        np.testing.assert_array_equal(ep.matmul_integer(a, b, za, zb), want)
    if not checked:
        pytest.skip(f"onnxruntime has no MatMulInteger for {np.dtype(adt)} x {np.dtype(bdt)}")


@pytest.mark.parametrize("adt,bdt", [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)])
@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul_bit_exact_with_onnxruntime(rng, adt, bdt, per_column):
    m, k, n = 37, 150, 70
    a, b = _rand(rng, adt, (m, k)), _rand(rng, bdt, (k, n))
    a_scale, y_scale = np.float32(0.0123), np.float32(0.731)
    b_scale = (
        rng.uniform(0.001, 0.02, n).astype(np.float32)
        if per_column
        else np.array(0.0071, np.float32)
    )
    info = np.iinfo(adt)
    za = np.array(rng.integers(info.min, info.max + 1), adt)
    zb = np.array(np.iinfo(bdt).min + 100, bdt) if not per_column else np.zeros(n, bdt)
    yz = np.array(5, adt)
    want = _ort_supports(
        lambda: _run_ort(
            "QLinearMatMul",
            {"a": a},
            {
                "a_scale": a_scale,
                "a_zero_point": za,
                "b": b,
                "b_scale": b_scale,
                "b_zero_point": zb,
                "y_scale": y_scale,
                "y_zero_point": yz,
            },
            adt,
        )
    )
    if want is None:
        pytest.skip("onnxruntime has no QLinearMatMul for this type combination")
    got = ep.qlinear_matmul(a, a_scale, za, b, b_scale, zb, y_scale, yz)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        got, ref.qlinear_matmul(a, a_scale, za, b, b_scale, zb, y_scale, yz, adt)
    )
    assert len(np.unique(got)) > 20  # not a saturated, trivially-equal output


# --------------------------------------------------------------------------------- QuantizedLinear


def _layer_inputs(rng, rows=(3, 17), k=256, n=96):
    w = heavy_tailed(rng, (n, k))
    bias = rng.normal(0, 0.1, n).astype(np.float32)
    x = rng.normal(0, 1, rows + (k,)).astype(np.float32)
    return w, bias, x


def test_quantized_linear_dynamic_matches_reference(rng):
    w, bias, x = _layer_inputs(rng)
    layer = ep.QuantizedLinear.from_float(w, bias)
    q_w, s_w = ref.symmetric_int8_weight(w)
    got = layer(x)
    assert got.shape == (3, 17, 96) and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref.quantized_linear_dynamic(x, q_w, s_w, bias))
    got = ep.QuantizedLinear.from_float(w, None, per_channel=False)(x)
    q_w, s_w = ref.symmetric_int8_weight(w, per_channel=False)
    np.testing.assert_array_equal(got, ref.quantized_linear_dynamic(x, q_w, s_w))


def test_quantized_linear_per_row_matches_reference(rng):
    w, bias, x = _layer_inputs(rng)
    x[0, 3] = 0.0  # an all-zero row
    layer = ep.QuantizedLinear.from_float(w, bias, activations="dynamic-per-row")
    q_w, s_w = ref.symmetric_int8_weight(w)
    np.testing.assert_array_equal(layer(x), ref.quantized_linear_per_row(x, q_w, s_w, bias))


def test_quantized_linear_static_matches_reference(rng):
    w, bias, x = _layer_inputs(rng)
    q_w, s_w = ref.symmetric_int8_weight(w)
    layer = ep.QuantizedLinear.from_float(
        w, bias, activations="static", input_scale=0.02, input_zero_point=128
    )
    np.testing.assert_array_equal(
        layer(x), ref.quantized_linear_static(x, q_w, s_w, bias, 0.02, 128)
    )
    layer = ep.QuantizedLinear.from_float(
        w,
        bias,
        activations="static",
        input_scale=0.02,
        input_zero_point=128,
        output_scale=0.05,
        output_zero_point=-3,
    )
    got = layer(x)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(
        got, ref.quantized_linear_static(x, q_w, s_w, bias, 0.02, 128, 0.05, -3, np.int8)
    )
    cal = ep.QuantizedLinear.from_float(w, bias, activations="static", calibration=x)
    _, s, zp = ref.dynamic_quantize_linear(x)
    assert cal.input_scale == pytest.approx(float(s), rel=0) and cal.input_zero_point == int(zp)


def test_quantized_linear_accepts_a_quantized_tensor(rng):
    w, bias, x = _layer_inputs(rng, rows=(5,))
    q_w, s_w = ref.symmetric_int8_weight(w)

    class QT:  # duck-typed edgepack.QuantizedTensor
        data, scale, zero_point, axis, bits = q_w, s_w, np.zeros(96, np.int8), 0, 8

    np.testing.assert_array_equal(
        ep.QuantizedLinear.from_float(QT(), bias)(x),
        ref.quantized_linear_dynamic(x, q_w, s_w, bias),
    )


def test_quantized_linear_bad_inputs(rng):
    w, bias, x = _layer_inputs(rng, rows=(2,))
    layer = ep.QuantizedLinear.from_float(w, bias)
    with pytest.raises(ValueError, match=r"`x` must have shape \(\.\.\., 256\)"):
        layer(x[:, :10])
    with pytest.raises(TypeError, match="`x` must be a float array"):
        layer(x.astype(np.int32))
    bad = x.copy()
    bad[1, 7] = np.nan
    with pytest.raises(ep.NonFiniteError, match="NaN at index 263"):
        layer(bad)
    with pytest.raises(ValueError, match="activations"):
        ep.QuantizedLinear.from_float(w, activations="sometimes")
    with pytest.raises(ValueError, match="input_scale"):
        ep.QuantizedLinear.from_float(w, activations="static")
    with pytest.raises(ValueError, match=r"`bias` must have shape \(96,\)"):
        ep.QuantizedLinear.from_float(w, bias[:5])
    w_nan = w.copy()
    w_nan[3, 4] = np.inf
    with pytest.raises(ep.NonFiniteError):
        ep.QuantizedLinear.from_float(w_nan)
    with pytest.raises(TypeError, match="2-D int8/uint8"):
        ep.QuantizedLinear.from_float(ep.quantize(w, bits=4, axis=0))


def test_quantized_linear_uses_edgepack_quantize(rng):
    w, bias, x = _layer_inputs(rng, rows=(4,))
    qt = ep.quantize(w, axis=0)
    np.testing.assert_array_equal(
        ep.QuantizedLinear.from_float(w, bias)(x), ep.QuantizedLinear.from_float(qt, bias)(x)
    )


def test_quantized_linear_error_no_worse_than_onnxruntime(rng):
    """Same inputs and int8 weights to onnxruntime's DynamicQuantizeMatMul and to ours; compare
    each against float32 ``x @ W.T + b``. Measured (seed 20261129, heavy-tailed weights):
    max abs error ours 0.8174, onnxruntime 0.8174 (identical arithmetic); relative RMS error
    0.0414 both.
    """
    w, bias, x = _layer_inputs(rng, rows=(64,), k=512, n=200)
    q_w, s_w = ref.symmetric_int8_weight(w)
    want = (x.astype(np.float64) @ w.T.astype(np.float64) + bias).astype(np.float32)
    got = ep.QuantizedLinear.from_float(w, bias)(x)
    peer = _run_ort(
        "DynamicQuantizeMatMul",
        {"A": x},
        {"B": np.ascontiguousarray(q_w.T), "b_scale": s_w, "b_zero_point": None, "bias": bias},
        np.float32,
        domain="com.microsoft",
    )
    err_ours = float(np.abs(got - want).max())
    err_ort = float(np.abs(peer - want).max())
    rms_ours = float(np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want**2)))
    rms_ort = float(np.sqrt(np.mean((peer - want) ** 2)) / np.sqrt(np.mean(want**2)))
    print(
        f"max abs error: edgepack {err_ours:.4g}, onnxruntime {err_ort:.4g}; "
        f"rel rms {rms_ours:.4g} / {rms_ort:.4g}"
    )
    assert err_ours <= err_ort * (1 + 1e-6) + 1e-7, (err_ours, err_ort)
    assert rms_ours <= rms_ort * (1 + 1e-6) + 1e-9, (rms_ours, rms_ort)
    per_row = ep.QuantizedLinear.from_float(w, bias, activations="dynamic-per-row")(x)
    assert float(np.abs(per_row - want).max()) < 4 * err_ort
