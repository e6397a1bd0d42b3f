"""Second hardening pass: a loaded model stays the file that was verified, hostile
safetensors headers, names that collide, temporary files created exclusively, linear paths
for many tensors, and the findings of the same review (F6, F7, F9, F11, F14).

Every crafted input is generated here; each test is named for the row of the issue it pins.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import subprocess
import sys
import textwrap
import zipfile
from typing import Any

import numpy as np
import pytest

import edgepack
from edgepack import _core


def _model(tmp_path, rng, values: dict[str, np.ndarray] | None = None, name="m.epk", **kw):
    w = values or {
        "w": rng.standard_t(3, size=(8, 16)).astype(np.float32),
        "b": rng.standard_t(3, size=(16,)).astype(np.float32),
    }
    p = tmp_path / name
    edgepack.compress(w, kw.pop("recipe", {"rules": [{"pattern": "*", "action": "keep"}]}), out=p, **kw)
    return p, w


# -- F1: a loaded model keeps using the one mapping that was verified ---------------------------


def _replace_by_rename(tmp_path, p: pathlib.Path, values: dict[str, np.ndarray]) -> None:
    q, _ = _model(tmp_path, None, values, name="other.epk")
    os.replace(q, p)


def test_f1_replacing_the_file_by_rename_keeps_the_loaded_bytes(tmp_path, rng):
    p, w = _model(tmp_path, rng)
    m = edgepack.load(p)
    # Same layout, other values: the old code read these bytes at the old offsets.
    _replace_by_rename(tmp_path, p, {k: np.full_like(v, 666.0) for k, v in w.items()})
    for k, v in w.items():
        np.testing.assert_array_equal(m[k], v)
        np.testing.assert_array_equal(m.decompress(k), v)
    m.verify()
    assert edgepack.load(p)["w"][0, 0] == 666.0  # the path holds the new file


def test_f1_replacing_by_a_file_of_another_layout(tmp_path, rng):
    p, w = _model(tmp_path, rng)
    m = edgepack.load(p)
    # Larger than the loaded file, so the old offsets fall inside it (the old code read there).
    _replace_by_rename(tmp_path, p, {"a": np.arange(4096, dtype=np.int64)})
    np.testing.assert_array_equal(m["w"], w["w"])
    np.testing.assert_array_equal(m["b"], w["b"])
    np.testing.assert_array_equal(m.decompress("w"), w["w"])


def test_f1_unlinking_the_file_keeps_the_model_readable(tmp_path, rng):
    p, w = _model(tmp_path, rng)
    m = edgepack.load(p)
    os.unlink(p)
    np.testing.assert_array_equal(m["w"], w["w"])
    m.verify()
    dst = tmp_path / "copy.epk"
    m.save(dst)
    np.testing.assert_array_equal(edgepack.load(dst)["b"], w["b"])


def test_f1_save_after_replacement_writes_the_verified_bytes(tmp_path, rng):
    p, w = _model(tmp_path, rng)
    before = p.read_bytes()
    m = edgepack.load(p)
    _replace_by_rename(tmp_path, p, {"a": np.arange(3, dtype=np.int64)})
    dst = tmp_path / "dst.epk"
    m.save(dst)
    assert dst.read_bytes() == before
    m.save(p)  # saving over its own (replaced) path restores the loaded file
    assert p.read_bytes() == before


def test_f1_views_are_read_only_and_keep_the_mapping_alive(tmp_path, rng):
    p, w = _model(tmp_path, rng)
    m = edgepack.load(p)
    a = m["w"]
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    with pytest.raises(ValueError):
        a.setflags(write=True)
    del m
    import gc

    gc.collect()
    os.unlink(p)
    np.testing.assert_array_equal(a, w["w"])  # the array's base keeps the reader alive


# -- F3 / F4: hostile safetensors headers -------------------------------------------------------


def _st(tmp_path, header: bytes | dict, data: bytes, name="x.safetensors") -> pathlib.Path:
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = tmp_path / name
    p.write_bytes(struct.pack("<Q", len(hb)) + hb + data)
    return p


def _t(shape, offs=(0, 4), dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": list(offs)}


_HOSTILE_CONTAINER = {
    "shape of strings": ({"a": _t(["1"])}, r'"shape"\[0\] must be a non-negative integer'),
    "shape of floats": ({"a": _t([1.0])}, r'"shape"\[0\] must be a non-negative integer'),
    "shape of bools": ({"a": _t([True])}, r'"shape"\[0\] must be a non-negative integer'),
    "negative shape": ({"a": _t([-1])}, r'"shape"\[0\] must be a non-negative integer'),
    "2^70 shape": ({"a": _t([2**70])}, r'"shape"\[0\] must be a non-negative integer'),
    "shape not a list": ({"a": _t(4)}, r'"shape" must be an array'),
    "1e400 offset": (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,1e400]}}', "not valid JSON"),
    "4400-digit int": (
        b'{"a":{"dtype":"F32","shape":[' + b"9" * 4400 + b'],"data_offsets":[0,4]}}',
        "not valid JSON|must be a non-negative integer",
    ),
    "100k-deep nesting": (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),
    "overlapping ranges": (
        {"a": _t([1], (0, 4)), "b": _t([1], (2, 6))},
        r'"data_offsets" \[2, 6\] overlap those of tensor "a"',
    ),
    "same range twice": ({"a": _t([1], (0, 4)), "b": _t([1], (0, 4))}, "overlap"),
    "hole": ({"a": _t([1], (2, 6))}, "belong to no tensor"),
    "metadata a list": ({"__metadata__": [1], "a": _t([1])}, '"__metadata__" must be an object'),
    "metadata a string": ({"__metadata__": "x", "a": _t([1])}, '"__metadata__" must be an object'),
    "metadata value not a string": (
        {"__metadata__": {"format": "edgepack", "edgepack.tensors": {}}, "a": _t([1])},
        '"__metadata__" value of "edgepack.tensors" must be a string',
    ),
    "unknown dtype": ({"a": _t([1], dtype="F8_E4M3")}, r'"dtype" "F8_E4M3" is not one edgepack reads'),
    "dtype not a string": ({"a": _t([1], dtype=4)}, r'"dtype" must be a string'),
    "entry not an object": ({"a": [1, 2]}, "must be an object"),
    "data_offsets of three": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 2, 4]}}, "must hold 2"),
    "data_offsets reversed": ({"a": _t([0], (4, 0))}, "is not a byte range"),
    "range past the end": ({"a": _t([2], (0, 8))}, "end beyond the data section"),
}


@pytest.mark.parametrize("case", sorted(_HOSTILE_CONTAINER))
def test_f3_hostile_safetensors_header_is_format_error_naming_the_field(tmp_path, case):
    header, match = _HOSTILE_CONTAINER[case]
    p = _st(tmp_path, header, bytes(8 if case == "overlapping ranges" else 4))
    if case == "hole":
        p = _st(tmp_path, header, bytes(6))
    for call in (edgepack.compress, edgepack.load, edgepack.CalibrationStats.load):
        with pytest.raises(edgepack.FormatError, match=match) as ei:
            call(p)
        assert len(str(ei.value)) < 600, case


def test_f3_hostile_safetensors_on_the_command_line(tmp_path):
    p = _st(tmp_path, {"a": _t(["1"])}, bytes(4), name="bad.safetensors")
    for cmd in (["compress", str(p), "-o", str(tmp_path / "o.epk")], ["inspect", str(p)]):
        r = subprocess.run([sys.executable, "-m", "edgepack", *cmd], capture_output=True, text=True, timeout=120)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
        assert 'shape"[0] must be a non-negative integer' in r.stderr, r.stderr


_ST_FORM = {"format": "edgepack", "edgepack.format_version": "1"}


def _st_form(tmp_path, tensors: Any, recipe: Any = None, **extra) -> pathlib.Path:
    md = {**_ST_FORM, "edgepack.tensors": tensors if isinstance(tensors, str) else json.dumps(tensors), **extra}
    if recipe is not None:
        md["edgepack.recipe"] = json.dumps(recipe)
    return _st(tmp_path, {"__metadata__": md, "a": _t([2], (0, 8))}, np.arange(2, dtype=np.float32).tobytes())


def _rec(**kw):
    return {"a": {"dtype": "float32", "shape": [2], "encoding": "raw", "params": {}, **kw}}


_HOSTILE_FORM = {
    "record shape of strings": (_rec(shape=["2"]), r"shape\[0\] must be an integer"),
    "record shape of floats": (_rec(shape=[2.0]), r"shape\[0\] must be an integer"),
    "record shape of bools": (_rec(shape=[True]), r"shape\[0\] must be an integer"),
    "record shape negative": (_rec(shape=[-2]), r"shape\[0\] must be an integer"),
    "record shape 2^70": (_rec(shape=[2**70]), r"shape\[0\] must be an integer"),
    "record shape not a list": (_rec(shape="2"), "'shape' must be a list"),
    "record dtype not a string": (_rec(dtype=4), "'dtype' must be a string"),
    "record 1e400": ('{"a":{"dtype":"float32","shape":[1e400],"encoding":"raw","params":{}}}', "not valid JSON"),
    "record 4400 digits": (
        '{"a":{"dtype":"float32","shape":[' + "9" * 4400 + '],"encoding":"raw","params":{}}}',
        "not valid JSON",
    ),
    "record nested 100k deep": ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON"),
    "record stats a list": (_rec(stats=[1]), "'stats' must be an object"),
}


@pytest.mark.parametrize("case", sorted(_HOSTILE_FORM))
def test_f3_hostile_safetensors_form_records_are_format_error(tmp_path, case):
    tensors, match = _HOSTILE_FORM[case]
    p = _st_form(tmp_path, tensors)
    with pytest.raises(edgepack.FormatError, match=match) as ei:
        edgepack.load(p)
    assert len(str(ei.value)) < 600


@pytest.mark.parametrize("level", [10**30, "3", 1.5, True, None, 23])
def test_f3_safetensors_form_zstd_level_out_of_range(tmp_path, level):
    p = _st_form(tmp_path, _rec(), recipe={"zstd_level": level})
    with pytest.raises(edgepack.FormatError, match="zstd_level"):
        edgepack.load(p)


def test_f3_safetensors_form_recipe_or_metadata_of_the_wrong_type(tmp_path):
    with pytest.raises(edgepack.FormatError, match="edgepack.recipe must be null or an object"):
        edgepack.load(_st_form(tmp_path, _rec(), recipe=[1]))
    with pytest.raises(edgepack.FormatError, match="edgepack.metadata must be a JSON object of strings"):
        edgepack.load(_st_form(tmp_path, _rec(), **{"edgepack.metadata": '{"a": [1]}'}))


RSS_CHILD = textwrap.dedent(
    """
    import sys
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import numpy as np, edgepack
    base = hwm()
    outcome, msg = "ok", ""
    try:
        getattr(edgepack, sys.argv[2])(sys.argv[1])
    except edgepack.FormatError as e:
        outcome, msg = "FormatError", str(e)
    print(outcome, hwm() - base, len(msg))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("call", ["compress", "load"])
def test_f4_a_99_mb_safetensors_header_of_floats_is_bounded(tmp_path, call):
    """A 99 MB header `{"a": [0.5, 0.5, ...]}` (24.75M JSON values): refused by the node
    count before any tree is built; peak RSS growth well under 300 MiB (was 2.65 GB and a
    message holding the whole list). Measured 95 MiB (the header bytes themselves)."""
    n = (99_000_000 - 16) // 4
    hb = b'{"a":[' + b",".join([b"0.5"] * n) + b"]}"
    p = _st(tmp_path, hb, b"")
    r = subprocess.run([sys.executable, "-c", RSS_CHILD, str(p), call], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    outcome, grew, msglen = r.stdout.split()
    print(f"99 MB header, {call}: {outcome}, peak RSS growth {int(grew) / 2**20:.0f} MiB, message {msglen} bytes")
    assert outcome == "FormatError"
    assert int(grew) < 300 << 20
    assert int(msglen) < 600


def test_f4_cli_error_line_stays_short(tmp_path):
    hb = b'{"a":{"dtype":"F32","shape":"' + b"x" * 5_000_000 + b'","data_offsets":[0,4]}}'
    p = _st(tmp_path, hb, bytes(4), name="big.safetensors")
    r = subprocess.run([sys.executable, "-m", "edgepack", "inspect", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert len(r.stderr) < 2000, len(r.stderr)


# -- F2 / F2b: names that collide with a format's own names -------------------------------------


def test_f2_tensor_named_metadata_is_refused_before_writing_safetensors(tmp_path, rng):
    p, _ = _model(tmp_path, rng, {"__metadata__": rng.standard_t(3, size=(4,)).astype(np.float32)})
    m = edgepack.load(p)
    for deq in (False, True):
        out = tmp_path / "o.safetensors"
        with pytest.raises(edgepack.ArgumentError, match="'__metadata__' cannot be stored in a safetensors"):
            m.to_safetensors(out, dequantize=deq)
        assert not out.exists()
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".o.safetensors")]
    r = subprocess.run(
        [sys.executable, "-m", "edgepack", "decompress", str(p), "-o", str(tmp_path / "o.safetensors")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode != 0 and "__metadata__" in r.stderr, r.stderr


@pytest.mark.parametrize("names", [("allow_pickle", "file"), ("file",), ("__metadata__", "a/b:0", "x.npy", "fix_imports")])
def test_f2b_every_name_round_trips_through_npz(tmp_path, rng, names):
    w = {n: rng.standard_t(3, size=(3, 5)).astype(np.float32) for n in names}
    p, _ = _model(tmp_path, rng, w)
    out = tmp_path / "o.npz"
    r = subprocess.run(
        [sys.executable, "-m", "edgepack", "decompress", str(p), "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"{len(names)} tensors" in r.stdout or str(len(names)) in r.stdout
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(names)
        for n in names:
            np.testing.assert_array_equal(z[n], w[n])


# -- F15: every temporary file is created exclusively -------------------------------------------


def test_f15_planted_symlinks_at_temporary_names_are_never_followed(tmp_path, rng, monkeypatch):
    """The CLI's npz / --report / bench --json writers and write_safetensors go through
    edgepack.io.atomic_output: O_CREAT|O_EXCL|O_NOFOLLOW at an unpredictable name. With the
    name forced (the first guess a planted symlink), the symlink's target is untouched and the
    output is a regular file."""
    from edgepack import io as epio

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    tokens = iter(["planted", "fresh0", "planted", "fresh1", "planted", "fresh2", "planted", "fresh3"])
    monkeypatch.setattr(epio.secrets, "token_hex", lambda n: next(tokens))
    for out, suffix in (("o.npz", "npz-tmp"), ("r.txt", "tmp"), ("o.safetensors", "st-tmp")):
        os.symlink(victim, tmp_path / f".{out}.{os.getpid()}-planted.{suffix}")
    p, w = _model(tmp_path, rng)
    m = edgepack.load(p)
    epio.write_npz(str(tmp_path / "o.npz"), m.names, m.decompress)
    from edgepack import cli

    cli._write_text_atomic(tmp_path / "r.txt", "report")
    m.to_safetensors(tmp_path / "o.safetensors")
    assert victim.read_bytes() == b"precious"
    for out in ("o.npz", "r.txt", "o.safetensors"):
        assert not os.path.islink(tmp_path / out) and os.path.isfile(tmp_path / out)
    assert (tmp_path / "r.txt").read_text() == "report\n"


def test_f15_no_writer_opens_a_temporary_file_with_plain_open():
    """Source check: the package's writers create files only through atomic_output (or the
    Rust writer); `open(..., "wb")` / `"w"` on a temporary name is the bug class of F15."""
    import re

    root = pathlib.Path(edgepack.__file__).parent
    bad = []
    for f in root.rglob("*.py"):
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"tmp.*open\(|open\(.*tmp|write_(text|bytes)\(", line) and "xb" not in line and "os.open(tmp, flags" not in line:
                bad.append(f"{f.name}:{i}: {line.strip()}")
    assert not bad, bad


# -- F5 / F13: linear in the number of tensors ---------------------------------------------------


def test_f13_exact_name_rules_are_found_without_trying_every_pattern(monkeypatch):
    """One rule per tensor (what the CLI builds for --bits 8): matching every name used to
    try every pattern (n^2 fnmatch calls; 61.8 s for 16k tensors). Exact names are a dict
    lookup now; only glob rules are tried, in order, and the first match still wins."""
    import fnmatch as fnm

    n = 3000
    names = [f"layers.{i}.weight" for i in range(n)]
    rules = [{"pattern": "layers.1*.weight", "action": "keep"}]
    rules += [{"pattern": nm, "bits": 8} for nm in names]
    rules += [{"pattern": "*.weight", "bits": 4}]
    rec = edgepack.Recipe(rules=rules)
    calls = 0
    real = fnm.fnmatchcase

    def counting(name, pat):
        nonlocal calls
        calls += 1
        return real(name, pat)

    monkeypatch.setattr(fnm, "fnmatchcase", counting)
    got = {nm: rec.match(nm) for nm in names}
    assert calls <= 2 * n  # was about n^2 / 2
    # The same answers as trying every rule in order (the semantics of the recipe).
    for nm in names:
        want = next(r for r in rec.rules if real(nm, r.pattern))
        assert got[nm] is want, nm
    assert rec.match("other") is None
    assert rec.match("x.weight").bits == 4
    shadowed = [nm for nm in names if nm.startswith("layers.1")]  # taken by "layers.1*.weight"
    assert rec.unused_patterns(names) == [*shadowed, "*.weight"]


def test_f5_report_lookup_is_a_dict_lookup():
    """`Report[name]` scanned the rows (70.7 s for `inspect` on 80k tensors)."""
    from edgepack.report import Report, ReportRow

    class CountingRows(tuple):
        iterations = 0

        def __iter__(self):
            CountingRows.iterations += 1
            return super().__iter__()

    rows = CountingRows(
        ReportRow(
            name=f"t{i}", shape=(2,), parameters=2, encoding="raw", sparsity=0.0, bits_per_weight=32.0,
            bytes_before=8, bytes_after=8, ratio=1.0, snr_db=None, rel_error=0.0, cosine=1.0, max_abs_error=0.0,
        )
        for i in range(5000)
    )
    rep = Report(rows)
    CountingRows.iterations = 0
    for i in range(5000):
        assert rep[f"t{i}"].name == f"t{i}"
    assert CountingRows.iterations <= 1
    with pytest.raises(KeyError):
        rep["nope"]


def test_f5_safetensors_form_of_many_tensors_round_trips(tmp_path):
    """The safetensors form of 20k tensors loads back (the lookup of each tensor's name in the
    file's list was quadratic: 42 s for 80k)."""
    w = {f"t{i:05d}": np.full((2,), i + 0.5, np.float32) for i in range(20_000)}
    p = tmp_path / "m.epk"
    edgepack.compress(w, {"rules": [{"pattern": "*", "action": "keep"}]}, out=p)
    st = tmp_path / "m.safetensors"
    edgepack.load(p).to_safetensors(st)
    m = edgepack.load(st)
    assert len(m) == 20_000
    np.testing.assert_array_equal(m["t12345"], w["t12345"])
    rep = m.report()
    assert rep["t19999"].parameters == 2


# -- F14: the largest header a reader accepts stays within what SECURITY.md says ----------------

F14_CHILD = textwrap.dedent(
    """
    import sys
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import numpy as np, edgepack
    base = hwm()
    m = edgepack.load(sys.argv[1])
    loaded = hwm() - base
    try:
        m.recipe
        outcome = "ok"
    except edgepack.FormatError as e:
        outcome = "FormatError" if len(str(e)) < 600 else "long-message"
    print(outcome, loaded, hwm() - base)
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_f14_header_of_string_pairs_just_under_the_node_limit_is_bounded(tmp_path):
    """The costliest header per node: a free-form recipe of 4.19M `"key":""` pairs (52 MiB,
    just under MAX_JSON_NODES). It was accepted at 1.97 GiB peak (SECURITY.md said the largest
    tree was 459 MiB). Now the tree is never cloned and the recipe is parsed by Python only on
    demand, and only up to 16 MiB: measured 614 MiB to load, and `.recipe` is a FormatError
    without more. Asserted: < 1 GiB (SECURITY.md)."""
    from epk_util import build

    pairs = ((1 << 23) - 16) // 2
    inner = b"{" + b",".join(b'"%07x":""' % i for i in range(pairs)) + b"}"
    p = tmp_path / "pairs.epk"
    p.write_bytes(build(b'{"metadata":{},"recipe":' + inner + b',"tensors":[]}', b""))
    del inner
    r = subprocess.run([sys.executable, "-c", F14_CHILD, str(p)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    outcome, loaded, total = r.stdout.split()
    print(f"string-pair header: load {int(loaded) / 2**20:.0f} MiB, with .recipe {int(total) / 2**20:.0f} MiB ({outcome})")
    assert outcome == "FormatError"
    assert int(total) < 1 << 30


def test_f14_recipe_errors_do_not_list_every_key():
    with pytest.raises(edgepack.ArgumentError) as ei:
        edgepack.Recipe.from_dict({f"k{i}": 1 for i in range(100_000)})
    assert len(str(ei.value)) < 600


# -- F7: verify accepts exactly what decoding accepts -------------------------------------------


def _quant_file(tmp_path, scale: np.ndarray, data: np.ndarray, shape, bits=8) -> pathlib.Path:
    p = tmp_path / "q.epk"
    w = _core.EpkWriter(p)
    params = json.dumps({"axis": None, "bits": bits, "block_size": None, "convention": "onnx",
                         "sparsity": 0.0, "symmetric": True})
    dshape = list(shape) if bits == 8 else [data.size]
    w.add("q", "float32", list(shape), "quant", params, None,
          [("data", "int8" if bits == 8 else "uint8", dshape, data.view(np.uint8).reshape(-1)),
           ("scale", "float32", [], np.atleast_1d(scale).view(np.uint8))], None)
    w.finish({}, None)
    return p


@pytest.mark.parametrize("bad", [1e-40, 0.0, -1.0, np.inf, np.nan])
def test_f7_subnormal_or_invalid_scale_fails_verify_and_decompress_alike(tmp_path, rng, bad):
    q = rng.integers(-128, 128, size=(3, 5), dtype=np.int8)
    p = _quant_file(tmp_path, np.array(bad, np.float32), q, (3, 5))
    m = edgepack.load(p)
    with pytest.raises(edgepack.FormatError, match="scale holds a value that is not finite and > 0 and normal"):
        m.verify()
    with pytest.raises(edgepack.FormatError, match="scale holds"):
        m.decompress("q")
    with pytest.raises(edgepack.FormatError, match="scale holds"):
        m["q"]


def test_f7_int4_padding_nibble_must_be_zero(tmp_path):
    vals = np.array([1, -2, 3, -4, 5], np.int8)  # odd count: the last high nibble is padding
    packed = np.zeros(3, np.uint8)
    nib = (vals & 0xF).astype(np.uint8)
    packed[:] = nib[0::2] | np.append(nib[1::2], 0) << 4
    good = _quant_file(tmp_path, np.array(0.5, np.float32), packed, (5,), bits=4)
    np.testing.assert_array_equal(edgepack.load(good).decompress("q"), vals * np.float32(0.5))
    bad = packed.copy()
    bad[-1] |= 0x70
    p = _quant_file(tmp_path, np.array(0.5, np.float32), bad, (5,), bits=4)
    m = edgepack.load(p)
    for call in (m.verify, lambda: m.decompress("q")):
        with pytest.raises(edgepack.FormatError, match="padding nibble .* is 0x7, must be 0"):
            call()


# -- F11: values compress cannot represent are errors; tiny tensors keep their values ----------


@pytest.mark.parametrize("rule", [{"action": "float16"}, {"bits": 8}])
def test_f11_float64_beyond_float32_is_a_named_error(rng, rule):
    x = rng.standard_t(3, size=(4, 300)).astype(np.float64)
    x[2, 7] = 1e300
    with pytest.raises(edgepack.ArgumentError, match=r"'w' value 1e\+300 at index 607 overflows float32"):
        edgepack.compress({"w": x}, {"rules": [{"pattern": "w", **rule}]})


@pytest.mark.parametrize("bits, symmetric", [(8, True), (8, False), (4, True)])
def test_f11_tiny_tensor_keeps_its_values(rng, bits, symmetric):
    x = (rng.standard_t(3, size=(16, 128)) * 1e-38).astype(np.float32)  # max |x| ~ 1e-36
    assert 0 < np.abs(x).max() < 127.5 * np.finfo(np.float32).tiny
    m = edgepack.compress({"w": x}, {"rules": [{"pattern": "w", "bits": bits, "symmetric": symmetric}]})
    np.testing.assert_array_equal(m.decompress("w"), x)  # was: every value 0 (scale 1.0)
    assert m.info("w").encoding == "raw"


def test_f11_small_but_representable_tensor_is_still_quantized(rng):
    x = (rng.standard_t(3, size=(16, 128)) * 1e-30).astype(np.float32)
    m = edgepack.compress({"w": x}, {"rules": [{"pattern": "w", "bits": 8}]})
    assert m.info("w").encoding == "quant"
    assert np.corrcoef(m.decompress("w").ravel(), x.ravel())[0, 1] > 0.99


# -- F6: what inspect prints cannot drive the terminal ------------------------------------------


def test_f6_control_and_bidi_characters_are_escaped_by_inspect(tmp_path, rng):
    hostile = "ok\x1b]0;pwned\x07\r\x1b[2K fake \u202etxt.exe"
    p = tmp_path / "m.epk"
    edgepack.compress(
        {"a\u202eb": rng.standard_t(3, size=(4,)).astype(np.float32)},
        {"rules": [{"pattern": "*", "action": "keep"}]},
        metadata={"note": hostile, "k\x1b": "v"},
        out=p,
    )
    r = subprocess.run([sys.executable, "-m", "edgepack", "inspect", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for ch in ("\x1b", "\x07", "\r", "\u202e"):
        assert ch not in r.stdout and ch not in r.stderr, repr(ch)
    assert "\\x1b]0;pwned\\x07\\x0d" in r.stdout
    assert "a\\u202eb" in r.stdout


# -- F9: decompress -o x.npz streams tensor by tensor --------------------------------------------

def test_f9_decompress_to_npz_holds_one_tensor_at_a_time(tmp_path, rng):
    """8 tensors of 16 MiB (float32, 128 MiB in all): the npz is written tensor by tensor
    (was: every tensor decompressed first, then np.savez; 3.55 GiB for a 3.24 GB model).
    Measured with tracemalloc (numpy's allocations; the file's memory map is not counted)."""
    import tracemalloc

    from edgepack import cli

    w = {f"t{i}": rng.standard_t(3, size=(1024, 4096)).astype(np.float32) for i in range(8)}
    p = tmp_path / "m.epk"
    edgepack.compress(w, {"rules": [{"pattern": "*", "action": "keep"}]}, out=p)
    out = tmp_path / "o.npz"
    tracemalloc.start()
    try:
        rc = cli.main(["decompress", str(p), "-o", str(out)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"decompress -o npz of 128 MiB: peak traced allocations {peak / 2**20:.0f} MiB")
    assert rc == 0
    assert peak < 48 << 20
    with np.load(out) as z:
        np.testing.assert_array_equal(z["t5"], w["t5"])


def test_f5_safetensors_form_load_does_not_scan_the_name_list_per_tensor(tmp_path, monkeypatch):
    """Loading the safetensors form checked each tensor's name with `name in list` (n^2 string
    comparisons: 42 s for 80k tensors). Counted: list membership tests on the source's names."""
    from edgepack import io as epio
    from edgepack import model as epmodel

    w = {f"t{i:04d}": np.full((2,), i + 0.5, np.float32) for i in range(2000)}
    p = tmp_path / "m.epk"
    edgepack.compress(w, {"rules": [{"pattern": "*", "action": "keep"}]}, out=p)
    st = tmp_path / "m.safetensors"
    edgepack.load(p).to_safetensors(st)

    scanned = 0

    class Names(list):
        def __contains__(self, x):
            nonlocal scanned
            scanned += len(self)
            return super().__contains__(x)

    real = epio.open_source

    def counting(weights):
        src = real(weights)
        src.names = Names(src.names)
        return src

    monkeypatch.setattr(epmodel, "open_source", counting)
    m = edgepack.load(st)
    assert len(m) == 2000
    assert scanned <= 4 * 2000  # was 2000 x 2000
