"""CalibrationStats (activation statistics), its file form, and the ONNX / PyTorch collectors,
against the numpy oracle ``reference.calib_stats_ref``."""

from __future__ import annotations

import json
import os
import struct
import threading

import numpy as np
import pytest
from reference import calib_stats_ref, calib_stats_ref_batches

import edgepack
from edgepack.calibration import CalibrationStats, collect_onnx, collect_torch

# Sums of the same float64 products in another order (faer's GEMM blocks vs numpy's): a few
# ulps per term.
RTOL = 1e-12


def acts(rng, shape, outliers=2):
    """Heavy-tailed activations (Student-t) with a few outlier channels; never zeros."""
    x = rng.standard_t(4, size=shape)
    cols = rng.choice(shape[-1], size=min(outliers, shape[-1]), replace=False)
    x[..., cols] *= 30.0
    return x.astype(np.float32)


def assert_matches(stats, name, ref, rtol=RTOL):
    assert stats.count(name) == ref["count"]
    scale = np.abs(ref["hessian"]).max()
    if stats.full:
        h = stats.hessian(name)
        assert h.dtype == np.float64 and h.shape == ref["hessian"].shape
        np.testing.assert_allclose(h, ref["hessian"], rtol=rtol, atol=rtol * scale)
        np.testing.assert_array_equal(h, h.T)
    c = stats.channel_stats(name)
    assert set(c) == {"mean", "mean_abs", "mean_sq", "max_abs"}
    for k in ("mean", "mean_abs", "mean_sq"):
        np.testing.assert_allclose(c[k], ref[k], rtol=rtol, atol=rtol * np.abs(ref[k]).max())
    if rtol <= RTOL:  # the same activations: the same maxima
        np.testing.assert_array_equal(c["max_abs"], ref["max_abs"])
    else:
        np.testing.assert_allclose(c["max_abs"], ref["max_abs"], rtol=rtol)


# ---- update / accessors ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (300, 17), (1000, 70), (257, 300)])
def test_one_batch_matches_numpy(rng, shape):
    x = acts(rng, shape)
    s = CalibrationStats()
    s.update("fc.weight", x)
    assert s.names() == ["fc.weight"] and len(s) == 1 and "fc.weight" in s
    assert s.in_features("fc.weight") == shape[1]
    assert_matches(s, "fc.weight", calib_stats_ref(x))


def test_several_batches_equal_one_batch_and_numpy(rng):
    batches = [acts(rng, (n, 48)) for n in (1, 7, 300, 64)]
    many, one = CalibrationStats(), CalibrationStats()
    for b in batches:
        many.update("l", b)
    one.update("l", np.concatenate(batches))
    ref = calib_stats_ref_batches(batches)
    assert_matches(many, "l", ref)
    assert_matches(one, "l", ref)
    np.testing.assert_allclose(many.hessian("l"), one.hessian("l"), rtol=RTOL, atol=1e-12)


def test_three_d_inputs_count_every_leading_dimension(rng):
    x = acts(rng, (3, 11, 20))
    s = CalibrationStats()
    s.update("l", x)
    assert s.count("l") == 33
    assert_matches(s, "l", calib_stats_ref(x))
    s.update("l", x[0, 0])  # a single token (1-D)
    assert s.count("l") == 34


@pytest.mark.parametrize("dtype", ["float16", "float64", "bfloat16"])
def test_other_float_dtypes(rng, dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        dt = np.dtype(ml_dtypes.bfloat16)
    else:
        dt = np.dtype(dtype)
    x = (rng.standard_normal((64, 24)) * 3).astype(dt)
    s = CalibrationStats()
    s.update("l", x)
    # float16 / bfloat16 widen to float32 exactly; float64 is used as is.
    assert_matches(s, "l", calib_stats_ref(x.astype(np.float64)))
    # Non-contiguous and big-endian views are accepted too.
    s2 = CalibrationStats()
    s2.update("l", np.asfortranarray(x.astype(np.float64)).astype(">f8"))
    assert_matches(s2, "l", calib_stats_ref(x.astype(np.float64)))


def test_float64_activations_keep_their_precision(rng):
    x = rng.standard_normal((50, 6)) * 1e-3 + 1.0  # not representable in float32
    s = CalibrationStats()
    s.update("l", x)
    assert_matches(s, "l", calib_stats_ref(x), rtol=1e-13)


def test_integer_activations_are_refused():
    s = CalibrationStats()
    with pytest.raises(edgepack.DtypeError, match="float"):
        s.update("l", np.ones((2, 3), np.int32))
    assert len(s) == 0


def test_shared_group_records_the_input_once(rng):
    x = acts(rng, (40, 16))
    s = CalibrationStats()
    s.update(["q.weight", "k.weight", "v.weight"], x)
    s.update(["v.weight", "q.weight", "k.weight"], x[:10])  # any order of the same names
    ref = calib_stats_ref_batches([x, x[:10]])
    for n in ("q.weight", "k.weight", "v.weight"):
        assert s.group(n) == ["k.weight", "q.weight", "v.weight"]
        assert_matches(s, n, ref)
    assert s.groups() == [["k.weight", "q.weight", "v.weight"]]
    assert len(s) == 3


def test_names_recorded_in_another_group_are_refused(rng):
    x = acts(rng, (8, 4))
    s = CalibrationStats()
    s.update(["a", "b"], x)
    s.update("c", x)
    for bad in ("a", ["a", "c"], ["a", "b", "d"], ["b", "c"]):
        with pytest.raises(edgepack.ArgumentError, match="group"):
            s.update(bad, x)
    with pytest.raises(edgepack.ArgumentError, match="twice"):
        s.update(["d", "d"], x)
    assert s.count("a") == 8 and s.count("c") == 8 and "d" not in s


def test_full_false_keeps_only_vectors(rng):
    x = acts(rng, (30, 9))
    s = CalibrationStats(full=False)
    s.update("l", x)
    assert s.full is False
    assert_matches(s, "l", calib_stats_ref(x))
    with pytest.raises(edgepack.ArgumentError, match="full=False"):
        s.hessian("l")


def test_non_finite_names_the_layer_and_records_nothing(rng):
    x = acts(rng, (6, 5))
    s = CalibrationStats()
    s.update("fc1.weight", x)
    before = s.hessian("fc1.weight"), s.channel_stats("fc1.weight")
    for val, kind in ((np.nan, "NaN"), (np.inf, r"\+Inf"), (-np.inf, "-Inf")):
        bad = x.copy()
        bad[3, 2] = val
        with pytest.raises(edgepack.NonFiniteError, match=rf"'fc1.weight'.*{kind} at index 17"):
            s.update("fc1.weight", bad)
        with pytest.raises(edgepack.NonFiniteError, match="'new'"):
            s.update("new", bad)
    assert s.count("fc1.weight") == 6 and "new" not in s
    np.testing.assert_array_equal(s.hessian("fc1.weight"), before[0])
    for k, v in s.channel_stats("fc1.weight").items():
        np.testing.assert_array_equal(v, before[1][k])
    # Finite float64 values whose squares overflow are refused too, before recording.
    with pytest.raises(edgepack.LimitError, match="float64"):
        s.update("fc1.weight", np.full((1, 5), 1e200))
    assert s.count("fc1.weight") == 6


def test_wrong_width_names_layer_expected_and_found(rng):
    s = CalibrationStats()
    s.update("fc.weight", acts(rng, (4, 8)))
    with pytest.raises(edgepack.ArgumentError, match=r"'fc.weight'.* 8 input features.* 9"):
        s.update("fc.weight", acts(rng, (4, 9)))
    with pytest.raises(edgepack.ArgumentError, match="no rows"):
        s.update("empty", np.zeros((0, 8), np.float32))
    assert s.count("fc.weight") == 4 and "empty" not in s


def test_layout_hint_per_name(rng):
    x = acts(rng, (4, 8))
    s = CalibrationStats()
    s.update(["a", "b"], x, layout=["in_out", "out_in"])
    s.update("c", x)
    assert (s.layout("a"), s.layout("b"), s.layout("c")) == ("in_out", "out_in", "out_in")
    s.update(["a", "b"], x)  # no layout: keeps what was recorded
    with pytest.raises(edgepack.ArgumentError, match="layout"):
        s.update("c", x, layout="in_out")
    with pytest.raises(edgepack.ArgumentError, match="layout"):
        s.update("d", x, layout="rows")
    assert s.count("c") == 4


def test_unknown_name():
    s = CalibrationStats()
    for f in (s.hessian, s.channel_stats, s.count, s.layout, s.group, s.in_features):
        with pytest.raises(edgepack.ArgumentError, match="'nope'|\"nope\""):
            f("nope")


def test_summary_and_merge(rng):
    x, y = acts(rng, (50, 12)), acts(rng, (20, 12))
    x[:, 3] = 0.0  # a dead channel
    a, b = CalibrationStats(), CalibrationStats()
    a.update(["k", "q"], x)
    b.update(["k", "q"], y)
    b.update("o", y)
    a.merge(b)
    assert_matches(a, "q", calib_stats_ref_batches([x, y]))
    assert_matches(a, "o", calib_stats_ref(y))
    rows = a.summary()
    assert [r["names"] for r in rows] == [["k", "q"], ["o"]]
    r = rows[0]
    ref = calib_stats_ref_batches([x, y])
    assert r["tokens"] == 70 and r["in_features"] == 12 and r["dead_channels"] == 0
    assert r["max_abs"] == ref["max_abs"].max()
    assert r["outlier_ratio"] == pytest.approx(
        ref["max_abs"].max() / np.median(np.sqrt(ref["mean_sq"]))
    )
    c = CalibrationStats(full=False)
    with pytest.raises(edgepack.ArgumentError, match="full"):
        a.merge(c)


# ---- threads ---------------------------------------------------------------------------------


def _run_threads(fns):
    errors = []

    def wrap(f):
        try:
            f()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(f,)) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_concurrent_updates_of_different_layers_equal_serial_exactly(rng):
    # Each layer sees its batches in the same order as serially: the same bits.
    batches = {f"l{i}": [acts(rng, (200, 96)) for _ in range(5)] for i in range(4)}
    serial = CalibrationStats()
    for name, bs in batches.items():
        for b in bs:
            serial.update(name, b)
    conc = CalibrationStats()
    _run_threads([lambda n=n, bs=bs: [conc.update(n, b) for b in bs] for n, bs in batches.items()])
    for name in batches:
        assert conc.count(name) == serial.count(name)
        np.testing.assert_array_equal(conc.hessian(name), serial.hessian(name))
        for k, v in conc.channel_stats(name).items():
            np.testing.assert_array_equal(v, serial.channel_stats(name)[k])


def test_concurrent_updates_of_one_layer_equal_serial(rng):
    # One layer from 4 threads: batches arrive in any order. With integer-valued activations
    # every sum is exact in float64, so any order gives the same bits; with general values
    # only the order of additions differs (float addition is not associative): a tight
    # tolerance.
    ints = [rng.integers(-8, 9, size=(64, 40)).astype(np.float32) for _ in range(16)]
    floats = [acts(rng, (64, 40)) for _ in range(16)]
    for data, exact in ((ints, True), (floats, False)):
        serial = CalibrationStats()
        for b in data:
            serial.update(["a", "b"], b)
        conc = CalibrationStats()
        _run_threads(
            [
                lambda k=k, c=conc, d=data: [c.update(["a", "b"], b) for b in d[k::4]]
                for k in range(4)
            ]
        )
        assert conc.count("a") == 64 * 16
        if exact:
            np.testing.assert_array_equal(conc.hessian("a"), serial.hessian("a"))
        else:
            h = serial.hessian("a")
            # Entries near 0 are sums that cancel: their error is relative to the scale of H.
            atol = 1e-13 * np.abs(h).max()
            np.testing.assert_allclose(conc.hessian("a"), h, rtol=1e-13, atol=atol)
        assert_matches(conc, "b", calib_stats_ref_batches(data))


# ---- files -----------------------------------------------------------------------------------


def _stats(rng, full=True):
    s = CalibrationStats(full=full)
    s.update(["enc.q", "enc.k"], acts(rng, (40, 10)), layout=["in_out", "out_in"])
    s.update("enc.o", acts(rng, (2, 20, 6)))
    return s


@pytest.mark.parametrize("full", [True, False])
def test_save_load_round_trip(rng, tmp_path, full):
    s = _stats(rng, full)
    p = tmp_path / "calib.safetensors"
    s.save(p)
    t = CalibrationStats.load(p)
    assert t.full == full and t.names() == s.names() and t.groups() == s.groups()
    for n in s.names():
        assert t.layout(n) == s.layout(n) and t.count(n) == s.count(n)
        if full:
            np.testing.assert_array_equal(t.hessian(n), s.hessian(n))
        for k, v in s.channel_stats(n).items():
            np.testing.assert_array_equal(t.channel_stats(n)[k], v)
    # Loaded statistics keep accumulating like the originals.
    x = acts(rng, (5, 6))
    s.update("enc.o", x)
    t.update("enc.o", x)
    mean = s.channel_stats("enc.o")["mean"]
    np.testing.assert_array_equal(t.channel_stats("enc.o")["mean"], mean)
    # Deterministic bytes, and nothing but the file in the folder (no temporary left).
    q = tmp_path / "again.safetensors"
    CalibrationStats.load(p).save(q)
    assert p.read_bytes() == q.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["again.safetensors", "calib.safetensors"]
    # Size: about in^2 * 4 bytes per full entry (the packed triangle in float64).
    if full:
        assert p.stat().st_size < 2000 + 8 * (55 + 21 + 4 * 16 + 2)


def test_save_replaces_atomically_and_reports_os_errors(rng, tmp_path):
    p = tmp_path / "c.safetensors"
    p.write_bytes(b"old")
    _stats(rng).save(p)
    assert CalibrationStats.load(p).names() == ["enc.k", "enc.o", "enc.q"]
    with pytest.raises(FileNotFoundError):
        _stats(rng).save(tmp_path / "missing" / "c.safetensors")
    with pytest.raises(FileNotFoundError):
        CalibrationStats.load(tmp_path / "nope.safetensors")


# Hostile files: built from a good one by editing its header / bytes.


def _split(path):
    b = path.read_bytes()
    (n,) = struct.unpack("<Q", b[:8])
    return json.loads(b[8 : 8 + n]), b[8 + n :]


def _join(path, header, data):
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + data)


def _edit_tensor(header, data, key, fn):
    b, e = header[key]["data_offsets"]
    dt = "<i8" if header[key]["dtype"] == "I64" else "<f8"
    a = np.frombuffer(data[b:e], dtype=dt).copy()
    fn(a)
    return data[:b] + a.tobytes() + data[e:]


@pytest.fixture
def good(rng, tmp_path):
    p = tmp_path / "good.safetensors"
    _stats(rng).save(p)
    return p


def _hostile(tmp_path, good, edit):
    header, data = _split(good)
    out = edit(header, data)
    bad = tmp_path / "bad.safetensors"
    if isinstance(out, bytes):
        bad.write_bytes(out)
    else:
        _join(bad, *out)
    return bad


def _set(header, data, key, fn):
    return header, _edit_tensor(header, data, key, fn)


def _meta(header, data, **kw):
    header["__metadata__"].update(kw)
    return header, data


def _entries(header, data, entries):
    header["__metadata__"]["entries"] = json.dumps(entries)
    return header, data


def _retype(header, data, key, dtype):
    header[key]["dtype"] = dtype
    return header, data


def _reshape(header, data, key, shape):
    header[key]["shape"] = shape
    return header, data


def _drop_last(header, data):
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    b, _ = header[last]["data_offsets"]
    del header[last]
    return header, data[:b]


HOSTILE = {
    "truncated": (lambda h, d: None, "beyond|does not hold|ends"),
    "forged header length": (lambda h, d: struct.pack("<Q", 1 << 40) + b"{}", "header length"),
    "header not json": (lambda h, d: struct.pack("<Q", 4) + b"{{{{", "JSON"),
    "not ours": (lambda h, d: _meta(h, d, format="other"), "format"),
    "unknown version": (lambda h, d: _meta(h, d, version="2"), "version"),
    "bad full": (lambda h, d: _meta(h, d, full="yes"), "full"),
    "entries not json": (lambda h, d: _meta(h, d, entries="[{"), "entries"),
    "duplicate name": (
        lambda h, d: _entries(
            h,
            d,
            [
                {"names": ["enc.k", "enc.q"], "layouts": ["out_in", "in_out"]},
                {"names": ["enc.k"], "layouts": ["out_in"]},
            ],
        ),
        "twice",
    ),
    "bad layout": (
        lambda h, d: _entries(
            h,
            d,
            [
                {"names": ["enc.k", "enc.q"], "layouts": ["out_in", "sideways"]},
                {"names": ["enc.o"], "layouts": ["out_in"]},
            ],
        ),
        "layouts",
    ),
    "missing entry": (
        lambda h, d: _entries(h, d, [{"names": ["enc.k"], "layouts": ["out_in"]}]),
        "unexpected tensor 'entry.1",
    ),
    "missing tensor": (_drop_last, "missing tensor"),
    "wrong dtype": (lambda h, d: _retype(h, d, "entry.0.sum", "I64"), "entry.0.sum.*dtype"),
    "wrong shape": (lambda h, d: _reshape(h, d, "entry.0.sum", [5, 2]), "entry.0.sum.*shape"),
    "wrong width": (
        lambda h, d: (
            _reshape(h, d, "entry.1.sum_sq", [3, 2])
            if h["entry.1.sum_sq"]["shape"] == [6]
            else (h, d)
        ),
        "entry.1.sum_sq.*shape",
    ),
    "negative count": (
        lambda h, d: _set(h, d, "entry.0.count", lambda a: a.__setitem__(0, -40)),
        "count.*-40",
    ),
    "zero count": (
        lambda h, d: _set(h, d, "entry.1.count", lambda a: a.__setitem__(0, 0)),
        "count.*0",
    ),
    "nan in matrix": (
        lambda h, d: _set(h, d, "entry.0.xtx", lambda a: a.__setitem__(3, np.nan)),
        "entry 0.*xtx.*NaN",
    ),
    "inf in vector": (
        lambda h, d: _set(h, d, "entry.1.sum", lambda a: a.__setitem__(1, np.inf)),
        "entry 1.*sum.*inf",
    ),
    "not a gram matrix": (
        lambda h, d: _set(h, d, "entry.0.xtx", lambda a: a.__setitem__(1, 1e12)),
        "Gram",
    ),
    "negative max": (
        lambda h, d: _set(h, d, "entry.0.max_abs", lambda a: a.__setitem__(0, -1.0)),
        "max_abs",
    ),
    "diag differs": (
        lambda h, d: _set(h, d, "entry.0.sum_sq", lambda a: a.__setitem__(0, a[0] * 2)),
        "diagonal",
    ),
    "hole in data": (
        lambda h, d: (
            {
                k: (
                    v
                    if k == "__metadata__"
                    else {**v, "data_offsets": [v["data_offsets"][0] + 8, v["data_offsets"][1] + 8]}
                )
                for k, v in h.items()
            },
            b"\0" * 8 + d,
        ),
        "contiguous",
    ),
    "trailing bytes": (lambda h, d: (h, d + b"\0" * 16), "after the last tensor"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_raise_format_error(tmp_path, good, case):
    edit, msg = HOSTILE[case]
    if case == "truncated":
        b = good.read_bytes()
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b[: len(b) - 100])
    else:
        bad = _hostile(tmp_path, good, edit)
    with pytest.raises(edgepack.FormatError, match=msg):
        CalibrationStats.load(bad)


# ---- collectors ------------------------------------------------------------------------------


def _tiny_onnx(rng):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    w = {
        "w1": rng.standard_normal((8, 6)).astype(np.float32),  # MatMul (in, out)
        "w2": rng.standard_normal((8, 5)).astype(np.float32),  # MatMul, same input as w1
        "w3": rng.standard_normal((4, 6)).astype(np.float32),  # Gemm transB=1 (out, in)
        "w4": rng.standard_normal((5, 3)).astype(np.float32),  # Gemm transB=0 (in, out)
        "b3": rng.standard_normal(4).astype(np.float32),
    }
    nodes = [
        h.make_node("MatMul", ["x", "w1"], ["h1"]),
        h.make_node("MatMul", ["x", "w2"], ["h2"]),
        h.make_node("Relu", ["h1"], ["r1"]),
        h.make_node("Reshape", ["r1", "shape"], ["r2"]),
        h.make_node("Gemm", ["r2", "w3", "b3"], ["y"], transB=1),
        h.make_node("Reshape", ["h2", "shape5"], ["h3"]),
        h.make_node("Gemm", ["h3", "w4"], ["z"]),
    ]
    inits = [nh.from_array(v, k) for k, v in w.items()]
    inits += [
        nh.from_array(np.array([-1, 6], np.int64), "shape"),
        nh.from_array(np.array([-1, 5], np.int64), "shape5"),
    ]
    g = h.make_graph(
        nodes,
        "tiny",
        [h.make_tensor_value_info("x", T.FLOAT, ["b", "s", 8])],
        [
            h.make_tensor_value_info("y", T.FLOAT, [None, 4]),
            h.make_tensor_value_info("z", T.FLOAT, [None, 3]),
        ],
        inits,
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m, w


def test_collect_onnx_matches_numpy_activations(rng, tmp_path):
    model, w = _tiny_onnx(rng)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(model.SerializeToString())
    before = path.read_bytes()
    xs = [acts(rng, (2, 3, 8)), acts(rng, (1, 5, 8))]
    s = collect_onnx(path, [{"x": x} for x in xs])
    assert path.read_bytes() == before  # the user's file is untouched
    assert s.groups() == [["w1", "w2"], ["w3"], ["w4"]]
    layouts = [s.layout(n) for n in ("w1", "w2", "w3", "w4")]
    assert layouts == ["in_out", "in_out", "out_in", "in_out"]
    x2 = [x.reshape(-1, 8).astype(np.float64) for x in xs]
    r1 = [np.maximum(x @ w["w1"].astype(np.float64), 0) for x in x2]
    h2 = [x @ w["w2"].astype(np.float64) for x in x2]
    assert_matches(s, "w1", calib_stats_ref_batches(xs))  # the graph input itself: exact
    # Intermediate activations come from onnxruntime's float32 math.
    assert_matches(s, "w3", calib_stats_ref_batches(r1), rtol=1e-5)
    assert_matches(s, "w4", calib_stats_ref_batches(h2), rtol=1e-5)
    # A ModelProto works the same and is not modified; statistics can be added to.
    n_out = len(model.graph.output)
    s2 = collect_onnx(model, [{"x": xs[0]}], full=False)
    assert len(model.graph.output) == n_out and s2.full is False
    collect_onnx(model, [{"x": xs[1]}], stats=s2)
    assert s2.count("w3") == s.count("w3")


def test_collect_onnx_shared_weight_is_recorded_alone(rng):
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    w = rng.standard_normal((4, 4)).astype(np.float32)
    v = rng.standard_normal((4, 2)).astype(np.float32)
    nodes = [
        h.make_node("MatMul", ["x", "w"], ["a"]),  # w reads x and a: recorded alone
        h.make_node("MatMul", ["a", "w"], ["b"]),
        h.make_node("MatMul", ["x", "v"], ["c"]),
    ]
    g = h.make_graph(
        nodes,
        "shared",
        [h.make_tensor_value_info("x", T.FLOAT, [None, 4])],
        [
            h.make_tensor_value_info("b", T.FLOAT, [None, 4]),
            h.make_tensor_value_info("c", T.FLOAT, [None, 2]),
        ],
        [nh.from_array(w, "w"), nh.from_array(v, "v")],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    x = acts(rng, (10, 4))
    s = collect_onnx(m, [{"x": x}])
    assert s.groups() == [["v"], ["w"]]
    a = x.astype(np.float64) @ w
    assert_matches(s, "w", calib_stats_ref_batches([x, a]), rtol=1e-5)


def test_collect_onnx_needs_a_model():
    pytest.importorskip("onnx")
    with pytest.raises(edgepack.DtypeError, match="model"):
        collect_onnx(42, [])


def test_collect_torch(rng):
    torch = pytest.importorskip("torch")

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = torch.nn.Linear(8, 8)
            self.k = torch.nn.Linear(8, 8)
            self.o = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.o(torch.relu(self.q(x) + self.k(x)))

    m = Attn().train()
    xs = [torch.from_numpy(acts(rng, (2, 5, 8))) for _ in range(3)]
    s = collect_torch(m, xs)
    assert m.training  # mode restored
    assert s.groups() == [["k.weight", "q.weight"], ["o.weight"]]
    assert_matches(s, "q.weight", calib_stats_ref_batches([x.numpy() for x in xs]))
    with torch.no_grad():
        hid = [torch.relu(m.q(x) + m.k(x)).numpy() for x in xs]
    assert_matches(s, "o.weight", calib_stats_ref_batches(hid), rtol=1e-6)
