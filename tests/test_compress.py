"""edgepack.compress end to end: a real (small) model, every encoding, sources, recipes,
reports against numpy, bad input, interrupted saves, bounded memory."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import edgepack
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

needs_quant = pytest.mark.skipif(not hasattr(edgepack, "quantize"), reason="needs edgepack.quantize")
needs_sparse = pytest.mark.skipif(
    not (hasattr(edgepack, "prune") and hasattr(edgepack, "sparse")), reason="needs edgepack.prune / sparse"
)


# -- a real model: scikit-learn's MLPClassifier on the digits data ----------------------------


@pytest.fixture(scope="module")
def mlp():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    del sklearn
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    clf = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=200, random_state=0)
    # One BLAS thread: small matrices, and a shared CI box makes BLAS thread hand-offs slow.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        clf.fit(xtr, ytr)
    # PyTorch layout: weight (out, in).
    weights = {}
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        weights[f"layers.{i}.weight"] = np.ascontiguousarray(w.T).astype(np.float32)
        weights[f"layers.{i}.bias"] = b.astype(np.float32)
    n = len(clf.coefs_)
    # Our forward pass reproduces scikit-learn's predictions.
    assert np.array_equal(np.argmax(ref.mlp_forward(weights, xte, n), axis=1), clf.predict(xte))
    return weights, n, xte, yte


def _accuracy(weights, n, x, y) -> float:
    return float(np.mean(np.argmax(ref.mlp_forward(weights, x, n), axis=1) == y)) * 100


@needs_quant
def test_mlp_default_recipe_keeps_accuracy(mlp, tmp_path):
    weights, n, x, y = mlp
    before = {k: v.copy() for k, v in weights.items()}
    m = edgepack.compress(weights)
    m.save(tmp_path / "mlp.epk")
    m2 = edgepack.load(tmp_path / "mlp.epk")
    assert m2.info("layers.0.weight").encoding == "quant"  # 64 x 64
    assert m2.info("layers.1.weight").encoding == "quant"  # 32 x 64
    assert m2.info("layers.0.weight").params["axis"] == 0
    assert m2.info("layers.2.weight").encoding == "raw"  # 10 x 32 < 1024 elements
    assert m2.info("layers.0.bias").encoding == "raw"
    acc0 = _accuracy(weights, n, x, y)
    acc1 = _accuracy(m2.decompress(), n, x, y)
    print(f"accuracy {acc0:.2f} -> {acc1:.2f} with the default recipe")
    assert acc0 - acc1 <= 0.5, (acc0, acc1)
    for k in weights:
        np.testing.assert_array_equal(weights[k], before[k])
    r = m2.report()
    assert r.totals["bytes_after"] < 0.4 * r.totals["bytes_before"]


@needs_quant
@needs_sparse
def test_mlp_half_pruned_int8(mlp, tmp_path):
    weights, n, x, y = mlp
    recipe = {"rules": [{"pattern": "layers.[01].weight", "sparsity": 0.5}]}
    m = edgepack.compress(weights, recipe)
    w2 = m.decompress()
    for k in ("layers.0.weight", "layers.1.weight"):
        row = m.report()[k]
        assert 0.49 <= row.sparsity <= 0.6
        assert np.mean(w2[k] == 0) >= 0.5
    acc0 = _accuracy(weights, n, x, y)
    acc1 = _accuracy(w2, n, x, y)
    print(f"accuracy {acc0:.2f} -> {acc1:.2f} with 50% pruning + int8")
    assert acc0 - acc1 <= 3.0, (acc0, acc1)


# -- every encoding round trips ------------------------------------------------------------------


@needs_quant
@pytest.mark.parametrize(
    "rule, tol_bits",
    [
        ({"bits": 8}, 8),
        ({"bits": 8, "granularity": "tensor"}, 8),
        ({"bits": 8, "symmetric": False}, 8),
        ({"bits": 4}, 4),
        ({"bits": 4, "symmetric": False, "block_size": 16}, 4),
        ({"bits": 4, "granularity": "channel"}, 4),
        ({"bits": 8, "calibration": "percentile", "percentile": 99.9}, 8),
    ],
)
def test_quant_encodings_round_trip(tmp_path, rng, rule, tol_bits):
    x = heavy_tailed(rng, (48, 70))
    m = edgepack.compress({"w": x}, {"rules": [{"pattern": "w", **rule}]})
    m.save(tmp_path / "m.epk")
    m2 = edgepack.load(tmp_path / "m.epk")
    qt = m2["w"]
    assert qt.bits == rule["bits"] and qt.shape == x.shape
    want = edgepack.quantize(
        x,
        bits=rule["bits"],
        symmetric=rule.get("symmetric", True),
        axis=qt.axis,
        block_size=qt.block_size,
        calibration=rule.get("calibration", "minmax"),
        percentile=rule.get("percentile"),
    )
    np.testing.assert_array_equal(qt.data, want.data)
    np.testing.assert_array_equal(np.asarray(qt.scale).reshape(-1), np.asarray(want.scale).reshape(-1))
    # The decoded tensor equals the numpy reference dequantization of the stored payloads.
    info = m2.info("w")
    zp = None if info.params["symmetric"] else np.asarray(qt.zero_point)
    expect = ref.epk_dequantize(
        np.asarray(qt.data), np.asarray(qt.scale), zp, bits=qt.bits, axis=qt.axis,
        block_size=qt.block_size, shape=x.shape, symmetric=info.params["symmetric"],
    )
    np.testing.assert_array_equal(m2.decompress("w"), expect)
    if rule.get("granularity") is None and rule["bits"] == 4:
        assert (qt.axis, qt.block_size) == (1, rule.get("block_size", 32))


@needs_quant
@pytest.mark.parametrize("chunk", [None, 7])
def test_report_numbers_match_numpy(rng, monkeypatch, chunk):
    if chunk is not None:  # the statistics are accumulated over slices of a few rows
        monkeypatch.setattr(edgepack.model, "_STATS_CHUNK", chunk)
    w = {"a": heavy_tailed(rng, (64, 96)), "b": heavy_tailed(rng, (33, 41)), "c": rng.standard_normal(7).astype(np.float32),
         "d": heavy_tailed(rng, (37, 3, 5)), "e": heavy_tailed(rng, (45, 6)), "f": heavy_tailed(rng, (13, 9)),
         "g": heavy_tailed(rng, (101,))}
    m = edgepack.compress(w, {"rules": [
        {"pattern": "b", "bits": 4},
        {"pattern": "a"},
        {"pattern": "d", "bits": 4, "symmetric": False, "axis": 0, "block_size": 4},
        {"pattern": "e", "granularity": "tensor", "symmetric": False},
        {"pattern": "f", "axis": 1},
        {"pattern": "g", "bits": 4, "granularity": "channel"},
    ]})
    rep = m.report()
    for name in w:
        row = rep[name]
        got = m.decompress(name)
        want = ref.error_stats(w[name], got)
        if name == "c":
            assert row.encoding == "raw" and row.snr_db == float("inf") and row.rel_error == 0
            continue
        np.testing.assert_allclose(row.snr_db, want["snr_db"], rtol=1e-9)
        np.testing.assert_allclose(row.rel_error, want["rel_error"], rtol=1e-9)
        np.testing.assert_allclose(row.cosine, want["cosine"], rtol=1e-12)
        np.testing.assert_allclose(row.max_abs_error, want["max_abs_error"], rtol=1e-12)
        np.testing.assert_allclose(row.sparsity, want["sparsity"])
        assert row.parameters == w[name].size
        assert row.bytes_before == w[name].nbytes
        assert row.bits_per_weight == pytest.approx(8 * row.bytes_after / w[name].size)
    assert rep["b"].encoding.startswith("int4")
    md = rep.to_markdown()
    assert "| a | 64x96 |" in md and "**total**" in md
    js = json.loads(rep.to_json())
    assert js["totals"]["tensors"] == 7 and js["rows"][2]["snr_db"] is None
    pd = pytest.importorskip("pandas")
    df = rep.to_dataframe()
    assert isinstance(df, pd.DataFrame) and list(df["name"]) == sorted(w)


@needs_sparse
def test_sparse_keep_round_trip(tmp_path, rng):
    x = heavy_tailed(rng, (40, 64))
    m = edgepack.compress({"w": x}, {"rules": [{"pattern": "w", "action": "keep", "sparsity": 0.75}]})
    m.save(tmp_path / "m.epk")
    m2 = edgepack.load(tmp_path / "m.epk")
    assert m2.info("w").encoding == "sparse"
    d = m2.decompress("w")
    kept = d != 0
    assert abs(kept.mean() - 0.25) < 0.02
    np.testing.assert_array_equal(d[kept], x[kept])  # kept values exact
    assert np.min(np.abs(x[kept])) >= np.max(np.abs(x[~kept]))  # magnitude pruning


@needs_sparse
def test_nm_pruning_float16(rng):
    x = heavy_tailed(rng, (16, 64))
    m = edgepack.compress({"w": x}, {"rules": [{"pattern": "w", "action": "float16", "sparsity": 0.5,
                                                "sparsity_method": "nm", "n": 2, "m": 4}]})
    d = m.decompress("w")
    assert np.all(np.count_nonzero(d.reshape(16, 16, 4), axis=2) <= 2)


# -- sources ------------------------------------------------------------------------------------


def _weights(rng):
    return {
        "emb.weight": heavy_tailed(rng, (50, 32)),
        "fc.weight": heavy_tailed(rng, (40, 32)),
        "fc.bias": rng.standard_normal(40).astype(np.float32),
        "norm.weight": np.ones(32, np.float16),
    }


KEEP16 = {"default": "keep", "rules": [{"pattern": "*.weight", "action": "float16"}]}


def test_safetensors_in_and_out(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    w = _weights(rng)
    st.save_file(w, str(tmp_path / "in.safetensors"))
    a = edgepack.compress(tmp_path / "in.safetensors", KEEP16)
    b = edgepack.compress(w, KEEP16)
    a.save(tmp_path / "a.epk")
    b.save(tmp_path / "b.epk")
    assert (tmp_path / "a.epk").read_bytes() == (tmp_path / "b.epk").read_bytes()
    a.to_safetensors(tmp_path / "out.safetensors")
    back = st.load_file(str(tmp_path / "out.safetensors"))  # the safetensors package reads it
    np.testing.assert_array_equal(back["fc.bias"], w["fc.bias"])
    assert back["fc.weight"].dtype == np.float16
    m = edgepack.load(tmp_path / "out.safetensors")
    for k in w:
        np.testing.assert_array_equal(m.decompress(k), a.decompress(k))
    assert m.recipe == a.recipe
    a.to_safetensors(tmp_path / "f32.safetensors", dequantize=True)
    f32 = st.load_file(str(tmp_path / "f32.safetensors"))
    assert all(v.dtype == np.float32 for v in f32.values())


@needs_quant
def test_safetensors_form_of_quantized_tensors(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    w = _weights(rng)
    m = edgepack.compress(w, {"rules": [{"pattern": "emb.*", "bits": 4, "symmetric": False}]})
    m.to_safetensors(tmp_path / "q.safetensors")
    back = st.load_file(str(tmp_path / "q.safetensors"))
    assert back["fc.weight"].dtype == np.int8 and back["fc.weight.scale"].shape == (40,)
    assert back["emb.weight"].dtype == np.uint8 and back["emb.weight"].shape == (50 * 32 // 2,)
    assert back["emb.weight.zero_point"].shape == back["emb.weight.scale"].shape == (50, 1)
    # Consumers can rebuild the floats from the documented names alone.
    want = ref.epk_dequantize(back["fc.weight"], back["fc.weight.scale"], None, bits=8, axis=0,
                              block_size=None, shape=(40, 32), symmetric=True)
    np.testing.assert_array_equal(want, m.decompress("fc.weight"))
    m2 = edgepack.load(tmp_path / "q.safetensors")
    for k in w:
        np.testing.assert_array_equal(m2.decompress(k), m.decompress(k))


def test_npz_source(tmp_path, rng):
    w = _weights(rng)
    np.savez(tmp_path / "w.npz", **w)
    a = edgepack.compress(tmp_path / "w.npz", KEEP16)
    for k in w:
        np.testing.assert_array_equal(a[k], w[k].astype(np.float16) if k.endswith("weight") else w[k])


def test_torch_checkpoint(tmp_path, rng):
    w = _weights(rng)
    try:
        import torch
    except ModuleNotFoundError:
        (tmp_path / "w.pt").write_bytes(b"PK\x03\x04 not really")
        with pytest.raises(ModuleNotFoundError, match="pip install torch"):
            edgepack.compress(tmp_path / "w.pt")
        return
    sd = {k: torch.from_numpy(v) for k, v in w.items()}
    sd["bf"] = torch.randn(3, 4).to(torch.bfloat16)
    sd["steps"] = torch.tensor(7)
    torch.save(sd, tmp_path / "w.pt")
    m = edgepack.compress(tmp_path / "w.pt", KEEP16)
    np.testing.assert_array_equal(m["fc.bias"], w["fc.bias"])
    assert int(m["steps"]) == 7 and m.info("bf").dtype == "bfloat16"
    np.testing.assert_array_equal(m.decompress("bf"), sd["bf"].float().numpy())
    m2 = edgepack.compress(sd, KEEP16)  # a state dict of tensors directly
    assert m2.names == m.names


def test_progress_reports_every_tensor(rng):
    seen = []
    w = _weights(rng)
    edgepack.compress(w, KEEP16, progress=lambda i, n, name: seen.append((i, n, name)))
    assert [s[0] for s in seen] == [1, 2, 3, 4] and {s[2] for s in seen} == set(w)
    assert all(s[1] == 4 for s in seen)


# -- recipes ------------------------------------------------------------------------------------


def test_recipe_round_trips_dict_json_toml(tmp_path):
    r = edgepack.Recipe(
        rules=(
            edgepack.Rule("*.embed*", action="keep"),
            edgepack.Rule("*mlp*", bits=4, symmetric=False, block_size=64),
            edgepack.Rule("*attn*", sparsity=0.5, sparsity_method="nm", n=2, m=4),
            edgepack.Rule("head", action="float16"),
            edgepack.Rule("blk*", sparsity=0.25, sparsity_method="block", block_shape=(2, 2)),
            edgepack.Rule("pct", calibration="percentile", percentile=99.5, granularity="tensor"),
        ),
        default="keep",
        zstd_level=7,
    )
    assert edgepack.Recipe.from_dict(r.to_dict()) == r
    assert edgepack.Recipe.from_json(r.to_json()) == r
    (tmp_path / "r.json").write_text(r.to_json())
    assert edgepack.Recipe.load(tmp_path / "r.json") == r
    (tmp_path / "r.toml").write_text(r.to_toml())
    assert edgepack.Recipe.load(tmp_path / "r.toml") == r
    assert edgepack.Recipe.coerce(str(tmp_path / "r.toml")) == r


def test_default_recipe_plan():
    r = edgepack.Recipe()
    assert r.plan("w", (32, 32), True).encoding == "quant"
    assert r.plan("w", (32, 32), True).axis == 0
    assert r.plan("w", (1023,), True).encoding == "raw"
    assert r.plan("w", (31, 33), True).encoding == "raw"  # 1023 elements
    assert r.plan("w", (32, 32), False).encoding == "raw"  # integers kept
    p4 = edgepack.Recipe(rules=[edgepack.Rule("*", bits=4)]).plan("w", (64, 100), True)
    assert (p4.axis, p4.block_size) == (1, 32)


def test_first_match_wins():
    r = edgepack.Recipe(rules=[edgepack.Rule("a.*", action="keep"), edgepack.Rule("a.w", action="float16")])
    assert r.plan("a.w", (64, 64), True).encoding == "raw"


@pytest.mark.parametrize(
    "rule, match",
    [
        ({"pattern": "x", "action": "keep", "bits": 4}, "conflicts with quantization settings"),
        ({"pattern": "x", "granularity": "tensor", "block_size": 32}, "conflicts with granularity"),
        ({"pattern": "x", "bits": 3}, "bits must be 8 or 4"),
        ({"pattern": "x", "sparsity": 1.5}, "sparsity must be in"),
        ({"pattern": "x", "sparsity": 0.3, "sparsity_method": "nm"}, "N:M pruning 2:4 gives sparsity 0.5"),
        ({"pattern": "x", "calibration": "percentile"}, "percentile"),
        ({"pattern": "x", "frobnicate": 1}, "unknown keys"),
        ({"pattern": ""}, "non-empty"),
    ],
)
def test_bad_rules(rule, match):
    with pytest.raises(edgepack.ArgumentError, match=match):
        edgepack.Recipe.from_dict({"rules": [rule]})


def test_conflicting_rules_for_one_pattern():
    with pytest.raises(edgepack.ArgumentError, match="conflicting rules for pattern 'x'"):
        edgepack.Recipe.from_dict({"rules": [{"pattern": "x", "action": "keep"}, {"pattern": "x", "bits": 4}]})


def test_pattern_matching_nothing_warns(rng):
    w = {"a": rng.standard_normal(4).astype(np.float32)}
    with pytest.warns(UserWarning, match="'nothing.*' decides no tensor"):
        edgepack.compress(w, {"default": "keep", "rules": [{"pattern": "nothing.*", "action": "keep"}]})


def test_bad_recipe_files(tmp_path):
    (tmp_path / "r.toml").write_text("default = [")
    with pytest.raises(edgepack.ArgumentError, match="not valid TOML"):
        edgepack.Recipe.load(tmp_path / "r.toml")
    with pytest.raises(edgepack.ArgumentError, match="not valid JSON"):
        edgepack.Recipe.from_json("{nope")
    with pytest.raises(FileNotFoundError):
        edgepack.Recipe.load(tmp_path / "missing.json")


# -- bad input ----------------------------------------------------------------------------------


def test_non_array_values_name_the_tensor():
    with pytest.raises(edgepack.DtypeError, match="tensor 'a' is a list"):
        edgepack.compress({"a": [1.0, 2.0]})


def test_unsupported_dtype_names_the_tensor():
    with pytest.raises(edgepack.DtypeError, match="tensor 'c' has dtype complex64"):
        edgepack.compress({"c": np.zeros(3, np.complex64)})


def test_bad_names(rng):
    x = rng.standard_normal(4).astype(np.float32)
    for bad, match in [("", "empty"), ("a\nb", "control character"), ("../x", "path component")]:
        with pytest.raises(edgepack.ArgumentError, match=match):
            edgepack.compress({bad: x}, {"default": "keep"})
    with pytest.raises(edgepack.DtypeError, match="names must be strings"):
        edgepack.compress({1: x})


@needs_quant
def test_nan_names_the_tensor_and_index(rng):
    x = rng.standard_normal((32, 64)).astype(np.float32)
    x[3, 5] = np.nan
    with pytest.raises(edgepack.NonFiniteError, match="NaN at index 197") as e:
        edgepack.compress({"fc.weight": x})
    assert "while compressing tensor 'fc.weight'" in "".join(e.value.__notes__)


def test_float16_overflow_names_the_tensor():
    with pytest.raises(edgepack.ArgumentError, match="tensor 'w' value 100000.0 at index 2 overflows float16"):
        edgepack.compress({"w": np.array([1, 2, 1e5], np.float32)}, {"rules": [{"pattern": "w", "action": "float16"}]})


def test_rule_on_integer_tensor():
    with pytest.raises(edgepack.ArgumentError, match="non-float tensor"):
        edgepack.compress({"i": np.arange(4096).reshape(64, 64)}, {"rules": [{"pattern": "i"}]})


def test_failed_compress_leaves_no_files(tmp_path, rng):
    out = tmp_path / "m.epk"
    out.write_bytes(b"previous")
    w = {"a": rng.standard_normal(4).astype(np.float32), "b": [1]}
    with pytest.raises(edgepack.DtypeError):
        edgepack.compress(w, {"default": "keep"}, out=out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.epk"]


# -- interrupted save ---------------------------------------------------------------------------


CHILD = textwrap.dedent(
    """
    import sys, numpy as np, edgepack
    rng = np.random.default_rng(1)
    w = {f"t{i}": rng.standard_normal(2_000_000).astype(np.float32) for i in range(16)}
    m = edgepack.compress(w, {"default": "keep"})
    print("ready", flush=True)
    while True:
        m.save(sys.argv[1])
    """
)


def test_killed_during_save_leaves_the_old_file_intact(tmp_path, rng):
    dest = tmp_path / "model.epk"
    old = edgepack.compress({"old": rng.standard_normal(100).astype(np.float32)})
    old.save(dest)
    old_bytes = dest.read_bytes()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(dest)], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until a save is under way
            tmps = [p for p in tmp_path.iterdir() if p.name.endswith(".epk-tmp")]
            if tmps and tmps[0].stat().st_size > 0:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".epk-tmp")]
    print(f"killed with {len(leftovers)} partial temporary file(s) left behind")
    # The destination is either the old file or a complete new one, never a mix.
    b = dest.read_bytes()
    m = edgepack.load(dest)
    if b == old_bytes:
        assert m.names == ["old"]
    else:
        assert len(m.names) == 16
        m.verify()


# -- bounded memory -----------------------------------------------------------------------------

MEM_CHILD = textwrap.dedent(
    """
    import resource, sys, numpy as np, edgepack
    src, out, recipe = sys.argv[1], sys.argv[2], sys.argv[3]
    def rss():
        # VmHWM is the peak of this process image (ru_maxrss survives exec on Linux and would
        # include the parent's memory at fork).
        try:
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    np.zeros(1)
    before = rss()
    m = edgepack.compress(src, None if recipe == "default" else {"default": "keep"}, out=out)
    print(before, rss(), m.nbytes)
    """
)


def test_compress_memory_is_bounded_by_tensor_not_model(tmp_path, rng):
    """64 tensors of 2 MiB (128 MiB), 2 workers: peak memory grows by a few tensors (about
    15 MiB measured), not by the model."""
    from edgepack.io import write_safetensors

    base = heavy_tailed(rng, (512, 1024))
    names = [f"layer{i:02d}.weight" for i in range(64)]
    # Distinct tensors without holding 128 MiB here: each is the base rolled by its index.
    write_safetensors(str(tmp_path / "big.safetensors"), [(n, "float32", (512, 1024)) for n in names],
                      lambda n: np.roll(base, names.index(n)), None)
    recipe = "default" if hasattr(edgepack, "quantize") else "keep"
    env = dict(os.environ, EDGEPACK_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", MEM_CHILD, str(tmp_path / "big.safetensors"), str(tmp_path / "o.epk"), recipe],
        capture_output=True, check=True, text=True, env=env,
    ).stdout.split()
    before, peak, _ = (int(v) for v in out)
    model = 64 * 512 * 1024 * 4
    print(f"peak RSS grew by {(peak - before) / 2**20:.1f} MiB for a {model / 2**20:.0f} MiB model")
    assert peak - before < model / 4


@needs_quant
def test_report_plot(tmp_path, rng):
    pytest.importorskip("matplotlib")
    w = {"a": heavy_tailed(rng, (64, 96)), "b": rng.standard_normal(7).astype(np.float32)}
    m = edgepack.compress(w)
    m.report().plot(tmp_path / "r.png", histograms=["a"])
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_quant
def test_bfloat16_safetensors_default_recipe(tmp_path, rng):
    from edgepack.io import write_safetensors

    x = heavy_tailed(rng, (64, 48))
    import ml_dtypes

    xb = x.astype(ml_dtypes.bfloat16)
    write_safetensors(str(tmp_path / "b.safetensors"), [("w", "bfloat16", (64, 48))], lambda n: xb, None)
    st = pytest.importorskip("safetensors.numpy")
    del st
    m = edgepack.compress(tmp_path / "b.safetensors")
    assert m.info("w").dtype == "bfloat16" and m.info("w").encoding == "quant"
    want = edgepack.quantize(xb.astype(np.float32), axis=0).dequantize()
    np.testing.assert_array_equal(m.decompress("w"), want)
    assert m.report()["w"].bytes_before == 64 * 48 * 2


@needs_sparse
def test_provided_importance_decides_what_is_pruned(rng):
    x = heavy_tailed(rng, (16, 32))
    feat = rng.random(32).astype(np.float32) ** 4
    rule = {"pattern": "w", "action": "float16", "sparsity": 0.5, "importance": "provided"}
    m = edgepack.compress({"w": x}, {"rules": [rule]}, importance={"w": feat})
    kept = m.decompress("w") != 0
    score = np.abs(x) * feat  # |w| x per-input-feature score
    assert np.min(score[kept]) >= np.max(score[~kept])
    assert not np.array_equal(kept, np.abs(x) >= np.median(np.abs(x)))  # not plain magnitude
    nm = dict(rule, sparsity_method="nm")
    m = edgepack.compress({"w": x}, {"rules": [nm]}, importance={"w": feat})
    d = m.decompress("w").reshape(16, 8, 4)
    s4 = score.reshape(16, 8, 4)
    keep = d != 0
    assert np.all(keep.sum(axis=2) == 2)
    assert np.all(np.where(keep, s4, np.inf).min(axis=2) >= np.where(keep, -np.inf, s4).max(axis=2))
    with pytest.raises(edgepack.ArgumentError, match="wants provided importance"):
        edgepack.compress({"w": x}, {"rules": [rule]})
    with pytest.raises(edgepack.ArgumentError, match="importance of tensor 'w' has shape"):
        edgepack.compress({"w": x}, {"rules": [rule]}, importance={"w": feat[:4]})


FULL_DISK_CHILD = textwrap.dedent(
    """
    import errno, resource, signal, sys, numpy as np, edgepack
    dest = sys.argv[1]
    w = {f"t{i}": np.random.default_rng(i).standard_normal(200_000).astype(np.float32) for i in range(8)}
    m = edgepack.compress(w, {"default": "keep"})
    # Files may not grow beyond 1 MiB from here on: writes fail with EFBIG, like a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    for attempt in ("save", "compress"):
        try:
            if attempt == "save":
                m.save(dest)
            else:
                edgepack.compress(w, {"default": "keep"}, out=dest)
        except OSError as e:
            print(attempt, e.errno == errno.EFBIG, e.filename == dest, flush=True)
        else:
            print(attempt, "no error", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_write_error_mid_save_is_os_error_with_path_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "m.epk"
    dest.write_bytes(b"previous")
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(dest)], capture_output=True,
                         text=True, env=env, check=True).stdout.split("\n")
    assert out[:2] == ["save True True", "compress True True"], out
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.epk", "tmp"]


def test_safetensors_metadata_round_trips(tmp_path, rng):
    """A safetensors source's ``__metadata__`` (``{"format": "pt"}``, which some loaders
    require) is kept in the .epk and written back by a dequantized to_safetensors / the CLI's
    decompress; the caller's metadata wins on a shared key; the edgepack form keeps it too."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from edgepack.cli import main

    w = {"fc.weight": rng.standard_t(3, (64, 48)).astype(np.float32), "fc.bias": np.ones(64, np.float32)}
    src = tmp_path / "model.safetensors"
    save_file(w, str(src), metadata={"format": "pt", "origin": "unit test"})
    m = edgepack.compress(src, metadata={"origin": "caller"})
    assert m.metadata == {"format": "pt", "origin": "caller"}
    out = tmp_path / "back.safetensors"
    m.to_safetensors(out, dequantize=True)
    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"format": "pt", "origin": "caller"}
    # the CLI: compress -> decompress keeps {'format': 'pt'}
    epk = tmp_path / "model.epk"
    assert main(["compress", str(src), "-o", str(epk)]) == 0
    dec = tmp_path / "dec.safetensors"
    assert main(["decompress", str(epk), "-o", str(dec)]) == 0
    with safe_open(str(dec), "np") as f:
        assert f.metadata() == {"format": "pt", "origin": "unit test"}
    # the edgepack form carries it inside edgepack.metadata and loads back with it
    form = tmp_path / "form.safetensors"
    m.to_safetensors(form)
    assert edgepack.load(form).metadata == {"format": "pt", "origin": "caller"}
    # a dict source has no file metadata: nothing is invented
    assert edgepack.compress(w).metadata == {}
