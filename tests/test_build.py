"""The build, ISA selection and thread settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import edgepack


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPACK_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120
    )


def test_build_info_keys():
    info = edgepack.build_info()
    assert info["version"] == edgepack.__version__
    assert info["profile"] in ("release", "debug")
    assert info["isa_detected"][0] == "scalar"
    assert info["isa"] in info["isa_detected"]
    assert info["num_threads"] >= 1


@pytest.mark.parametrize("isa", edgepack.build_info()["isa_detected"])
def test_edgepack_isa_narrows_to_each_detected_level(isa):
    r = _run("import edgepack; print(edgepack.build_info()['isa'])", EDGEPACK_ISA=isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa


def test_default_isa_is_the_best_detected():
    r = _run("import edgepack; i = edgepack.build_info(); print(i['isa'], i['isa_detected'][-1])")
    assert r.returncode == 0, r.stderr
    used, best = r.stdout.split()
    assert used == best


@pytest.mark.parametrize("value", ["sse9", "avx1024"])
def test_unknown_isa_is_a_clear_error(value):
    r = _run("import edgepack", EDGEPACK_ISA=value)
    assert r.returncode != 0
    assert "ArgumentError" in r.stderr and value in r.stderr and "scalar" in r.stderr


def test_unavailable_isa_is_a_clear_error():
    missing = [
        i for i in ("scalar", "neon", "avx2", "avxvnni", "avx512")
        if i not in edgepack.build_info()["isa_detected"]
    ]
    if not missing:
        pytest.skip("this CPU supports every level")
    r = _run("import edgepack", EDGEPACK_ISA=missing[0])
    assert r.returncode != 0
    assert "does not support" in r.stderr


def test_num_threads_env_and_setter():
    r = _run("import edgepack; print(edgepack.get_num_threads())", EDGEPACK_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"
    r = _run("import edgepack", EDGEPACK_NUM_THREADS="zero")
    assert r.returncode != 0 and "EDGEPACK_NUM_THREADS" in r.stderr

    before = edgepack.get_num_threads()
    try:
        edgepack.set_num_threads(1)
        assert edgepack.get_num_threads() == 1
        assert edgepack.build_info()["num_threads"] == 1
    finally:
        edgepack.set_num_threads(before)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="found"):
            edgepack.set_num_threads(bad)


def test_spin_window_env():
    show = "import edgepack; print(edgepack.build_info()['spin_us'])"
    r = _run(show)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1000"
    r = _run(show, EDGEPACK_SPIN_US="0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"
    # Results do not depend on it: a multi-threaded product without helpers.
    r = _run(
        "import numpy as np, edgepack as ep\n"
        "ep.set_num_threads(2)\n"
        "rng = np.random.default_rng(1)\n"
        "a = rng.integers(0, 256, (300, 520), dtype=np.uint8)\n"
        "b = rng.integers(-128, 128, (520, 700), dtype=np.int8)\n"
        "want = a.astype(np.int64) @ b.astype(np.int64)\n"
        "print((ep.matmul_integer(a, b) == want).all())",
        EDGEPACK_SPIN_US="0",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    for bad in ("soon", "-5", "2000000"):
        r = _run("import edgepack", EDGEPACK_SPIN_US=bad)
        assert r.returncode != 0 and "EDGEPACK_SPIN_US" in r.stderr, (bad, r.stderr)


def test_exception_hierarchy():
    assert issubclass(edgepack.FormatError, edgepack.EdgepackError)
    assert issubclass(edgepack.FormatError, ValueError)
    assert issubclass(edgepack.DtypeError, TypeError)
    assert issubclass(edgepack.NonFiniteError, ValueError)
    assert issubclass(edgepack.LimitError, edgepack.ArgumentError)
