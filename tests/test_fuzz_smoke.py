"""Fuzzing in smoke mode: a few thousand mutated inputs through edgepack.load and
SparseTensor.from_bytes; only edgepack.FormatError may come out. The long runs (cargo-fuzz over
the Rust reader and decoder, atheris over these targets) are documented in SECURITY.md."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

FUZZ = pathlib.Path(__file__).resolve().parent.parent / "fuzz"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fz():
    _module("gen_seeds")
    return _module("py_fuzz")


@pytest.fixture(scope="module")
def seeds(fz, tmp_path_factory):
    g = sys.modules["gen_seeds"]
    return {
        "load": g.epk_seeds(str(tmp_path_factory.mktemp("seeds"))),
        "sparse": g.sparse_seeds(),
        "safetensors": g.safetensors_seeds(str(tmp_path_factory.mktemp("st-seeds"))),
    }


RUNS = int(os.environ.get("EDGEPACK_FUZZ_RUNS", "2500"))


@pytest.mark.parametrize("target", ["load", "sparse", "safetensors"])
def test_seeds_are_valid(fz, seeds, target):
    for s in seeds[target]:
        fz.TARGETS[target](s)


@pytest.mark.parametrize("target", ["load", "sparse", "safetensors"])
def test_mutation_smoke(fz, seeds, target):
    assert fz.mutation_loop(target, seeds[target], RUNS, seed=7) == RUNS


@pytest.mark.parametrize("target", ["load", "sparse", "safetensors"])
def test_atheris_smoke(fz, seeds, target, tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, s in enumerate(seeds[target]):
        (corpus / f"seed{i}").write_bytes(s)
    r = subprocess.run(
        [sys.executable, str(FUZZ / "py_fuzz.py"), target, str(corpus), f"-runs={RUNS}", "-seed=1",
         "-max_len=65536", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Done" in r.stderr, r.stderr[-2000:]
