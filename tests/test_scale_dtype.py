"""Float16 scales (``scale_dtype="float16"``) through every path that makes or stores a
QuantizedTensor: the calibrated methods, compress / load (.epk version 2), the safetensors
form, the CLI, QuantizedLinear; and the hostile files of the version-2 rule.

The quantize() semantics themselves (scale rounded up to a float16, zero point and codes
from it) are checked against reference.compute_scale_zp(f16=True) in test_quantize.py."""

from __future__ import annotations

import copy
import json
import struct

import edgepack as ep
import numpy as np
import pytest
import reference as ref
from edgepack import methods
from edgepack.recipe import Recipe, Rule
from epk_util import build, split


def _layer(rng, out=24, inn=64, tokens=300):
    w = rng.standard_t(3, (out, inn)).astype(np.float32) * 0.05
    w[:, 5] *= 30  # an outlier input column
    x = rng.standard_t(4, (tokens, inn)).astype(np.float32)
    x[:, 7] *= 25  # an outlier activation channel
    return w, x


def _h(x):
    return (x.astype(np.float64).T @ x) / len(x)


def _decode(qt):
    """reference.epk_dequantize with the scale widened to float32 (FORMAT.md 5)."""
    return ref.epk_dequantize(
        qt.data, qt.scale.astype(np.float32), None if qt.signed else qt.zero_point,
        bits=qt.bits, axis=qt.axis, block_size=qt.block_size, shape=qt.shape, symmetric=qt.signed,
    )


@pytest.mark.parametrize("symmetric", [True, False])
def test_gptq_on_the_float16_grid(rng, symmetric):
    w, x = _layer(rng)
    h = _h(x)
    grid16 = ep.quantize(w, bits=4, axis=1, block_size=32, symmetric=symmetric, scale_dtype="float16")
    qt = methods.gptq(w, h, bits=4, symmetric=symmetric, scale_dtype="float16")
    assert qt.scale.dtype == np.float16
    assert np.array_equal(qt.scale, grid16.scale)
    assert np.array_equal(qt.zero_point, grid16.zero_point)
    y = qt.dequantize()
    assert np.array_equal(y, _decode(qt))
    # GPTQ on that grid is no worse than rounding to it, on the calibration objective
    assert ref.output_error_ref(w, y, h) <= ref.output_error_ref(w, grid16.dequantize(), h) * (1 + 1e-9)


def test_hqq_and_awq_and_sparsegpt_store_float16(rng):
    w, x = _layer(rng)
    h = _h(x)
    q1 = methods.hqq(w, bits=4, scale_dtype="float16")
    q2 = methods.gptq(w, h, bits=4, symmetric=False, grid="hqq", scale_dtype="float16")
    q3 = methods.awq(w, np.abs(x).mean(0), h, bits=4, solver="gptq", scale_dtype="float16")
    q4 = methods.awq(w, np.abs(x).mean(0), h, bits=4, clip=True, scale_dtype="float16")
    q5, _ = methods.sparsegpt(w, h, 0.5, bits=8, scale_dtype="float16")
    for qt in (q1, q2, q3, q4, q5):
        assert qt.scale.dtype == np.float16
        assert np.all(np.isfinite(qt.scale)) and np.all(qt.scale > 0)
    for qt in (q1, q2, q5):  # no in_scale: plain decode
        assert np.array_equal(qt.dequantize(), _decode(qt))
    # HQQ's refined float16 grid stays no worse than round to nearest on the float16 grid
    rtn16 = ep.quantize(w, bits=4, axis=1, block_size=32, symmetric=False, scale_dtype="float16")
    e_hqq = float(((q1.dequantize() - w) ** 2).sum())
    assert e_hqq <= float(((rtn16.dequantize() - w) ** 2).sum()) * 1.001
    with pytest.raises(ep.ArgumentError, match="scale_dtype"):
        methods.gptq(w, h, bits=4, scale_dtype="float64")


def test_compress_writes_version_2_and_round_trips(rng, tmp_path):
    w, x = _layer(rng)
    weights = {"a.weight": w, "b.weight": w[:, :48].copy()}
    rec = Recipe(rules=(Rule("a.*", bits=4, scale_dtype="float16"), Rule("b.*", bits=8)))
    p = tmp_path / "m.epk"
    m = ep.compress(weights, rec, out=p)
    assert struct.unpack("<I", p.read_bytes()[8:12])[0] == 2
    back = ep.load(p)
    assert back["a.weight"].scale.dtype == np.float16
    assert back["b.weight"].scale.dtype == np.float32
    assert np.array_equal(back.decompress("a.weight"), _decode(m["a.weight"]))
    # the scales take 2 bytes each in the file's accounting
    qa = ep.quantize(w, bits=4, axis=1, block_size=32)
    assert back["a.weight"].nbytes == qa.nbytes - qa.scale.size * 2
    # the safetensors form keeps them float16, under format version "2"
    sp = tmp_path / "m.safetensors"
    back.to_safetensors(sp)
    from safetensors import safe_open

    with safe_open(str(sp), "np") as f:
        assert f.metadata()["edgepack.format_version"] == "2"
        assert f.get_tensor("a.weight.scale").dtype == np.float16
    again = ep.load(sp)
    assert np.array_equal(again.decompress("a.weight"), back.decompress("a.weight"))
    # float32 scales only: still version 1
    p1 = tmp_path / "v1.epk"
    ep.compress(weights, Recipe(rules=(Rule("*", bits=4),)), out=p1)
    assert struct.unpack("<I", p1.read_bytes()[8:12])[0] == 1


def test_recipe_level_scale_dtype_and_dict_round_trip(rng):
    w, _ = _layer(rng)
    rec = Recipe(scale_dtype="float16", rules=(Rule("keep32", bits=4, scale_dtype="float32"),))
    assert Recipe.from_dict(rec.to_dict()) == rec
    m = ep.compress({"w": w, "keep32": w}, rec)
    assert m["w"].scale.dtype == np.float16  # the default recipe's int8 per channel
    assert m["keep32"].scale.dtype == np.float32
    with pytest.raises(ep.ArgumentError, match="scale_dtype"):
        Recipe(scale_dtype="bfloat16")
    with pytest.raises(ep.ArgumentError, match="scale_dtype"):
        Rule("*", scale_dtype="half")
    with pytest.raises(ep.ArgumentError, match="scale_dtype"):
        Rule("*", action="keep", scale_dtype="float16")


def test_quantized_linear_takes_float16_scales(rng):
    w, x = _layer(rng)
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    qt = ep.quantize(w, bits=8, axis=0, scale_dtype="float16")
    lin = ep.QuantizedLinear.from_quantized(qt, b)
    ref32 = ep.QuantizedLinear.from_quantized(
        ep.QuantizedTensor(
            data=qt.data, scale=qt.scale.astype(np.float32), zero_point=qt.zero_point,
            axis=qt.axis, block_size=qt.block_size, bits=qt.bits, shape=qt.shape,
        ),
        b,
    )
    xs = x[:16]
    assert np.array_equal(lin(xs), ref32(xs))


def test_cli_scale_dtype(rng, tmp_path):
    from edgepack.cli import main

    w, _ = _layer(rng)
    src = tmp_path / "w.npz"
    np.savez(src, fc=w)
    out = tmp_path / "w.epk"
    assert main(["compress", str(src), "-o", str(out), "--bits", "4", "--scale-dtype", "float16"]) == 0
    assert ep.load(out)["fc"].scale.dtype == np.float16


# -- hostile files ----------------------------------------------------------------------------


@pytest.fixture
def f16_file(rng, tmp_path) -> bytes:
    w, _ = _layer(rng)
    p = tmp_path / "f16.epk"
    ep.compress({"w": w}, Recipe(rules=(Rule("*", bits=4, scale_dtype="float16"),)), out=p)
    return p.read_bytes()


def test_float16_scale_in_a_version_1_file(tmp_path, f16_file):
    header, data = split(f16_file)
    p = tmp_path / "h.epk"
    p.write_bytes(build(header, data, version=1))
    with pytest.raises(ep.FormatError, match=r"'w'|\"w\"") as e:
        ep.load(p).decompress("w")
    assert "float16" in str(e.value) and "version 2" in str(e.value)


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0, -1.0])
def test_float16_scale_values(rng, tmp_path, value):
    """A float16 scale that is not finite and > 0 is a FormatError when decoded (the file is
    written by the core's own writer, so the checksums are right and the value check fires)."""
    q = ep.quantize(rng.standard_t(3, (8, 16)).astype(np.float32), bits=8, axis=0)
    s16 = q.scale.astype(np.float16)
    s16[3] = value
    u8 = lambda a: np.ascontiguousarray(a).reshape(-1).view(np.uint8)  # noqa: E731
    p = str(tmp_path / "h.epk")
    w = ep._core.EpkWriter(p)
    params = {"axis": 0, "bits": 8, "block_size": None, "convention": "onnx", "sparsity": 0.0,
              "symmetric": True}
    w.add(
        "w", "float32", [8, 16], "quant", json.dumps(params, sort_keys=True), None,
        [("data", "int8", [8, 16], u8(q.data)), ("scale", "float16", [8], u8(s16))],
        None,
    )
    w.finish({}, None)
    assert struct.unpack("<I", open(p, "rb").read(12)[8:12])[0] == 2
    with pytest.raises(ep.FormatError, match=r"'w'.*scale"):
        ep.load(p).decompress("w")


def test_float16_scale_under_safetensors_version_1(rng, tmp_path, f16_file):
    p = tmp_path / "f16.epk"
    p.write_bytes(f16_file)
    sp = tmp_path / "m.safetensors"
    ep.load(p).to_safetensors(sp)
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    t = load_file(str(sp))
    with safe_open(str(sp), "np") as f:
        md = dict(f.metadata())
    save_file(t, str(tmp_path / "v1.safetensors"), metadata={**md, "edgepack.format_version": "1"})
    with pytest.raises(ep.FormatError, match="float16 scales.*version 2"):
        ep.load(tmp_path / "v1.safetensors")
