"""AWQ (Lin et al. 2023): the scale search against the numpy oracle (tests/reference.py), its
properties, the `in_scale` payload of .epk version 2 (FORMAT.md sections 5, 8, 10) through
every reader, and QuantizedLinear running an AWQ weight."""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest

import edgepack
import reference as ref
from edgepack import Recipe, Rule, methods
from edgepack.linear import QuantizedLinear
from epk_util import build, split

SCHEMES = [
    (4, True, 1, 32),
    (4, False, 1, 32),
    (4, True, 1, 16),
    (8, True, 0, None),
    (8, False, 0, None),
    (4, True, None, None),
    (8, True, 1, 16),
]


def _case(seed: int, out: int = 24, inp: int = 70, tokens: int = 400, dead: bool = True):
    """Heavy-tailed weights (student-t df=3, two outlier columns 100x) and activations with
    outlier channels (30x), one input channel dead in calibration."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(3, (out, inp)) * 0.05).astype(np.float32)
    w[:, [3, inp // 2]] *= 100
    x = rng.standard_t(3, (tokens, inp))
    x[:, [5, inp - 3]] *= 30
    if dead:
        x[:, 9] = 0.0
    h = x.T @ x / tokens
    ma = np.abs(x).mean(axis=0)
    return w, x, h, ma


@pytest.mark.parametrize("bits,sym,axis,bs", SCHEMES)
def test_awq_matches_oracle(bits, sym, axis, bs):
    w, _, h, ma = _case(1)
    r = ref.awq_ref(w, ma, h, bits=bits, symmetric=sym, axis=axis, block_size=bs)
    qt, info = methods.awq(
        w, ma, h, bits=bits, symmetric=sym, axis=axis, block_size=bs, return_info=True
    )
    np.testing.assert_array_equal(qt.in_scale, r["scale"])
    assert info["alpha"] == r["alpha"]
    assert qt.in_axis == 1
    np.testing.assert_array_equal(qt.dequantize(), r["w_hat"])
    assert info["error"] == pytest.approx(r["error"], rel=1e-6)
    np.testing.assert_allclose(info["errors"], r["errors"], rtol=1e-6)
    # codes: the stored ones equal the oracle's
    n = w.size
    codes = ref.unpack4(qt.data, n, signed=sym).reshape(w.shape) if bits == 4 else np.asarray(qt.data, np.int64)
    np.testing.assert_array_equal(codes, r["codes"])


def test_awq_diagonal_h_matches_oracle():
    w, _, h, ma = _case(2)
    d = np.ascontiguousarray(np.diag(h))
    r = ref.awq_ref(w, ma, d, bits=4, symmetric=True, axis=1, block_size=32)
    qt, info = methods.awq(w, ma, d, bits=4, return_info=True)
    np.testing.assert_array_equal(qt.in_scale, r["scale"])
    assert info["error"] == pytest.approx(r["error"], rel=1e-6)


def test_awq_in_out_layout_is_the_transpose():
    w, _, h, ma = _case(3, out=20, inp=48)
    a = methods.awq(w, ma, h, bits=4, symmetric=False)
    b = methods.awq(np.ascontiguousarray(w.T), ma, h, bits=4, symmetric=False, layout="in_out")
    assert b.in_axis == 0 and b.shape == (48, 20)
    np.testing.assert_array_equal(a.in_scale, b.in_scale)
    np.testing.assert_array_equal(a.dequantize(), b.dequantize().T)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_awq_scales_match_oracle(alpha):
    _, _, _, ma = _case(4)
    ma[0] = 1e-30  # clamps to 1e-4 before normalising
    np.testing.assert_array_equal(methods.awq_scales(ma, alpha), ref.awq_scales_ref(ma, alpha))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bits,sym,axis,bs", SCHEMES[:4])
def test_awq_never_worse_than_rtn(seed, bits, sym, axis, bs):
    w, _, h, ma = _case(10 + seed, out=16 + seed, inp=33 + 7 * seed)
    qt, info = methods.awq(w, ma, h, bits=bits, symmetric=sym, axis=axis, block_size=bs, return_info=True)
    rtn = edgepack.quantize(w, bits=bits, symmetric=sym, axis=axis, block_size=bs)
    e_rtn = ref.output_error_ref(w, rtn.dequantize(), h)
    assert info["rtn_error"] == pytest.approx(e_rtn, rel=1e-9)
    assert ref.output_error_ref(w, qt.dequantize(), h) <= e_rtn * (1 + 1e-12)


def test_awq_dead_channels_get_scale_one():
    w, _, h, ma = _case(5)
    qt = methods.awq(w, ma, h, bits=4)
    assert ma[9] == 0 and qt.in_scale[9] == 1.0
    # all channels dead: s = 1 everywhere, plain round to nearest
    z = np.zeros_like(ma)
    qt0 = methods.awq(w, z, np.zeros_like(h), bits=4)
    np.testing.assert_array_equal(qt0.in_scale, np.ones_like(ma, dtype=np.float32))
    np.testing.assert_array_equal(qt0.dequantize(), edgepack.quantize(w, bits=4, axis=1, block_size=32).dequantize())


def test_identity_h_uniform_activity_is_rtn():
    w, _, _, _ = _case(6, dead=False)
    n = w.shape[1]
    qt, info = methods.awq(w, np.full(n, 0.7), np.eye(n), bits=4, return_info=True)
    np.testing.assert_array_equal(qt.in_scale, np.ones(n, np.float32))
    rtn = edgepack.quantize(w, bits=4, axis=1, block_size=32)
    np.testing.assert_array_equal(qt.data, rtn.data)
    np.testing.assert_array_equal(qt.dequantize(), rtn.dequantize())


@pytest.mark.parametrize("sym", [True, False])
def test_awq_gptq_never_worse_than_awq_rtn(sym):
    w, _, h, ma = _case(7, out=32, inp=96, tokens=600)
    a = methods.awq(w, ma, h, bits=4, symmetric=sym)
    g = methods.awq(w, ma, h, bits=4, symmetric=sym, solver="gptq")
    np.testing.assert_array_equal(a.in_scale, g.in_scale)
    e_a = ref.output_error_ref(w, a.dequantize(), h)
    e_g = ref.output_error_ref(w, g.dequantize(), h)
    assert e_g <= e_a
    e_rtn = ref.output_error_ref(w, edgepack.quantize(w, bits=4, symmetric=sym, axis=1, block_size=32).dequantize(), h)
    assert e_a < e_rtn


def test_awq_hqq_solver_and_errors():
    w, _, h, ma = _case(8)
    q = methods.awq(w, ma, np.diag(h).copy(), bits=4, symmetric=False, solver="hqq")
    assert q.in_scale is not None
    with pytest.raises(edgepack.ArgumentError, match="solver"):
        methods.awq(w, ma, h, solver="sparsegpt")
    with pytest.raises(edgepack.ArgumentError, match="mean_abs"):
        methods.awq(w, ma[:-1], h)
    with pytest.raises(edgepack.ArgumentError, match=r"\(in, in\)|GPTQ|expected"):
        methods.awq(w, ma, np.diag(h).copy(), solver="gptq")
    bad = ma.copy()
    bad[2] = -1.0
    with pytest.raises(edgepack.ArgumentError, match="mean_abs"):
        methods.awq(w, bad, h)
    bad[2] = np.nan
    with pytest.raises(edgepack.NonFiniteError, match="mean_abs"):
        methods.awq(w, bad, h)


# -- compress, the file, every reader -------------------------------------------------------------


def _model(seed=0):
    rng = np.random.default_rng(seed)
    w = {
        "fc1.weight": (rng.standard_t(3, (48, 64)) * 0.05).astype(np.float32),
        "fc2.weight": (rng.standard_t(3, (64, 40)) * 0.05).astype(np.float32),  # (in, out)
        "other.weight": rng.standard_t(3, (16, 72)).astype(np.float32),
    }
    st = edgepack.CalibrationStats()
    x = rng.standard_t(3, (300, 64))
    x[:, 3] *= 40
    st.update("fc1.weight", x)
    x2 = rng.standard_t(3, (300, 64))
    x2[:, 7] *= 40
    st.update("fc2.weight", x2, layout="in_out")
    return w, st


RULES = [
    Rule("fc*", bits=4, method="awq"),
    Rule("fc*", bits=4, symmetric=False, method="awq"),
    Rule("fc*", bits=4, method="gptq", awq=True),
    Rule("fc*", bits=8, method="gptq", awq=True, damp=0.1),
    Rule("fc*", bits=4, symmetric=False, method="hqq", awq=True),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.method}-{r.bits}-{r.symmetric}-{r.awq}")
def test_compress_round_trip(tmp_path, rule):
    w, st = _model()
    p = tmp_path / "m.epk"
    m = edgepack.compress(w, Recipe(rules=(rule, Rule("*", bits=4))), calibration=st, out=p)
    assert struct.unpack("<I", p.read_bytes()[8:12])[0] == 2
    for name, lay_axis in (("fc1.weight", 1), ("fc2.weight", 0)):
        info = m.info(name)
        assert info.params["in_axis"] == lay_axis
        qt = m._decode(name, float32=False)
        assert qt.in_axis == lay_axis and qt.in_scale.shape == (64,)
        y = m.decompress(name)
        # the oracle decode: FORMAT.md 5 version 2
        base = ref.epk_dequantize(
            np.asarray(qt.data), np.asarray(qt.scale), None if qt.signed else np.asarray(qt.zero_point),
            bits=qt.bits, axis=qt.axis, block_size=qt.block_size, shape=qt.shape, symmetric=qt.signed,
        )
        np.testing.assert_array_equal(y, ref.awq_dequantize_ref(base, qt.in_scale, lay_axis))
        # the reported size counts the in_scale payload
        row = next(r for r in m.report().rows if r.name == name)
        assert row.bytes_after == info.stored_bytes
        assert "awq" in row.encoding
    assert "in_axis" not in m.info("other.weight").params
    # the safetensors form
    sp = tmp_path / "m.safetensors"
    m.to_safetensors(sp)
    from safetensors.numpy import load_file, safe_open

    t = load_file(str(sp))
    np.testing.assert_array_equal(t["fc1.weight.in_scale"], m._decode("fc1.weight", float32=False).in_scale)
    with safe_open(str(sp), "np") as f:
        assert f.metadata()["edgepack.format_version"] == "2"
    m2 = edgepack.load(sp)
    for name in w:
        np.testing.assert_array_equal(m2.decompress(name), m.decompress(name))
    # save / copy keeps it
    m.save(tmp_path / "copy.epk")
    np.testing.assert_array_equal(edgepack.load(tmp_path / "copy.epk").decompress("fc1.weight"), m.decompress("fc1.weight"))


def test_rule_on_uncovered_tensor_needs_stats(tmp_path):
    w, st = _model()
    with pytest.raises(edgepack.ArgumentError, match="other.weight"):
        edgepack.compress(w, Recipe(rules=(Rule("*", bits=4, awq=True),)), calibration=st, out=tmp_path / "a.epk")
    with pytest.raises(edgepack.ArgumentError, match="calibration"):
        edgepack.compress(w, Recipe(rules=(Rule("fc1.weight", bits=4, method="awq"),)), out=tmp_path / "b.epk")


def test_recipe_level_awq_defaults_and_round_trips_as_dict(tmp_path):
    w, st = _model()
    rec = Recipe(rules=(Rule("*", bits=4),), method="gptq", awq=True)
    assert Recipe.from_dict(rec.to_dict()) == rec
    with pytest.warns(UserWarning, match="other.weight"):
        m = edgepack.compress(w, rec, calibration=st, out=tmp_path / "m.epk")
    assert "in_axis" in m.info("fc1.weight").params
    assert "in_axis" not in m.info("other.weight").params


def test_no_awq_writes_version_1(tmp_path):
    w, st = _model()
    p = tmp_path / "m.epk"
    rules = (Rule("fc*", bits=4, method="gptq"), Rule("*", bits=4))
    edgepack.compress(w, Recipe(rules=rules), calibration=st, out=p)
    assert struct.unpack("<I", p.read_bytes()[8:12])[0] == 1
    sp = tmp_path / "m.safetensors"
    edgepack.load(p).to_safetensors(sp)
    from safetensors import safe_open

    with safe_open(str(sp), "np") as f:
        assert f.metadata()["edgepack.format_version"] == "1"


# -- hostile files ----------------------------------------------------------------------------------


@pytest.fixture
def awq_file(tmp_path) -> bytes:
    w, st = _model()
    p = tmp_path / "awq.epk"
    edgepack.compress({"fc1.weight": w["fc1.weight"]}, Recipe(rules=(Rule("*", bits=4, method="awq"),)), calibration=st, out=p)
    return p.read_bytes()


def _rebuilt(b: bytes, fn, version=2) -> bytes:
    header, data = split(b)
    h = copy.deepcopy(header)
    fn(h["tensors"][0])
    return build(h, data, version=version)


def _fails(tmp_path, b: bytes, match: str):
    p = tmp_path / "hostile.epk"
    p.write_bytes(b)
    with pytest.raises(edgepack.FormatError, match=match):
        m = edgepack.load(p)
        for n in m.names:
            m.decompress(n)


def _role(t, role):
    return next(p for p in t["payloads"] if p["role"] == role)


def test_hostile_in_scale_in_version_1(tmp_path, awq_file):
    _fails(tmp_path, _rebuilt(awq_file, lambda t: None, version=1), r"fc1.weight.*in_scale.*version 2")


def test_hostile_in_scale_header_fields(tmp_path, awq_file):
    cases = [
        (lambda t: t["params"].update(in_axis=2), "in_axis 2 is out of range"),
        (lambda t: t["params"].update(in_axis=-1), "in_axis"),
        (lambda t: t["params"].update(in_axis="1"), "in_axis"),
        (lambda t: t["params"].update(in_axis=0), r"in_scale.*shape"),
        (lambda t: t["params"].pop("in_axis"), "payloads"),
        (lambda t: t["payloads"].remove(_role(t, "in_scale")), "payloads"),
        (lambda t: _role(t, "in_scale").update(dtype="int32"), r"in_scale.*dtype"),
        (lambda t: _role(t, "in_scale").update(shape=[1, 64]), r"in_scale.*shape"),
        (lambda t: _role(t, "in_scale").update(shape=[32], size=128), r"size|in_scale"),
    ]
    for fn, match in cases:
        _fails(tmp_path, _rebuilt(awq_file, fn), match)


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0, -1.0, 1e-40])
def test_hostile_in_scale_values(tmp_path, value):
    rng = np.random.default_rng(0)
    q = edgepack.quantize(rng.standard_t(3, (8, 16)).astype(np.float32), bits=8, axis=0)
    ins = np.ones(16, np.float32)
    ins[5] = value
    u8 = lambda a: np.ascontiguousarray(a).reshape(-1).view(np.uint8)  # noqa: E731
    p = str(tmp_path / "h.epk")
    w = edgepack._core.EpkWriter(p)
    params = {"axis": 0, "bits": 8, "block_size": None, "convention": "onnx", "in_axis": 1, "sparsity": 0.0, "symmetric": True}
    w.add(
        "w", "float32", [8, 16], "quant", json.dumps(params, sort_keys=True), None,
        [("data", "int8", [8, 16], u8(q.data)), ("in_scale", "float32", [16], u8(ins)), ("scale", "float32", [8], u8(q.scale))],
        None,
    )
    w.finish({}, None)
    with pytest.raises(edgepack.FormatError, match=r"'w'.*in_scale.*index 5"):
        edgepack.load(p).decompress("w")


def test_hostile_safetensors_in_scale(tmp_path, awq_file):
    p = tmp_path / "awq.epk"
    p.write_bytes(awq_file)
    sp = tmp_path / "m.safetensors"
    edgepack.load(p).to_safetensors(sp)
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    t = load_file(str(sp))
    with safe_open(str(sp), "np") as f:
        md = dict(f.metadata())
    # version "1" with an in_scale
    save_file(t, str(tmp_path / "v1.safetensors"), metadata={**md, "edgepack.format_version": "1"})
    with pytest.raises(edgepack.FormatError, match="version 2"):
        edgepack.load(tmp_path / "v1.safetensors")
    # missing in_scale tensor
    t2 = {k: v for k, v in t.items() if not k.endswith(".in_scale")}
    save_file(t2, str(tmp_path / "miss.safetensors"), metadata=md)
    with pytest.raises(edgepack.FormatError, match="in_scale"):
        edgepack.load(tmp_path / "miss.safetensors")
    # wrong length, negative value
    for bad, match in ((t["fc1.weight.in_scale"][:10], "in_scale"), (-t["fc1.weight.in_scale"], "in_scale")):
        save_file({**t, "fc1.weight.in_scale": np.ascontiguousarray(bad)}, str(tmp_path / "bad.safetensors"), metadata=md)
        with pytest.raises(edgepack.FormatError, match=match):
            edgepack.load(tmp_path / "bad.safetensors").decompress("fc1.weight")


# -- QuantizedLinear ------------------------------------------------------------------------------


def test_quantized_linear_runs_awq_weight():
    w, x, h, ma = _case(9, out=40, inp=64, dead=False)
    b = np.random.default_rng(1).standard_normal(40).astype(np.float32)
    qt = methods.awq(w, ma, h, bits=8, symmetric=True, axis=0)
    layer = QuantizedLinear.from_quantized(qt, b)
    xs = np.random.default_rng(2).standard_t(3, (7, 64)).astype(np.float32)
    xs[:, 5] *= 30
    y = layer(xs)
    want = ref.quantized_linear_dynamic(
        (xs / qt.in_scale[None, :]).astype(np.float32), np.asarray(qt.data), np.asarray(qt.scale), b
    )
    np.testing.assert_array_equal(y, want)
    # the float answer it approximates: x @ dequant(W)^T + b
    full = xs.astype(np.float64) @ qt.dequantize().astype(np.float64).T + b
    assert np.abs(y - full).max() <= 0.05 * np.abs(full).max()
    # from_float(..., calibration=stats, awq=True) builds the same layer
    st = edgepack.CalibrationStats()
    st.update("l", x)
    layer2 = QuantizedLinear.from_float(w, b, calibration=st, awq=True)
    np.testing.assert_array_equal(layer2.input_smoothing, qt.in_scale)
    np.testing.assert_array_equal(layer2(xs), y)
    with pytest.raises(edgepack.ArgumentError, match="awq"):
        QuantizedLinear.from_float(w, b, awq=True)
    with pytest.raises(edgepack.ArgumentError, match="axis"):
        QuantizedLinear.from_quantized(methods.awq(np.ascontiguousarray(w.T), ma, h, bits=8, axis=1, layout="in_out"))


# -- AWQ's clipping search ------------------------------------------------------------------------


@pytest.mark.parametrize("bits,sym,bs", [(4, True, 32), (4, False, 32), (4, False, 16), (8, True, None)])
def test_awq_clip_matches_oracle(bits, sym, bs):
    w, _, h, ma = _case(11, out=12, inp=70)
    axis = 1 if bs else 0
    qt, info = methods.awq(w, ma, h, bits=bits, symmetric=sym, axis=axis, block_size=bs, clip=True, return_info=True)
    s = qt.in_scale
    ws = (w * s[None, :]).astype(np.float32)
    hs = h / np.outer(s.astype(np.float64), s.astype(np.float64))
    scale, zp = ref.awq_clip_ref(ws, hs, bits=bits, symmetric=sym, block_size=bs)
    np.testing.assert_array_equal(np.asarray(qt.scale).reshape(scale.shape), scale)
    if not sym:
        np.testing.assert_array_equal(np.asarray(qt.zero_point).reshape(zp.shape).astype(np.int64), zp)
    # the codes: round to nearest of W * s on that grid; decode divides by s
    sfull = ref.broadcast_params(ws.shape, scale, 1, bs or ws.shape[1])
    zfull = ref.broadcast_params(ws.shape, zp, 1, bs or ws.shape[1]) if not sym else 0
    qmin, qmax = ref.qrange(bits, sym, False)
    q = ref.quantize_onnx(ws, sfull, zfull, qmin, qmax)
    want = ref.awq_dequantize_ref(ref.dequantize_linear(q, sfull, zfull), s, 1)
    np.testing.assert_array_equal(qt.dequantize(), want)
    # never worse than the unclipped grid on the block-diagonal objective
    noclip = methods.awq(w, ma, h, bits=bits, symmetric=sym, axis=axis, block_size=bs)
    b = bs or w.shape[1]
    mask = np.zeros_like(h)
    for c0 in range(0, w.shape[1], b):
        mask[c0 : c0 + b, c0 : c0 + b] = 1
    hb = h * mask
    assert ref.output_error_ref(w, qt.dequantize(), hb) <= ref.output_error_ref(w, noclip.dequantize(), hb) * (1 + 1e-12)


def test_awq_clip_with_gptq_and_rules(tmp_path):
    w, _, h, ma = _case(12, out=32, inp=96, tokens=600)
    g = methods.awq(w, ma, h, bits=4, solver="gptq", clip=True)
    a = methods.awq(w, ma, h, bits=4, clip=True)
    np.testing.assert_array_equal(g.scale, a.scale)  # the clipped grid, fixed for GPTQ
    assert ref.output_error_ref(w, g.dequantize(), h) <= ref.output_error_ref(w, a.dequantize(), h)
    with pytest.raises(edgepack.ArgumentError, match="clip"):
        methods.awq(w, ma, h, bits=4, solver="hqq", clip=True)
    with pytest.raises(edgepack.ArgumentError, match="clip"):
        methods.awq(w, ma, h, bits=4, axis=None, block_size=None, clip=True)
    with pytest.raises(edgepack.ArgumentError, match="awq_clip"):
        Rule("*", bits=4, awq_clip=True)
    wm, st = _model()
    rule = Rule("fc*", bits=4, method="gptq", awq=True, awq_clip=True)
    assert Rule.from_dict(rule.to_dict()) == rule
    m = edgepack.compress(wm, Recipe(rules=(rule, Rule("*", bits=4))), calibration=st, out=tmp_path / "m.epk")
    assert m.info("fc1.weight").params["in_axis"] == 1


# -- CLI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--method", "awq"], ["--method", "gptq", "--awq"], ["--bits", "4", "--awq"]])
def test_cli_awq(tmp_path, capsys, args):
    from edgepack.cli import main
    from safetensors.numpy import save_file

    w, st = _model()
    wf = {"fc1.weight": w["fc1.weight"]}
    save_file(wf, str(tmp_path / "w.safetensors"))
    st.save(tmp_path / "stats.safetensors")
    out = tmp_path / "w.epk"
    argv = ["compress", str(tmp_path / "w.safetensors"), "-o", str(out), "--calibration",
            str(tmp_path / "stats.safetensors"), "-q", *args]
    assert main(argv) == 0
    m = edgepack.load(out)
    assert m.info("fc1.weight").params["in_axis"] == 1
    assert struct.unpack("<I", out.read_bytes()[8:12])[0] == 2
    capsys.readouterr()
    assert main(["compress", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "x.epk"), *args]) == 2
    assert "--calibration" in capsys.readouterr().err


def test_awq_search_by_solver_never_worse_than_gptq(tmp_path):
    w, _, h, ma = _case(13, out=32, inp=96, tokens=600)
    q, info = methods.awq(w, ma, h, bits=4, symmetric=False, solver="gptq", search="solver", return_info=True)
    plain = methods.gptq(w, h, bits=4, symmetric=False)
    e_plain = ref.output_error_ref(w, plain.dequantize(), h)
    assert info["errors"][0] == pytest.approx(e_plain, rel=1e-9)  # alpha = 0 is plain GPTQ
    assert ref.output_error_ref(w, q.dequantize(), h) <= e_plain * (1 + 1e-12)
    assert info["error"] == pytest.approx(ref.output_error_ref(w, q.dequantize(), h), rel=1e-9)
    np.testing.assert_array_equal(q.in_scale, ref.awq_scales_ref(ma, info["alpha"]))
    with pytest.raises(edgepack.ArgumentError, match="search"):
        methods.awq(w, ma, h, search="gptq")
    with pytest.raises(edgepack.ArgumentError, match="awq_search"):
        Rule("*", bits=4, awq_search="solver")
    wm, st = _model()
    rule = Rule("fc*", bits=4, method="gptq", awq=True, awq_search="solver")
    m = edgepack.compress(wm, Recipe(rules=(rule, Rule("*", bits=4))), calibration=st, out=tmp_path / "m.epk")
    assert m.info("fc1.weight").params["in_axis"] == 1
