"""The ``edgepack`` command line: every command through ``main(argv)``, exit codes and messages,
bad paths, corrupt files, bad options, the bundled demo, ``bench --quick``, and the installed
console script in a subprocess.

Expected numbers come from numpy (the quantization error bound, exact prune counts), never
from another run of edgepack. Parts that need an API still being built skip with a reason
naming it ("pending: ...") and run as soon as that API is in the package.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

import edgepack
from edgepack import cli

# tests/conftest.py by path: `from conftest import ...` can resolve to benches/conftest.py
# when plain `pytest` collects both folders.
_spec = importlib.util.spec_from_file_location(
    "_edgepack_tests_conftest_cli", Path(__file__).with_name("conftest.py")
)
assert _spec is not None and _spec.loader is not None
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
heavy_tailed = _conftest.heavy_tailed

HAS_MODEL = hasattr(edgepack, "compress")
HAS_QUANT = hasattr(edgepack, "quantize")
HAS_PRUNE = importlib.util.find_spec("edgepack.prune") is not None

needs_model = pytest.mark.skipif(
    not HAS_MODEL, reason="pending: edgepack.compress / load not in this build yet"
)
needs_quant = pytest.mark.skipif(
    not (HAS_MODEL and HAS_QUANT),
    reason="pending: edgepack.quantize and compress not both in this build",
)
needs_prune = pytest.mark.skipif(
    not (HAS_MODEL and HAS_QUANT and HAS_PRUNE),
    reason="pending: edgepack.prune, quantize and compress not all in this build",
)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    """stderr of a failed command: exactly one line, no traceback."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def weights(rng) -> dict[str, np.ndarray]:
    """A small transformer-ish state dict: odd shapes, heavy-tailed weights, a bias, a norm."""
    return {
        "blocks.0.attn.qkv.weight": heavy_tailed(rng, (96, 40)),
        "blocks.0.attn.qkv.bias": heavy_tailed(rng, (96,)),
        "blocks.0.mlp.fc1.weight": heavy_tailed(rng, (72, 33)),
        "blocks.0.norm.weight": (1 + heavy_tailed(rng, (40,))).astype(np.float32),
        "head.weight": heavy_tailed(rng, (10, 40)),  # 400 elements: kept by the default recipe
    }


@pytest.fixture
def st_file(tmp_path, weights) -> Path:
    from safetensors.numpy import save_file

    p = tmp_path / "model.safetensors"
    save_file(weights, str(p))
    return p


@pytest.fixture
def npz_file(tmp_path, weights) -> Path:
    p = tmp_path / "model.npz"
    np.savez(p, **weights)
    return p


@pytest.fixture
def epk_file(tmp_path, npz_file, capsys) -> Path:
    """A compressed file that needs no quantization kernels (float16 + kept tensors)."""
    if not HAS_MODEL:
        pytest.skip("pending: edgepack.compress not in this build yet")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"rules": [{"pattern": "*.weight", "action": "float16"}]}))
    out = tmp_path / "m.epk"
    rc, _, err = run(capsys, "compress", npz_file, "-o", out, "--recipe", recipe)
    assert rc == 0, err
    return out


# ---------------------------------------------------------------------------------------------
# Help, version, usage errors (exit code 2)


def test_top_level_help_lists_every_command(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for name in cli.COMMANDS:
        assert name in out
    assert "edgepack demo" in out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_has_help_with_an_example(capsys, command):
    rc, out, _ = run(capsys, command, "--help")
    assert rc == 0
    assert "example" in out
    assert f"edgepack {command}" in out.split("example", 1)[1]


def test_version(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0
    assert out.strip() == f"edgepack {edgepack.__version__}"


def test_no_command_is_a_usage_error(capsys):
    rc, _, err = run(capsys)
    assert rc == 2
    assert "COMMAND" in err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["frobnicate"], "invalid choice"),
        (["compress"], "INPUT"),
        (["compress", "--keep", "a*", "m.npz"], "put INPUT first"),
        (["compress", "m.npz", "--bits", "3"], "--bits"),
        (["compress", "m.npz", "--sparsity", "1.5"], "expected a number in [0, 1), found 1.5"),
        (["compress", "m.npz", "--sparsity", "half"], "found 'half'"),
        (["compress", "m.npz", "--pattern", "4:2"], "0 < N < M"),
        (["compress", "m.npz", "--pattern", "2-4"], "expected N:M"),
        (["compress", "m.npz", "--block-size", "0"], "positive integer"),
        (["compress", "m.npz", "--threads", "-1"], "positive integer"),
        (["compress", "m.npz", "--granularity", "row"], "--granularity"),
        (["compress", "m.npz", "--report", "r.txt"], "--report must end in .md or .json"),
        (["compress", "m.npz", "-o", "m.bin"], "must end in .epk"),
        (["compress", "m.npz", "--recipe", "r.json", "--bits", "4"], "--recipe cannot be combined"),
        (
            ["compress", "m.npz", "--granularity", "tensor", "--block-size", "8"],
            "--block-size needs --granularity block",
        ),
        (["compress", "m.npz", "--sparsity", "0.5", "--pattern", "2:4"], "give one"),
        (["decompress", "m.epk"], "-o"),
        (["decompress", "m.epk", "-o", "out.txt"], "must end in .safetensors or .npz"),
        (["decompress", "m.epk", "-o", "out.npz", "--quantized"], "--quantized"),
        (["bench", "--slow"], "unrecognized arguments"),
        (["verify"], "FILE"),
    ],
)
def test_bad_options_exit_2_with_a_message(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.npz").write_bytes(b"")  # exists, so only the option can be at fault
    (tmp_path / "r.json").write_text("{}")
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (out, err)
    assert needle in err
    assert "Traceback" not in err
    assert out == ""


# ---------------------------------------------------------------------------------------------
# Bad paths and corrupt files (exit code 1, one line on stderr)


@pytest.mark.parametrize(
    "argv",
    [
        ["compress", "{missing}.safetensors"],
        ["inspect", "{missing}.epk"],
        ["verify", "{missing}.epk"],
        ["decompress", "{missing}.epk", "-o", "{tmp}/out.npz"],
    ],
)
def test_missing_file_exits_1_naming_it(capsys, tmp_path, argv):
    missing = tmp_path / "nope"
    argv = [a.format(missing=missing, tmp=tmp_path) for a in argv]
    rc, out, err = run(capsys, *argv)
    assert rc == 1
    line = one_line_error(err)
    assert line.startswith("edgepack: error: No such file or directory")
    assert str(missing) in line
    assert out == ""


def test_debug_shows_the_traceback(capsys, tmp_path):
    rc, _, err = run(capsys, "verify", tmp_path / "nope.epk", "--debug")
    assert rc == 1
    assert "Traceback" in err and "FileNotFoundError" in err
    rc, _, err = run(capsys, "--debug", "inspect", tmp_path / "nope.epk")
    assert rc == 1
    assert "Traceback" in err


def test_directory_instead_of_file(capsys, tmp_path):
    rc, _, err = run(capsys, "verify", tmp_path)
    assert rc == 1
    assert str(tmp_path) in one_line_error(err)


@needs_model
@pytest.mark.parametrize("command", ["verify", "inspect", "decompress"])
def test_not_an_epk_file(capsys, tmp_path, command):
    p = tmp_path / "junk.epk"
    p.write_bytes(b"definitely not an edgepack file, just text" * 3)
    argv = [command, p] + (["-o", tmp_path / "o.npz"] if command == "decompress" else [])
    rc, out, err = run(capsys, *argv)
    assert rc == 1
    assert "not an .epk file" in one_line_error(err)
    assert not (tmp_path / "o.npz").exists()


@needs_model
def test_verify_ok(capsys, epk_file):
    rc, out, err = run(capsys, "verify", epk_file)
    assert rc == 0, err
    assert out.startswith(f"{epk_file}: ok (5 tensors")
    assert err == ""


@needs_model
def test_verify_reports_a_flipped_byte(capsys, tmp_path, epk_file):
    data = bytearray(epk_file.read_bytes())
    data[-7] ^= 0x40  # inside the last payload
    bad = tmp_path / "bad.epk"
    bad.write_bytes(bytes(data))
    rc, out, err = run(capsys, "verify", bad)
    assert rc == 1
    line = one_line_error(err)
    assert line.startswith(f"edgepack: verify failed: {bad}:")
    assert "checksum" in line
    assert out == ""
    # inspect still lists everything, marks the bad tensor, and fails
    rc, out, err = run(capsys, "inspect", bad)
    assert rc == 1
    assert "BAD" in out and out.count(" ok") == 4
    assert "checksum" in err and "Traceback" not in err


@needs_model
@pytest.mark.parametrize("keep", [10, 23, 24, 100, -1])
def test_verify_reports_truncation(capsys, tmp_path, epk_file, keep):
    data = epk_file.read_bytes()
    bad = tmp_path / "trunc.epk"
    bad.write_bytes(data[:keep])
    rc, _, err = run(capsys, "verify", bad)
    assert rc == 1
    assert "trunc.epk" in one_line_error(err)


@needs_model
def test_compress_corrupt_input(capsys, tmp_path):
    p = tmp_path / "broken.safetensors"
    p.write_bytes(b"\xff" * 8 + b"{}")
    rc, out, err = run(capsys, "compress", p)
    assert rc == 1
    assert "broken.safetensors" in one_line_error(err)
    assert not (tmp_path / "broken.epk").exists()
    p = tmp_path / "broken.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    rc, out, err = run(capsys, "compress", p)
    assert rc == 1
    assert "broken.npz" in one_line_error(err)


@needs_model
def test_compress_refuses_to_overwrite_its_input(capsys, tmp_path, epk_file):
    rc, _, err = run(capsys, "compress", epk_file, "-o", epk_file)
    assert rc == 2
    assert "overwrite the input" in err


@needs_model
@pytest.mark.parametrize("flag", ["-o", "--report"])
def test_output_folder_missing_fails_before_compressing(capsys, tmp_path, npz_file, flag):
    dest = tmp_path / "no" / "such" / ("x.epk" if flag == "-o" else "r.md")
    rc, out, err = run(capsys, "compress", npz_file, "--keep", "*", flag, dest)
    assert rc == 1
    line = one_line_error(err)
    assert "No such directory" in line and str(dest.parent) in line
    assert out == ""
    assert not (tmp_path / "model.epk").exists()


@needs_model
def test_plot_without_matplotlib_is_an_environment_error(capsys, npz_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if absent
    rc, out, err = run(capsys, "compress", npz_file, "--keep", "*", "--plot", "p.png")
    assert rc == 1
    assert "matplotlib" in one_line_error(err)


# ---------------------------------------------------------------------------------------------
# compress / inspect / decompress


@needs_model
def test_input_index_reads_headers_only(tmp_path, weights, st_file, npz_file):
    for p in (st_file, npz_file):
        idx = cli.input_index(p)
        assert [t.name for t in idx] == sorted(weights)
        for t in idx:
            assert t.shape == weights[t.name].shape
            assert t.dtype == "float32"
            assert t.nbytes == weights[t.name].nbytes


@needs_model
def test_recipe_options_map_onto_rules(weights, st_file):
    parser = cli.build_parser()
    idx = cli.input_index(st_file)
    args = parser.parse_args(
        ["compress", str(st_file), "--bits", "4", "--block-size", "16", "--keep", "*.fc1.*"]
    )
    r = cli._recipe_from_args(args, idx)
    # --keep first, then one rule per tensor the default recipe would quantize
    assert r.rules[0].pattern == "*.fc1.*" and r.rules[0].action == "keep"
    quantized = {n for n in weights if r.match(n) is not None and r.match(n).action == "quantize"}
    assert quantized == {"blocks.0.attn.qkv.weight"}  # the others: small, 1-D or kept
    rule = r.match("blocks.0.attn.qkv.weight")
    assert (rule.bits, rule.block_size, rule.symmetric) == (4, 16, True)
    args = parser.parse_args(["compress", str(st_file), "--pattern", "2:4", "--affine"])
    rule = cli._recipe_from_args(args, idx).match("blocks.0.mlp.fc1.weight")
    assert (rule.sparsity_method, rule.n, rule.m, rule.sparsity, rule.symmetric) == (
        "nm",
        2,
        4,
        0.5,
        False,
    )
    assert cli._recipe_from_args(parser.parse_args(["compress", str(st_file)]), idx) is None


def test_glob_escape_matches_only_the_name():
    import fnmatch

    for name in ["a.weight", "odd[0]*?.w", "x?y"]:
        pat = cli._glob_escape(name)
        assert fnmatch.fnmatchcase(name, pat)
        assert not fnmatch.fnmatchcase(name + "x", pat)
    assert not fnmatch.fnmatchcase("oddX0]ab.w", cli._glob_escape("odd[0]*?.w"))


def test_progress_bar_draws_count_bytes_elapsed_and_rate():
    buf = io.StringIO()
    bar = cli.ProgressBar(buf, enabled=True, sizes={"a": 3_000_000, "b": 1_000_000})
    bar(1, 2, "a")
    bar(2, 2, "b")
    bar.close()
    text = buf.getvalue()
    assert "1/2 tensors" in text and "2/2 tensors" in text
    assert "4.00 MB/4.00 MB" in text
    assert re.search(r"2/2 tensors  4\.00 MB/4\.00 MB  \d+\.\ds  [\d.]+ [KMGT]?B/s", text)
    assert text.endswith("\n")


def test_progress_bar_hidden_when_disabled():
    buf = io.StringIO()
    bar = cli.ProgressBar(buf, enabled=False, sizes={"a": 10})
    bar(1, 1, "a")
    bar.close()
    assert buf.getvalue() == ""
    assert bar.bytes_done == 10


@needs_model
def test_compress_kept_and_float16_round_trip(capsys, tmp_path, weights, npz_file, epk_file):
    rc, out, err = run(capsys, "inspect", epk_file)
    assert rc == 0, err
    assert "format    .epk version 1" in out
    assert '"action":"float16"' in out  # the recipe
    for name in weights:
        assert name in out
    assert out.count(" ok") == len(weights)
    dst = tmp_path / "back.npz"
    rc, out, err = run(capsys, "decompress", epk_file, "-o", dst)
    assert rc == 0, err
    with np.load(dst) as z:
        assert sorted(z.files) == sorted(weights)
        for k, w in weights.items():
            expect = w.astype(np.float16).astype(np.float32) if k.endswith(".weight") else w
            np.testing.assert_array_equal(z[k], expect)


@needs_model
def test_compress_quiet_stdout_only_summary(capsys, tmp_path, npz_file):
    out_path = tmp_path / "k.epk"
    rc, out, err = run(capsys, "compress", npz_file, "-o", out_path, "--keep", "*", "-q")
    assert rc == 0
    assert err == ""  # not a terminal: no progress bar
    assert "all stored exactly" in out
    assert f"output       {out_path}" in out


@needs_model
def test_unused_keep_glob_warns_on_one_line(capsys, tmp_path, npz_file):
    rc, out, err = run(
        capsys, "compress", npz_file, "-o", tmp_path / "k.epk", "--keep", "*", "--keep", "zz*"
    )
    assert rc == 0
    assert err.startswith("edgepack: warning: recipe rule 'zz*'")
    assert len(err.strip().splitlines()) == 1


@needs_quant
def test_compress_default_recipe_summary_and_error_bound(capsys, tmp_path, weights, st_file):
    rc, out, err = run(capsys, "compress", st_file)
    assert rc == 0, err
    epk = tmp_path / "model.epk"  # default output: next to the input
    assert epk.exists()
    assert "worst 2 of 5 tensors by error" in out
    for key in (
        "size before",
        "size after",
        "ratio",
        "mean SNR",
        "worst SNR",
        f"output       {epk}",
    ):
        assert key in out
    rc, out, err = run(capsys, "verify", epk)
    assert rc == 0, err
    rc, out, err = run(capsys, "inspect", epk)
    assert rc == 0, err
    assert "int8" in out
    dst = tmp_path / "back.safetensors"
    rc, out, err = run(capsys, "decompress", epk, "-o", dst)
    assert rc == 0, err
    from safetensors.numpy import load_file

    back = load_file(str(dst))
    for name in ("blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight"):
        x = weights[name].astype(np.float64)
        scale = np.abs(x).max(axis=1, keepdims=True) / 127  # symmetric int8, per output channel
        err_ = np.abs(back[name] - x)
        assert np.all(err_ <= scale / 2 * (1 + 1e-5) + 1e-12), name
        assert not np.array_equal(back[name], weights[name])
    for name in ("blocks.0.attn.qkv.bias", "blocks.0.norm.weight", "head.weight"):
        np.testing.assert_array_equal(back[name], weights[name])


@needs_quant
def test_compress_int4_blocks_and_quantized_safetensors(capsys, tmp_path, weights, npz_file):
    out_path = tmp_path / "q4.epk"
    argv = ["compress", npz_file, "-o", out_path, "--bits", "4", "--block-size", "16"]
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    rc, out, err = run(capsys, "inspect", out_path)
    assert "block 16" in out and "4" in out
    dst = tmp_path / "q4.safetensors"
    rc, out, err = run(capsys, "decompress", out_path, "-o", dst, "--quantized")
    assert rc == 0, err
    from safetensors.numpy import load_file

    q = load_file(str(dst))
    name = "blocks.0.attn.qkv.weight"
    assert q[name].dtype in (np.int8, np.uint8)
    assert q[name].size == (96 * 40 + 1) // 2  # two 4-bit values per byte
    assert q[f"{name}.scale"].shape == (96, 3)  # ceil(40 / 16) blocks along the input dim
    # and the quantized form reads back
    rc, out, err = run(capsys, "verify", dst)
    assert rc == 0, err


@needs_quant
def test_compress_report_files(capsys, tmp_path, npz_file):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    for rep in (md, js):
        rc, out, err = run(capsys, "compress", npz_file, "-o", tmp_path / "x.epk", "--report", rep)
        assert rc == 0, err
        assert str(rep) in out
    assert md.read_text().startswith("| tensor |")
    doc = json.loads(js.read_text())
    assert len(doc["rows"]) == 5 and doc["totals"]["tensors"] == 5


@needs_prune
def test_compress_sparsity_prunes_exactly(capsys, tmp_path, weights, npz_file):
    out_path = tmp_path / "p.epk"
    rc, out, err = run(capsys, "compress", npz_file, "-o", out_path, "--sparsity", "0.5")
    assert rc == 0, err
    dst = tmp_path / "p.npz"
    assert run(capsys, "decompress", out_path, "-o", dst)[0] == 0
    with np.load(dst) as z:
        w = z["blocks.0.attn.qkv.weight"]
    n = w.size
    # at least round_half_even(0.5 * n) zeros (quantization may round a few more to zero)
    assert n - np.count_nonzero(w) >= round(0.5 * n)


@needs_prune
def test_compress_two_four_pattern(capsys, tmp_path, npz_file):
    out_path = tmp_path / "nm.epk"
    rc, out, err = run(capsys, "compress", npz_file, "-o", out_path, "--pattern", "2:4")
    assert rc == 0, err
    dst = tmp_path / "nm.npz"
    assert run(capsys, "decompress", out_path, "-o", dst)[0] == 0
    with np.load(dst) as z:
        w = z["blocks.0.attn.qkv.weight"]  # 40 columns: 10 groups of 4 per row
    nonzero_per_group = np.count_nonzero(w.reshape(96, 10, 4), axis=2)
    assert nonzero_per_group.max() <= 2


def test_compress_torch_checkpoint(capsys, tmp_path, weights):
    torch = pytest.importorskip("torch", reason="torch not installed (optional)")
    if not HAS_MODEL:
        pytest.skip("pending: edgepack.compress not in this build yet")
    p = tmp_path / "m.pt"
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, str(p))
    rc, out, err = run(capsys, "compress", p, "--keep", "*")
    assert rc == 0, err
    assert (tmp_path / "m.epk").exists()


# ---------------------------------------------------------------------------------------------
# demo


def test_demo_model_is_bundled_small_and_accurate():
    data = cli.demo_model()
    assert {"fc1.weight", "fc2.weight", "fc3.weight", "test.pixels", "test.labels"} <= set(data)
    assert data["fc1.weight"].shape == (128, 64) and data["fc1.weight"].dtype == np.float32
    assert len(data["test.labels"]) >= 300
    pixels, labels = data.pop("test.pixels"), data.pop("test.labels")
    # An independent forward pass (float64 einsum) agrees with demo_accuracy's.
    h = pixels / 16.0
    for i in (1, 2, 3):
        h = (
            np.einsum("ni,oi->no", h, data[f"fc{i}.weight"].astype(np.float64))
            + data[f"fc{i}.bias"]
        )
        h = np.maximum(h, 0) if i < 3 else h
    expect = float(np.mean(h.argmax(1) == labels))
    assert cli.demo_accuracy(data, pixels, labels) == pytest.approx(expect, abs=1 / len(labels))
    assert expect > 0.9
    path = Path(edgepack.__file__).parent / "data" / "digits_mlp.npz"
    assert path.stat().st_size < 200_000
    with zipfile.ZipFile(path) as z:  # plain arrays, loadable without pickle
        assert all(n.endswith(".npy") for n in z.namelist())


@needs_prune
def test_demo_prints_size_and_accuracy(capsys):
    rc, out, err = run(capsys, "demo")
    assert rc == 0, err
    assert "360 held-out samples" in out
    lines = {ln.split("  ")[0]: ln for ln in out.splitlines()}
    orig = lines["float32 original"]
    default = lines["default recipe: int8 per channel"]
    pruned = lines["50% pruning + int8 per channel"]
    acc = [float(ln.split("%")[0].split()[-1]) for ln in (orig, default, pruned)]
    assert all(0 < a <= 100 for a in acc)
    assert acc[0] - acc[1] <= 0.5  # the default recipe costs at most 0.5 points
    assert "pts" in default and "pts" in pruned
    assert "accuracy" in out


# ---------------------------------------------------------------------------------------------
# bench


def _bench_cases_present() -> bool:
    from edgepack import bench

    return any(importlib.util.find_spec(f"edgepack.bench.{a}") is not None for a in bench.AREAS)


@pytest.mark.skipif(
    not _bench_cases_present(), reason="pending: no edgepack.bench.<area> modules in this build yet"
)
def test_bench_quick_runs_and_writes_json(capsys, tmp_path):
    js = tmp_path / "b.json"
    rc, out, err = run(capsys, "bench", "--quick", "--json", js)
    assert rc == 0, err
    assert "| area | case | impl |" in out
    assert "machine:" in out and "command: edgepack bench --quick" in out
    doc = json.loads(js.read_text())
    assert doc["quick"] is True and doc["results"]
    assert {"area", "name", "impl", "seconds", "throughput", "unit"} <= set(doc["results"][0])


def test_bench_with_no_cases_is_an_environment_error(capsys, monkeypatch):
    from edgepack import bench

    monkeypatch.setattr(bench, "AREAS", ("no_such_area",))
    rc, out, err = run(capsys, "bench", "--quick")
    assert rc == 1
    assert "no benchmark cases" in one_line_error(err)


# ---------------------------------------------------------------------------------------------
# The installed console script and python -m edgepack, in subprocesses


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EDGEPACK_NUM_THREADS"}


def test_installed_console_script(tmp_path):
    exe = Path(sysconfig.get_path("scripts")) / ("edgepack.exe" if os.name == "nt" else "edgepack")
    assert exe.exists(), f"console script not installed at {exe} (pyproject [project.scripts])"
    r = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"edgepack {edgepack.__version__}"
    r = subprocess.run(
        [str(exe), "verify", str(tmp_path / "missing.epk")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stdout == ""
    assert one_line_error(r.stderr).startswith("edgepack: error: No such file or directory")
    r = subprocess.run(
        [str(exe), "compress"], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert r.returncode == 2


def test_python_dash_m_edgepack():
    r = subprocess.run(
        [sys.executable, "-m", "edgepack", "demo", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: edgepack demo")


@needs_model
def test_inspect_summarises_a_long_recipe():
    rules = tuple(edgepack.Rule(pattern=f"layer{i}.weight", bits=4) for i in range(50))
    line = cli._recipe_line(edgepack.Recipe(rules=rules))
    assert line.startswith("50 rules (default 'auto'")
    assert len(line) < 400
    short = edgepack.Recipe(rules=rules[:1])
    assert cli._recipe_line(short) == short.to_json()
    assert cli._recipe_line(None) == "(none)"


def test_summary_orders_worst_first_and_totals():
    from types import SimpleNamespace as NS

    def row(name, snr, before, after):
        return NS(
            name=name,
            shape=(4, 8),
            encoding="int8 axis 0",
            bits_per_weight=8 * after / 32,
            bytes_before=before,
            bytes_after=after,
            snr_db=snr,
            rel_error=0.01,
        )

    rows = (
        row("a", 30.0, 1000, 300),
        row("b", 10.0, 1000, 300),
        row("c", float("inf"), 500, 500),
        row("d", 20.0, 1000, 300),
    )
    report = NS(rows=rows, totals={"bytes_before": 3500, "bytes_after": 1400})
    text = cli._summary(report, 1750, Path("out.epk"), 1.5)
    table = text.split("\n\n")[0].splitlines()
    assert table[0].startswith("worst 3 of 4 tensors")
    assert [ln.split()[0] for ln in table[3:]] == ["b", "d", "a"]
    assert "ratio        2.00x (50.0% of the input)" in text
    assert "mean SNR     20.0 dB" in text
    assert "worst SNR    10.0 dB (b)" in text
    assert "tensors      4 (3 lossy, 1 exact)" in text
    assert text.rstrip().endswith("output       out.epk")


@needs_quant
def test_compress_plot_when_matplotlib_is_installed(capsys, tmp_path, npz_file):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    png = tmp_path / "layers.png"
    rc, out, err = run(capsys, "compress", npz_file, "-o", tmp_path / "p.epk", "--plot", png)
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot         {png}" in out


def test_decompress_counts_tensors_by_the_dtype_written(capsys, tmp_path, rng):
    m = edgepack.compress(
        {
            "w": rng.standard_t(3, size=(64, 64)).astype(np.float32),
            "h": rng.standard_normal(8).astype(np.float16),
            "ids": np.arange(7, dtype=np.int64),
        }
    )
    src = tmp_path / "m.epk"
    m.save(src)
    rc, out, err = run(capsys, "decompress", src, "-o", tmp_path / "back.npz")
    assert rc == 0, err
    assert "(2 float32, 1 int64 tensors," in out
    with np.load(tmp_path / "back.npz") as z:
        assert z["ids"].dtype == np.int64 and z["h"].dtype == np.float32


def test_help_says_what_bits_4_does_by_default(capsys):
    assert cli.main(["compress", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "blocks of 32 along the input dim with --bits 4" in out
