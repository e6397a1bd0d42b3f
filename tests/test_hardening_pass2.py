"""Second hardening pass (issue 18): a loaded model stays the file that was verified, hostile
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
    _replace_by_rename(tmp_path, p, {"a": np.arange(3, dtype=np.int64)})
    np.testing.assert_array_equal(m["w"], w["w"])
    np.testing.assert_array_equal(m["b"], w["b"])


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
