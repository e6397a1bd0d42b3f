"""The .epk file: golden v1 bytes, round trips of the container, determinism, laziness, I/O
errors. Hostile files are in test_hostile_files.py; compression in test_compress.py."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import pytest

import edgepack
from edgepack import _core
import reference as ref
from epk_util import MAGIC, build, split

DATA = pathlib.Path(__file__).parent / "data"
GOLDEN = DATA / "golden_v1.epk"


def _golden_module():
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- golden file --------------------------------------------------------------------------------


def test_golden_bytes_are_reproduced(tmp_path):
    out = tmp_path / "g.epk"
    _golden_module().build(str(out))
    assert out.read_bytes() == GOLDEN.read_bytes()


def test_golden_preamble_and_layout():
    b = GOLDEN.read_bytes()
    assert b[:8] == MAGIC
    assert int.from_bytes(b[8:12], "little") == 1
    header, data = split(b)
    names = [t["name"] for t in header["tensors"]]
    assert names == sorted(names) == ["emb", "fc.bias", "fc.weight", "q4", "steps", "z.embed"]
    z = next(t for t in header["tensors"] if t["name"] == "z.embed")
    assert z["payloads"][0]["compression"] == "zstd"
    start = len(b) - len(data)
    assert start % 64 == 0
    for t in header["tensors"]:
        for p in t["payloads"]:
            assert (start + p["offset"]) % 64 == 0


def test_golden_reads_back_to_numpy_values():
    g = _golden_module()
    x = g.inputs()
    m = edgepack.load(GOLDEN)
    assert m.metadata == {"created_by": "tests/data/make_golden.py"}
    assert m.recipe == edgepack.Recipe()
    np.testing.assert_array_equal(m["fc.bias"], x["fc.bias"])
    assert m["steps"].dtype == np.int64 and m["steps"].shape == () and int(m["steps"]) == 12345
    np.testing.assert_array_equal(m["emb"], x["emb"].astype(np.float16))
    np.testing.assert_array_equal(m.decompress("emb"), x["emb"].astype(np.float16).astype(np.float32))
    # Quantized payloads, decoded by the numpy reference (FORMAT.md 5).
    r = _core.EpkReader(GOLDEN)
    q, s = g.quant8_axis0(x["fc.weight"])
    np.testing.assert_array_equal(r.payload("fc.weight", "data").view(np.int8).reshape(4, 6), q)
    want = ref.epk_dequantize(q, s, None, bits=8, axis=0, block_size=None, shape=(4, 6), symmetric=True)
    np.testing.assert_allclose(want, x["fc.weight"], atol=float(s.max()) / 2 + 1e-7)
    p4, s4, z4 = g.quant4_affine_block(x["q4"], 4)
    np.testing.assert_array_equal(r.payload("q4", "data"), p4)
    want4 = ref.epk_dequantize(p4, s4, z4, bits=4, axis=1, block_size=4, shape=(2, 5), symmetric=False)
    np.testing.assert_allclose(want4, x["q4"], atol=float(s4.max()) / 2 + 1e-7)
    qz, sz = g.quant8_axis0(x["z.embed"])
    np.testing.assert_array_equal(r.payload("z.embed", "data").view(np.int8).reshape(32, 64), qz)
    wantz = ref.epk_dequantize(qz, sz, None, bits=8, axis=0, block_size=None, shape=(32, 64), symmetric=True)
    np.testing.assert_array_equal(m.decompress("z.embed"), wantz)
    if hasattr(edgepack, "quantize"):  # the model decodes through edgepack.dequantize
        np.testing.assert_array_equal(m.decompress("fc.weight"), want)
        np.testing.assert_array_equal(m.decompress("q4"), want4)


# -- container round trips ----------------------------------------------------------------------


def _all_dtypes(rng):
    import ml_dtypes

    out = {
        "f64": rng.standard_normal((3, 4)),
        "f32": rng.standard_normal((5,)).astype(np.float32),
        "f16": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "bf16": rng.standard_normal((7,)).astype(ml_dtypes.bfloat16),
        "i64": rng.integers(-(2**40), 2**40, size=(4,)),
        "i32": rng.integers(-1000, 1000, size=(3, 3)).astype(np.int32),
        "i16": rng.integers(-1000, 1000, size=(3,)).astype(np.int16),
        "i8": rng.integers(-128, 128, size=(9,)).astype(np.int8),
        "u8": rng.integers(0, 256, size=(9,)).astype(np.uint8),
        "u16": rng.integers(0, 2**16, size=(2,)).astype(np.uint16),
        "u32": rng.integers(0, 2**32, size=(2,)).astype(np.uint32),
        "u64": rng.integers(0, 2**62, size=(2,)).astype(np.uint64),
        "bool": rng.random((2, 5)) > 0.5,
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "big_endian": rng.standard_normal((6,)).astype(">f4"),
        "strided": rng.standard_normal((8, 8)).astype(np.float32)[::2, 1::3],
    }
    return out


@pytest.mark.parametrize("action", ["keep", "float16"])
def test_round_trip_every_dtype(tmp_path, rng, action):
    w = _all_dtypes(rng)
    before = {k: v.copy() for k, v in w.items()}
    recipe = edgepack.Recipe(rules=[edgepack.Rule("*", action=action)] if action == "keep" else
                             [edgepack.Rule("f*", action="float16"), edgepack.Rule("*", action="keep")])
    m = edgepack.compress(w, recipe)
    m.save(tmp_path / "m.epk")
    m2 = edgepack.load(tmp_path / "m.epk")
    assert m2.names == sorted(w)
    for k, v in w.items():
        got = m2[k]
        if action == "float16" and k in ("f64", "f32", "f16"):
            np.testing.assert_array_equal(got, v.astype(np.float16))
            assert m2.info(k).encoding == "float16"
        else:
            assert got.dtype == v.dtype.newbyteorder("<") and got.shape == v.shape
            np.testing.assert_array_equal(got, v)
        np.testing.assert_array_equal(w[k], before[k])  # inputs not modified
        d = m2.decompress(k)
        if v.dtype.kind == "f" or k == "bf16":
            assert d.dtype == np.float32
    m2.verify()


@pytest.mark.parametrize("recipe", [
    {"default": "keep", "rules": [{"pattern": "*.weight", "action": "float16"}]},
    None,  # the default recipe: int8 + zstd, report stats in the header
    {"rules": [{"pattern": "layer1*", "bits": 4}, {"pattern": "layer2*", "sparsity": 0.5}]},
])
def test_same_input_same_bytes_whatever_the_threads(tmp_path, rng, recipe):
    w = {f"layer{i}.weight": rng.standard_normal((40, 33)).astype(np.float32) for i in range(12)}
    w.update({f"layer{i}.bias": rng.standard_normal(40).astype(np.float32) for i in range(12)})
    edgepack.compress(w, recipe, workers=1).save(tmp_path / "a.epk")
    edgepack.compress(w, recipe, workers=4).save(tmp_path / "b.epk")
    assert (tmp_path / "a.epk").read_bytes() == (tmp_path / "b.epk").read_bytes()


def test_metadata_and_recipe_round_trip(tmp_path, rng):
    w = {"a": rng.standard_normal((4, 4)).astype(np.float32)}
    rec = edgepack.Recipe(rules=[edgepack.Rule("a", action="float16")], default="keep", zstd_level=5)
    md = {"author": "é & ü", "empty": "", "json": '{"x": 1}'}
    m = edgepack.compress(w, rec, metadata=md)
    m.save(tmp_path / "m.epk")
    m2 = edgepack.load(tmp_path / "m.epk")
    assert m2.metadata == md
    assert m2.recipe == rec
    with pytest.raises(TypeError, match="str -> str"):
        edgepack.compress(w, rec, metadata={"a": 1})


def test_load_is_lazy_and_verifies_on_access(tmp_path, rng):
    w = {"a": rng.standard_normal(100).astype(np.float32), "b": rng.standard_normal(100).astype(np.float32)}
    m = edgepack.compress(w, {"default": "keep"})
    p = tmp_path / "m.epk"
    m.save(p)
    b = bytearray(p.read_bytes())
    header, data = split(bytes(b))
    start = len(b) - len(data)
    off = next(pl["offset"] for t in header["tensors"] if t["name"] == "b" for pl in t["payloads"])
    b[start + off + 5] ^= 0xFF  # corrupt tensor b only
    p.write_bytes(bytes(b))
    m2 = edgepack.load(p)  # opening reads only the header
    np.testing.assert_array_equal(m2["a"], w["a"])
    with pytest.raises(edgepack.FormatError, match=r"tensor \"b\".*checksum"):
        m2["b"]
    with pytest.raises(edgepack.FormatError):
        m2.verify()


def test_nbytes_and_report_sizes(rng):
    w = {"a": rng.standard_normal((64, 32)).astype(np.float32)}
    m = edgepack.compress(w, {"rules": [{"pattern": "a", "action": "float16"}]})
    assert m.nbytes == os.path.getsize(m.path)
    row = m.report()["a"]
    assert row.bytes_before == 64 * 32 * 4 and row.bytes_after == 64 * 32 * 2
    assert row.bits_per_weight == 16.0 and row.ratio == 2.0


# -- paths and I/O errors -----------------------------------------------------------------------


def test_missing_path_is_file_not_found_with_the_path(tmp_path):
    p = tmp_path / "nope.epk"
    with pytest.raises(FileNotFoundError) as e:
        edgepack.load(p)
    assert e.value.filename == str(p)
    with pytest.raises(FileNotFoundError) as e:
        edgepack.compress(tmp_path / "nope.safetensors")
    assert e.value.filename == str(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError) as e:
        _core.EpkReader(p)
    assert e.value.filename == str(p)


def test_directory_is_an_os_error(tmp_path):
    with pytest.raises(IsADirectoryError):
        edgepack.load(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_unreadable_path_is_permission_error(tmp_path):
    p = tmp_path / "m.epk"
    p.write_bytes(GOLDEN.read_bytes())
    p.chmod(0)
    with pytest.raises(PermissionError) as e:
        edgepack.load(p)
    assert e.value.filename == str(p)


def test_save_into_missing_folder_leaves_nothing(tmp_path, rng):
    m = edgepack.compress({"a": rng.standard_normal(8).astype(np.float32)})
    with pytest.raises(FileNotFoundError) as e:
        m.save(tmp_path / "missing" / "m.epk")
    assert "missing" in str(e.value.filename)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes everywhere")
def test_save_into_read_only_folder_is_permission_error(tmp_path, rng):
    m = edgepack.compress({"a": rng.standard_normal(8).astype(np.float32)})
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            m.save(d / "m.epk")
        assert list(d.iterdir()) == []
    finally:
        d.chmod(0o700)


def test_save_over_existing_file_replaces_it_and_leaves_no_temp(tmp_path, rng):
    p = tmp_path / "m.epk"
    p.write_bytes(b"old contents")
    m = edgepack.compress({"a": rng.standard_normal(8).astype(np.float32)})
    m.save(p)
    assert edgepack.load(p).names == ["a"]
    assert [q.name for q in tmp_path.iterdir()] == ["m.epk"]


def test_compress_out_writes_directly(tmp_path, rng):
    p = tmp_path / "m.epk"
    m = edgepack.compress({"a": rng.standard_normal(8).astype(np.float32)}, out=p)
    assert m.path == str(p)
    m.save(p)  # same file: no-op
    assert edgepack.load(p).names == ["a"]
    assert [q.name for q in tmp_path.iterdir()] == ["m.epk"]


def test_header_with_no_tensors(tmp_path):
    p = tmp_path / "e.epk"
    p.write_bytes(build({"metadata": {}, "recipe": None, "tensors": []}, b""))
    m = edgepack.load(p)
    assert len(m) == 0 and m.recipe is None and m.report().totals["tensors"] == 0


# -- concurrency and properties -----------------------------------------------------------------


def test_threads_share_one_loaded_model(tmp_path, rng):
    from concurrent.futures import ThreadPoolExecutor

    w = {f"t{i}": rng.standard_normal((64, 48)).astype(np.float32) for i in range(8)}
    m = edgepack.compress(w, {"rules": [{"pattern": "t[0-3]", "action": "float16"}], "default": "keep"})
    m.save(tmp_path / "m.epk")
    shared = edgepack.load(tmp_path / "m.epk")
    want = {k: shared.decompress(k) for k in w}

    def work(i):
        return [(k, shared.decompress(k)) for k in sorted(w, key=lambda k: (hash(k) + i) % 7)]

    with ThreadPoolExecutor(8) as ex:
        for res in ex.map(work, range(32)):
            for k, v in res:
                np.testing.assert_array_equal(v, want[k])


try:
    from hypothesis import given, settings
    from hypothesis import strategies as hs
    from hypothesis.extra import numpy as hnp
except ModuleNotFoundError:  # pragma: no cover
    given = None

if given is not None:
    _names = hs.text(alphabet="abcdefghij._/0123456789", min_size=1, max_size=12).filter(
        lambda s: not s.startswith("/") and all(c not in ("", ".", "..") for c in s.split("/"))
    )
    _arrays = hnp.arrays(
        dtype=hs.sampled_from([np.float32, np.float16, np.int8, np.int64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    )

    @settings(max_examples=40, deadline=None)
    @given(hs.dictionaries(_names, _arrays, max_size=5))
    def test_keep_round_trip_property(w):
        m = edgepack.compress(w, {"default": "keep"})
        assert m.names == sorted(w)
        for k, v in w.items():
            np.testing.assert_array_equal(m[k], v)
        # Same input, same bytes.
        m2 = edgepack.compress(w, {"default": "keep"})
        assert pathlib.Path(m.path).read_bytes() == pathlib.Path(m2.path).read_bytes()


def test_uncompressed_payloads_are_read_only_views_of_the_file(tmp_path, rng):
    w = {"a": rng.standard_normal((256, 64)).astype(np.float32)}
    edgepack.compress(w, {"default": "keep"}).save(tmp_path / "m.epk")
    m = edgepack.load(tmp_path / "m.epk")
    a1, a2 = m["a"], m["a"]
    assert not a1.flags.writeable and np.shares_memory(a1, a2)  # no copy: the memory map
    np.testing.assert_array_equal(a1, w["a"])
    d = m.decompress("a")
    assert d.flags.writeable and not np.shares_memory(d, a1)  # decompress gives a fresh array
    with pytest.raises(ValueError):
        a1[0, 0] = 1.0
