"""The ``edgepack`` command line (also ``python -m edgepack``).

A thin layer over the Python API: every command parses its options, calls the public functions
(:func:`edgepack.compress`, :func:`edgepack.load`, the benchmark harness in
:mod:`edgepack.bench`) and prints what they return. Exit codes: 0 success, 1 a problem with
the input or the environment (one line on stderr, the traceback only with ``--debug``),
2 a usage error (argparse's message).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

__all__ = ["main"]

PROG = "edgepack"

# Worst layers shown in the compress summary.
WORST_ROWS = 10


class UsageError(Exception):
    """A combination of options that argparse alone cannot reject (exit code 2)."""


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def _human_bytes(n: float) -> str:
    """1234567 -> '1.23 MB' (decimal units, like the sizes the benchmarks report)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _fmt_db(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == math.inf:
        return "exact"
    return f"{x:.1f}"


def _fmt_num(x: float | None, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def _term(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (ESC, BEL, CR, ...), format
    characters (bidi overrides such as U+202E, zero-width joiners) and line / paragraph
    separators are shown as escapes, so a name or metadata value from a file can neither
    drive the terminal nor make one line look like another."""
    import unicodedata

    out = []
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"):
            o = ord(c)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        else:
            out.append(c)
    return "".join(out)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> str:
    """A plain aligned text table (columns in ``right`` are right-aligned); cells are escaped
    for the terminal (:func:`_term`)."""
    rows = [[_term(str(c)) for c in r] for r in rows]
    right = set(right)
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def _shape(s: Any) -> str:
    return "x".join(str(int(d)) for d in s) if len(s) else "scalar"


# --------------------------------------------------------------------------------------------
# Progress bar (stderr, only on a terminal)
# --------------------------------------------------------------------------------------------


class ProgressBar:
    """Progress on stderr: tensors done, bytes, elapsed time and rate.

    Passed to :func:`edgepack.compress` as ``progress=``, which calls it as
    ``progress(done, total, name)`` after each tensor; the bytes come from ``sizes`` (the
    input's tensor sizes by name, read from its index before compressing). Draws nothing
    unless ``enabled`` (stderr is a terminal and ``--quiet`` was not given); redraws at most
    10 times a second, and always for the last tensor.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        enabled: bool,
        sizes: Mapping[str, int] | None = None,
        label: str = "compressing",
    ) -> None:
        self.stream = stream
        self.enabled = enabled
        self.sizes = dict(sizes or {})
        self.bytes_total = sum(self.sizes.values())
        self.bytes_done = 0
        self.label = label
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int, name: str = "") -> None:
        self.bytes_done += self.sizes.get(name, 0)
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self.stream.write(self.render(done, total, now - self.start))
        self.stream.flush()
        self._drawn = True

    def render(self, done: int, total: int, elapsed: float) -> str:
        """One redraw of the bar (carriage return first, erase to the end of the line)."""
        rate = self.bytes_done / elapsed if elapsed > 0 else 0.0
        frac = done / total if total else 1.0
        width = 24
        filled = int(round(frac * width))
        bar = "#" * filled + "." * (width - filled)
        size = _human_bytes(self.bytes_done)
        if self.bytes_total:
            size += f"/{_human_bytes(self.bytes_total)}"
        return (
            f"\r{self.label} [{bar}] {done}/{total} tensors  {size}  "
            f"{elapsed:.1f}s  {_human_bytes(rate)}/s\x1b[K"
        )

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------------------------


def _sparsity(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), found {text!r}") from None
    if not (0.0 <= v < 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), found {text}")
    return v


def _pattern(text: str) -> tuple[int, int]:
    parts = text.split(":")
    try:
        n, m = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N:M with integers 0 < N < M (e.g. 2:4), found {text!r}"
        ) from None
    if not (0 < n < m):
        raise argparse.ArgumentTypeError(f"expected N:M with 0 < N < M (e.g. 2:4), found {text!r}")
    return n, m


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {v}")
    return v


# --------------------------------------------------------------------------------------------
# compress
# --------------------------------------------------------------------------------------------

_RECIPE_FLAGS = ("bits", "granularity", "block_size", "affine", "sparsity", "pattern")
#: Recipe-level options (Recipe fields): they combine with the per-tensor flags above.
_RECIPE_LEVEL = (
    "method", "budget_bits", "budget_sparsity", "sparsity_method", "awq", "scale_dtype"
)


def _default_output(path: Path) -> Path:
    """``model.safetensors`` -> ``model.epk`` (next to the input)."""
    return path.with_suffix(".epk")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of an input checkpoint, as its index describes it (nothing loaded)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def input_index(path: str | os.PathLike[str]) -> list[TensorEntry]:
    """Names, dtypes, shapes and sizes of the tensors in a checkpoint, read from its index:
    the safetensors header, the ``.npy`` headers inside an ``.npz`` (no data is read), or a
    PyTorch state dict (memory-mapped by torch)."""
    import zipfile

    import numpy as np

    from edgepack.io import ST_CODES, open_source, read_safetensors_header

    p = os.fspath(path)
    if p.lower().endswith(".safetensors"):
        header, _, _ = read_safetensors_header(p)
        out = []
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            out.append(TensorEntry(name, ST_CODES[info["dtype"]], tuple(info["shape"]), e - b))
        return sorted(out, key=lambda t: t.name)
    if p.lower().endswith(".npz"):
        with open(p, "rb"):  # the OS error, with the path
            pass
        out = []
        try:
            with zipfile.ZipFile(p) as z:
                for info in z.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    with z.open(info) as f:
                        version = np.lib.format.read_magic(f)
                        read = (
                            np.lib.format.read_array_header_1_0
                            if version == (1, 0)
                            else np.lib.format.read_array_header_2_0
                        )
                        shape, _, dtype = read(f)
                    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    out.append(TensorEntry(info.filename[:-4], dtype.name, tuple(shape), n))
        except (zipfile.BadZipFile, ValueError) as e:
            from edgepack import FormatError

            raise FormatError(f"{p}: not a readable .npz file ({e})") from e
        return sorted(out, key=lambda t: t.name)
    src = open_source(p)  # PyTorch checkpoints (memory-mapped)
    try:
        out = []
        for name in src.names:
            a = src.load(name)
            out.append(TensorEntry(name, a.dtype.name, tuple(a.shape), int(a.nbytes)))
        return out
    finally:
        src.close()


def _glob_escape(name: str) -> str:
    """A glob (``fnmatch``) pattern that matches exactly ``name``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _check_recipe_options(args: argparse.Namespace) -> list[str]:
    """Reject contradictory recipe options (usage errors); return the recipe flags given."""
    given = [f for f in _RECIPE_FLAGS if getattr(args, f) not in (None, False)]
    level = [f for f in _RECIPE_LEVEL if getattr(args, f, None) is not None]
    if args.recipe is not None and (given or level):
        flags = ", ".join("--" + f.replace("_", "-") for f in given + level)
        raise UsageError(f"--recipe cannot be combined with {flags} (put them in the recipe)")
    sm = getattr(args, "sparsity_method", None)
    if sm is not None and args.sparsity is None:
        raise UsageError("--sparsity-method goes with --sparsity S")
    if getattr(args, "calibration", None) is None:
        needs = []
        if getattr(args, "method", None) in ("gptq", "awq"):
            needs.append(f"--method {args.method}")
        if getattr(args, "awq", None):
            needs.append("--awq")
        if sm in ("sparsegpt", "wanda"):
            needs.append(f"--sparsity-method {sm}")
        if getattr(args, "budget_sparsity", None) is not None:
            needs.append("--budget-sparsity")
        if needs:
            raise UsageError(
                f"{', '.join(needs)} needs --calibration STATS (make one with 'edgepack calibrate')"
            )
    if args.block_size is not None and args.granularity not in (None, "block"):
        raise UsageError(
            f"--block-size needs --granularity block, found --granularity {args.granularity}"
        )
    if args.sparsity is not None and args.pattern is not None:
        raise UsageError("--sparsity and --pattern are two pruning methods: give one")
    return given


def _recipe_from_args(args: argparse.Namespace, index: Sequence[TensorEntry]) -> Any:
    """The :class:`edgepack.Recipe` the options ask for (``None``: the default recipe).

    ``--bits`` / ``--granularity`` / ``--block-size`` / ``--affine`` / ``--sparsity`` /
    ``--pattern`` change how the tensors the default recipe quantizes are encoded (float
    tensors with at least 2 dimensions and ``min_elements`` elements); everything else is
    still kept. A recipe's rules select by name only, so those tensors get one rule each
    (their exact names, in the recipe stored in the file). ``--keep`` globs come first.
    """
    import dataclasses

    import edgepack
    from edgepack.io import FLOAT_NAMES

    given = _check_recipe_options(args)
    keep = [edgepack.Rule(pattern=g, action="keep") for g in args.keep]
    if args.recipe is not None:
        recipe = edgepack.Recipe.load(args.recipe)
        if keep:
            recipe = dataclasses.replace(recipe, rules=(*keep, *recipe.rules))
        return recipe
    top: dict[str, Any] = {}
    if getattr(args, "method", None) is not None:
        top["method"] = args.method
    if getattr(args, "awq", None):
        top["awq"] = True
    if getattr(args, "budget_bits", None) is not None:
        top["budget_bits"] = args.budget_bits
    if getattr(args, "budget_sparsity", None) is not None:
        top["budget_sparsity"] = args.budget_sparsity
    if getattr(args, "scale_dtype", None) is not None:
        top["scale_dtype"] = args.scale_dtype
    if not given:
        return edgepack.Recipe(rules=tuple(keep), **top) if keep or top else None
    settings: dict[str, Any] = {"bits": args.bits or 8, "symmetric": not args.affine}
    if args.granularity is not None:
        settings["granularity"] = args.granularity
    if args.block_size is not None:
        settings["block_size"] = args.block_size
    if args.sparsity:
        settings.update(sparsity=args.sparsity, sparsity_method=args.sparsity_method or "magnitude")
    if args.pattern is not None:
        n, m = args.pattern
        settings.update(sparsity=1 - n / m, sparsity_method="nm", n=n, m=m)
    base = edgepack.Recipe()
    rules = list(keep)
    for t in index:
        if any(fnmatch.fnmatchcase(t.name, r.pattern) for r in keep):
            continue
        size = math.prod(t.shape)
        if t.dtype in FLOAT_NAMES and len(t.shape) >= 2 and size >= base.min_elements:
            rules.append(edgepack.Rule(pattern=_glob_escape(t.name), **settings))
    return edgepack.Recipe(rules=tuple(rules), **top)


def _summary(report: Any, file_bytes: int | None, out_path: Path | None, elapsed: float) -> str:
    """The table ``edgepack compress`` prints: worst tensors by SNR, then the totals."""
    rows = list(report.rows)
    lossy = [r for r in rows if r.snr_db is not None and r.snr_db != math.inf]
    lossy.sort(key=lambda r: (r.snr_db, r.name))
    worst = lossy[:WORST_ROWS]
    calibrated = any(getattr(r, "output_snr_db", None) is not None for r in rows)
    lines: list[str] = []
    if worst:
        lines.append(f"worst {len(worst)} of {len(rows)} tensors by error (lowest SNR first):")
        lines.append(
            _table(
                ["tensor", "shape", "encoding", "bits/w", "before", "after", "SNR dB", "rel err"]
                + (["out SNR dB"] if calibrated else []),
                [
                    [
                        r.name,
                        _shape(r.shape),
                        r.encoding,
                        _fmt_num(r.bits_per_weight, ".2f"),
                        _human_bytes(r.bytes_before),
                        _human_bytes(r.bytes_after),
                        _fmt_db(r.snr_db),
                        _fmt_num(r.rel_error, ".2e"),
                    ]
                    + ([_fmt_db(r.output_snr_db)] if calibrated else [])
                    for r in worst
                ],
                right=range(3, 9 if calibrated else 8),
            )
        )
    else:
        lines.append(f"{len(rows)} tensors, all stored exactly (nothing was quantized or pruned)")
    lines.append("")
    totals = report.totals
    before = int(totals["bytes_before"])
    after = int(file_bytes if file_bytes is not None else totals["bytes_after"])
    snrs = [r.snr_db for r in lossy]
    ratio = (
        f"{before / after:.2f}x ({after / before:.1%} of the input)" if before and after else "-"
    )
    tot = [
        ("tensors", f"{len(rows)} ({len(lossy)} lossy, {len(rows) - len(lossy)} exact)"),
        ("size before", f"{_human_bytes(before)} ({before:,} bytes of tensors)"),
        ("size after", f"{_human_bytes(after)} ({after:,} bytes, the whole file)"),
        ("ratio", ratio),
        ("mean SNR", f"{sum(snrs) / len(snrs):.1f} dB over the lossy tensors" if snrs else "-"),
        ("worst SNR", f"{min(snrs):.1f} dB ({lossy[0].name})" if snrs else "-"),
        ("time", f"{elapsed:.2f} s"),
    ]
    if out_path is not None:
        tot.append(("output", str(out_path)))
    w = max(len(k) for k, _ in tot)
    lines.extend(f"{k.ljust(w)}  {v}" for k, v in tot)
    return "\n".join(lines)


class EnvironmentProblem(Exception):
    """Something missing from the environment (an optional package): exit code 1."""


def _check_readable(path: Path) -> None:
    """Raise the OS error (with the path) when ``path`` cannot be opened for reading."""
    with open(path, "rb"):
        pass


def _check_writable_dir(path: Path) -> None:
    """Fail before the work starts when ``path``'s folder does not exist or is not writable."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(2, "No such directory", str(parent))
    if not os.access(parent, os.W_OK):
        raise PermissionError(13, "Permission denied", str(parent))


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _write_text_atomic(path: Path, text: str) -> None:
    from edgepack.io import atomic_output

    with atomic_output(path, "tmp") as f:
        f.write((text if text.endswith("\n") else text + "\n").encode("utf-8"))


def _warn_to_stderr(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def cmd_compress(args: argparse.Namespace) -> int:
    import warnings

    import edgepack

    src = Path(args.input)
    out = Path(args.output) if args.output else _default_output(src)
    if out.suffix != ".epk":
        raise UsageError(f"-o/--output must end in .epk, found {str(out)!r}")
    if args.report is not None and Path(args.report).suffix.lower() not in (".md", ".json"):
        raise UsageError(f"--report must end in .md or .json, found {args.report!r}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise EnvironmentProblem(
                "--plot needs matplotlib, which is not installed (pip install matplotlib)"
            ) from None
    if out.resolve() == src.resolve():
        raise UsageError(f"the output {str(out)!r} would overwrite the input")
    _check_recipe_options(args)
    _check_readable(src)
    for dest in (out, args.report, args.plot):
        if dest is not None:
            _check_writable_dir(Path(dest))
    index = input_index(src)
    recipe = _recipe_from_args(args, index)
    calibration = None
    if args.calibration is not None:
        _check_readable(Path(args.calibration))
        calibration = edgepack.CalibrationStats.load(args.calibration)
    if args.threads is not None:
        edgepack.set_num_threads(args.threads)
    bar = ProgressBar(
        sys.stderr,
        enabled=not args.quiet and _isatty(sys.stderr),
        sizes={t.name: t.nbytes for t in index},
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _warn_to_stderr
        try:
            model = edgepack.compress(
                str(src), recipe, progress=bar, out=str(out), calibration=calibration
            )
        finally:
            bar.close()
    elapsed = time.perf_counter() - t0
    report = model.report()
    if args.report is not None:
        text = report.to_json() if args.report.lower().endswith(".json") else report.to_markdown()
        _write_text_atomic(Path(args.report), text)
    if args.plot is not None:
        report.plot(args.plot)
    print(_summary(report, model.nbytes, out, elapsed))
    if args.report is not None:
        print(f"report       {args.report}")
    if args.plot is not None:
        print(f"plot         {args.plot}")
    return 0


# --------------------------------------------------------------------------------------------
# calibrate
# --------------------------------------------------------------------------------------------


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from edgepack.calibration import collect_onnx

    src = Path(args.model)
    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise UsageError(f"-o/--output must end in .safetensors, found {str(out)!r}")
    _check_readable(src)
    _check_readable(Path(args.feeds))
    _check_writable_dir(out)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise EnvironmentProblem(
            "calibrate needs onnx and onnxruntime (pip install 'edgepack[onnx]')"
        ) from None
    with np.load(args.feeds, allow_pickle=False) as z:
        feeds = {k: np.asarray(z[k]) for k in z.files}
    if not feeds:
        raise UsageError(f"--feeds {args.feeds!r} holds no arrays")
    rows = {k: (v.shape[0] if v.ndim else 0) for k, v in feeds.items()}
    if len(set(rows.values())) != 1 or not next(iter(rows.values())):
        raise UsageError(
            f"--feeds arrays must share a non-empty batch axis 0, found {rows}"
        )
    n = next(iter(rows.values()))
    bs = args.batch_size
    batches = ({k: v[i : i + bs] for k, v in feeds.items()} for i in range(0, n, bs))
    t0 = time.perf_counter()
    if args.token_mask is not None and args.token_mask not in feeds:
        raise UsageError(
            f"--token-mask {args.token_mask!r} is not in --feeds (it has {sorted(feeds)})"
        )
    stats = collect_onnx(str(src), batches, full=not args.no_full, token_mask=args.token_mask)
    stats.save(out)
    elapsed = time.perf_counter() - t0
    names = stats.names()
    print(
        f"{len(names)} layers, {n} samples in batches of {bs}, "
        f"{'X^T X and ' if stats.full else ''}per-channel statistics -> {out} "
        f"({_human_bytes(out.stat().st_size)}, {elapsed:.2f} s)"
    )
    return 0


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def demo_model() -> dict[str, Any]:
    """The bundled demo network and its held-out data, as a dict of numpy arrays.

    A 64-128-64-10 ReLU MLP trained (seeded) on scikit-learn's 8x8 digits, weights in
    PyTorch's ``(out, in)`` layout (``fc1.weight``, ``fc1.bias``, ...), plus ``test.pixels``
    (uint8 0..16, 360 x 64) and ``test.labels``. Regenerated by ``scripts/make_demo_model.py``.
    """
    from importlib.resources import files

    import numpy as np

    with files("edgepack").joinpath("data/digits_mlp.npz").open("rb") as f:
        with np.load(f) as z:
            return {k: z[k] for k in z.files}


def demo_accuracy(weights: Mapping[str, Any], pixels: Any, labels: Any) -> float:
    """Accuracy of the demo MLP's numpy forward pass:
    ``argmax(relu(relu(x @ W1.T + b1) @ W2.T + b2) @ W3.T + b3)`` with ``x = pixels / 16``."""
    import numpy as np

    h = pixels.astype(np.float32) / np.float32(16)
    n_layers = sum(1 for k in weights if k.endswith(".weight"))
    for i in range(1, n_layers + 1):
        w = np.asarray(weights[f"fc{i}.weight"], dtype=np.float32)
        b = np.asarray(weights[f"fc{i}.bias"], dtype=np.float32)
        h = h @ w.T + b
        if i < n_layers:
            h = np.maximum(h, 0)
    return float(np.mean(h.argmax(axis=1) == labels))


#: The recipes ``edgepack demo`` shows: (label, recipe as a dict; None = the default recipe).
DEMO_RECIPES: tuple[tuple[str, dict[str, Any] | None], ...] = (
    ("default recipe: int8 per channel", None),
    (
        "50% pruning + int8 per channel",
        {"rules": [{"pattern": "*.weight", "sparsity": 0.5, "sparsity_method": "magnitude"}]},
    ),
)


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    import edgepack

    data = demo_model()
    pixels, labels = data.pop("test.pixels"), data.pop("test.labels")
    weights = data
    base_bytes = sum(int(w.nbytes) for w in weights.values())
    base_acc = demo_accuracy(weights, pixels, labels)
    n_params = sum(int(w.size) for w in weights.values())
    n_layers = sum(1 for k in weights if k.endswith(".weight"))
    dims = [weights["fc1.weight"].shape[1]] + [
        weights[f"fc{i}.weight"].shape[0] for i in range(1, n_layers + 1)
    ]
    print(
        f"demo model: {'-'.join(map(str, dims))} MLP trained on scikit-learn's digits "
        f"({n_params:,} float32 parameters), {len(labels)} held-out samples"
    )
    rows = [["float32 original", _human_bytes(base_bytes), "1.00x", f"{base_acc:.2%}", ""]]
    with tempfile.TemporaryDirectory(prefix="edgepack-demo-") as tmp:
        for i, (label, recipe_dict) in enumerate(DEMO_RECIPES):
            recipe = None if recipe_dict is None else edgepack.Recipe.from_dict(recipe_dict)
            path = Path(tmp) / f"demo{i}.epk"
            model = edgepack.compress(weights, recipe, out=str(path))
            size = model.nbytes
            restored = edgepack.load(str(path)).decompress()
            acc = demo_accuracy(restored, pixels, labels)
            rows.append(
                [
                    label,
                    _human_bytes(size),
                    f"{base_bytes / size:.2f}x",
                    f"{acc:.2%}",
                    f"{(acc - base_acc) * 100:+.2f} pts",
                ]
            )
            del model
    print()
    print(_table(["model", "size", "ratio", "accuracy", "change"], rows, right=(1, 2, 3, 4)))
    print()
    print("Original size: the float32 tensors; compressed sizes: whole .epk files (header and")
    print("checksums included). Accuracy: a numpy forward pass over the held-out digits with the")
    print("weights decompressed from the file.")
    return 0


# --------------------------------------------------------------------------------------------
# inspect / verify / decompress
# --------------------------------------------------------------------------------------------


def _format_line(path: Path) -> str:
    """What kind of file ``path`` is, from its first bytes (``edgepack.load`` validated it)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
    if head[:8] == b"\x89EPK\r\n\x1a\n" and len(head) == 12:
        return f".epk version {struct.unpack('<I', head[8:12])[0]}"
    from edgepack.io import read_safetensors_header

    md = read_safetensors_header(str(path))[0].get("__metadata__") or {}
    version = md.get("edgepack.format_version", "1")
    return f"safetensors form of an .epk file (FORMAT.md section 10), version {version}"


def _recipe_line(recipe: Any, limit: int = 400) -> str:
    """The recipe as compact JSON, or a summary when that is longer than ``limit``."""
    if recipe is None:
        return "(none)"
    text: str = recipe.to_json()
    if len(text) <= limit:
        return text
    rules = recipe.rules
    shown = ", ".join(json.dumps(r.to_dict(), sort_keys=True) for r in rules[:3])
    return (
        f"{len(rules)} rules (default {recipe.default!r}, min_elements {recipe.min_elements}, "
        f"zstd_level {recipe.zstd_level}); first: {shown}, ..."
    )


def cmd_inspect(args: argparse.Namespace) -> int:
    import edgepack

    path = Path(args.file)
    _check_readable(path)
    model = edgepack.load(str(path))
    report = model.report()
    print(f"file      {path} ({path.stat().st_size:,} bytes)")
    print(f"format    {_format_line(path)}")
    meta = model.metadata
    print("metadata  " + _term(", ".join(f"{k}={v}" for k, v in sorted(meta.items())) or "(none)"))
    recipe = model.recipe
    print("recipe    " + _term(_recipe_line(recipe)))
    rows = []
    problems: list[str] = []
    for name in model.names:
        info = model.info(name)
        try:
            model[name]  # reads the payloads: checksums first, then the decoding checks
            status = "ok"
        except (ValueError, TypeError) as e:  # keep listing; the exit code says it failed
            status = "BAD"
            problems.append(f"{name}: {_describe(e)}")
        r = report[name]
        rows.append(
            [
                name,
                r.encoding,
                info.dtype,
                _shape(info.shape),
                f"{info.stored_bytes:,}",
                _fmt_db(r.snr_db),
                status,
            ]
        )
    print(f"tensors   {len(rows)}")
    print()
    headers = ["name", "encoding", "dtype", "shape", "bytes", "SNR dB", "checksum"]
    print(_table(headers, rows, right=(4, 5)))
    if problems:
        print(f"{PROG}: {path}: {len(problems)} tensor(s) failed their checks:", file=sys.stderr)
        for p in problems:
            print(f"  {_term(p)}", file=sys.stderr)
        return 1
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import edgepack

    path = Path(args.file)
    _check_readable(path)
    try:
        model = edgepack.load(str(path))  # structure: preamble, header, layout
        model.verify()  # every payload's checksum (and its zstd frame)
        for name in model.names:
            model[name]  # every tensor decodes (scales, sparse streams, shapes)
    except (ValueError, TypeError) as e:  # FormatError and friends: the first problem
        if getattr(args, "debug", False):
            raise
        msg = _describe(e)
        if not msg.startswith(f"{path}:"):
            msg = f"{path}: {msg}"
        print(f"{PROG}: verify failed: {msg}", file=sys.stderr)
        return 1
    print(f"{path}: ok ({len(model.names)} tensors; structure, checksums and encodings checked)")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    import edgepack

    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in (".safetensors", ".npz"):
        raise UsageError(f"-o must end in .safetensors or .npz, found {args.output!r}")
    if args.quantized and suffix != ".safetensors":
        raise UsageError("--quantized writes the safetensors form: use -o OUT.safetensors")
    _check_readable(Path(args.file))
    model = edgepack.load(str(Path(args.file)))
    if suffix == ".safetensors":
        model.to_safetensors(str(out), dequantize=not args.quantized)
    else:
        from edgepack.io import write_npz

        # Tensor by tensor (memory bounded by the largest), every name as it is.
        write_npz(str(out), model.names, model.decompress)
    if args.quantized:
        kind = f"{len(model.names)} stored tensors with scales"
    else:
        # Float tensors come out as float32 (whatever they were stored as); the others as
        # they are (e.g. int64 position ids).
        counts: dict[str, int] = {}
        for n in model.names:
            dt = model.info(n).dtype
            dt = "float32" if dt in ("float64", "float32", "float16", "bfloat16") else dt
            counts[dt] = counts.get(dt, 0) + 1
        kind = ", ".join(f"{c} {dt}" for dt, c in sorted(counts.items(), key=lambda t: -t[1]))
        kind += " tensors"
    print(f"wrote {out} ({kind}, {_human_bytes(out.stat().st_size)})")
    return 0


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    import platform

    import edgepack

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = edgepack.build_info()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": info.get("isa"),
        "threads": info.get("num_threads"),
        "edgepack": info.get("version"),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from edgepack import bench

    verbose = _isatty(sys.stderr)
    min_time = 0.05 if args.quick else 0.3
    results = []
    n_cases = 0
    t0 = time.perf_counter()
    # One area at a time: its inputs (up to a 1 GiB checkpoint for "model") are built by
    # collect() and freed before the next area's, so memory stays at one area's worth.
    for area in bench.AREAS:
        cases = bench.collect([area], quick=args.quick)
        for i, case in enumerate(cases, 1):
            if verbose:
                sys.stderr.write(f"\r[{area} {i}/{len(cases)}] {case.name}\x1b[K")
                sys.stderr.flush()
            results.extend(bench.run([case], min_time=min_time))
        n_cases += len(cases)
        del cases
    if verbose:
        sys.stderr.write("\r\x1b[K")
    if not n_cases:
        raise EnvironmentProblem("no benchmark cases found in edgepack.bench")
    machine = _machine()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, ISA {machine['isa']}, "
        f"edgepack {machine['edgepack']}, {machine['date']}"
    )
    print(f"command: edgepack bench{' --quick' if args.quick else ''}")
    print()
    print(bench.format_table(results))
    print()
    print(f"{n_cases} cases in {time.perf_counter() - t0:.1f} s")
    if args.json is not None:
        doc = {
            "machine": machine,
            "quick": bool(args.quick),
            "results": [asdict(r) for r in results],
        }
        _write_text_atomic(Path(args.json), json.dumps(doc, indent=2))
        print(f"json: {args.json}")
    return 0


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if self.prog.endswith(" compress") and "INPUT" in message:
            message += (
                " (--keep takes every following word as a glob: put INPUT first, "
                "or end the globs with --)"
            )
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback when something fails",
    )


COMMANDS: dict[str, tuple[str, str]] = {
    "compress": (
        "compress a checkpoint into an .epk file and print a per-layer error summary",
        "examples:\n"
        "  edgepack compress model.safetensors                 # int8 per channel -> model.epk\n"
        "  edgepack compress model.pt -o small.epk --bits 4 --granularity block --block-size 32\n"
        "  edgepack compress model.npz --sparsity 0.5 --keep 'lm_head.*' --report report.md",
    ),
    "calibrate": (
        "record the activations entering an ONNX model's MatMul / Gemm layers into a statistics file",
        "example:\n"
        "  edgepack calibrate model.onnx --feeds calib.npz -o stats.safetensors\n"
        "  edgepack compress weights.safetensors --calibration stats.safetensors --method gptq",
    ),
    "demo": (
        "compress the bundled digits MLP and show size and accuracy before and after",
        "example:\n  edgepack demo",
    ),
    "inspect": (
        "show an .epk file's format version, metadata, recipe and tensors",
        "example:\n  edgepack inspect model.epk",
    ),
    "decompress": (
        "write an .epk file's tensors back as float32 (or quantized) safetensors or npz",
        "examples:\n"
        "  edgepack decompress model.epk -o model.safetensors\n"
        "  edgepack decompress model.epk -o weights.npz\n"
        "  edgepack decompress model.epk -o model.int8.safetensors --quantized",
    ),
    "verify": (
        "check every checksum and the structure of an .epk file (exit 0 or 1)",
        "example:\n  edgepack verify model.epk && echo intact",
    ),
    "bench": (
        "time edgepack's kernels next to numpy (and onnxruntime / torch when installed)",
        "examples:\n  edgepack bench --quick\n  edgepack bench --json results.json",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``edgepack`` command."""
    import edgepack

    parser = _Parser(
        prog=PROG,
        formatter_class=_Formatter,
        description="Quantize, prune and pack trained networks into small, verified files.",
        epilog="examples:\n"
        "  edgepack demo                        # see it work on a bundled model\n"
        "  edgepack compress model.safetensors  # int8 per channel -> model.epk\n"
        "  edgepack verify model.epk\n\n"
        f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {edgepack.__version__}")
    _add_debug(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str) -> argparse.ArgumentParser:
        help_, epilog = COMMANDS[name]
        p = sub.add_parser(
            name,
            help=help_,
            description=help_[0].upper() + help_[1:] + ".",
            epilog=epilog,
            formatter_class=_Formatter,
        )
        _add_debug(p)
        return p

    p = add("compress")
    p.add_argument(
        "input", metavar="INPUT", help="a .safetensors, .npz or PyTorch (.pt/.pth/.bin) checkpoint"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUTPUT",
        help="the .epk file to write (default: INPUT with suffix .epk)",
    )
    p.add_argument("--bits", type=int, choices=(8, 4), help="bits per quantized weight (default 8)")
    p.add_argument(
        "--granularity",
        choices=("tensor", "channel", "block"),
        help="one scale per tensor, per output channel, or per block (default: per output "
        "channel with 8 bits, blocks of 32 along the input dim with --bits 4)",
    )
    p.add_argument(
        "--block-size",
        type=_positive_int,
        metavar="N",
        help="block length for --granularity block (default 32)",
    )
    p.add_argument(
        "--affine",
        action="store_true",
        help="asymmetric quantization with a zero point (default symmetric)",
    )
    p.add_argument(
        "--scale-dtype",
        choices=("float32", "float16"),
        help="how scales are stored (default float32); float16 halves their bytes: 4-bit "
        "blocks of 32 cost 4.5 bits per weight instead of 5",
    )
    p.add_argument(
        "--sparsity",
        type=_sparsity,
        metavar="S",
        help="prune this fraction of each weight by magnitude, 0 <= S < 1",
    )
    p.add_argument(
        "--pattern", type=_pattern, metavar="N:M", help="prune to N of every M weights (e.g. 2:4)"
    )
    p.add_argument(
        "--sparsity-method",
        choices=("magnitude", "sparsegpt", "wanda"),
        help="how --sparsity chooses the pruned weights (default magnitude; sparsegpt and "
        "wanda need --calibration)",
    )
    p.add_argument(
        "--calibration",
        metavar="STATS",
        help="activation statistics from 'edgepack calibrate' (a .safetensors file), for the "
        "calibrated methods and the output-error column",
    )
    p.add_argument(
        "--method",
        choices=("rtn", "gptq", "hqq", "awq"),
        help="how quantized values are chosen: rtn (round to nearest, default), gptq "
        "(needs --calibration), hqq (data-free), awq (rtn after AWQ scaling; needs "
        "--calibration)",
    )
    p.add_argument(
        "--awq",
        action="store_true",
        default=None,
        help="AWQ: scale each input channel by its searched mean|x|^alpha before the method "
        "quantizes (e.g. --method gptq --awq); the file stores the scale (format version 2); "
        "needs --calibration",
    )
    p.add_argument(
        "--budget-bits",
        type=float,
        metavar="B",
        help="average bits per quantized weight (scales included): each tensor gets int8 or "
        "int4 in blocks of 16-128, whichever minimises the total error (e.g. 4.5)",
    )
    p.add_argument(
        "--budget-sparsity",
        type=_sparsity,
        metavar="S",
        help="prune this fraction of the calibrated layers' weights, per-layer sparsities "
        "chosen from the statistics (needs --calibration)",
    )
    p.add_argument(
        "--keep",
        action="extend",
        nargs="+",
        metavar="GLOB",
        default=[],
        help="leave tensors matching these globs untouched (repeatable)",
    )
    p.add_argument(
        "--recipe", metavar="FILE", help="a JSON or TOML recipe (instead of the options above)"
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        help="write the per-layer report as Markdown (.md) or JSON (.json)",
    )
    p.add_argument(
        "--plot", metavar="FILE.png", help="plot per-layer error and size (needs matplotlib)"
    )
    p.add_argument(
        "--threads", type=_positive_int, metavar="N", help="worker threads (default: all cores)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compress)

    p = add("demo")
    p.set_defaults(func=cmd_demo)

    p = add("calibrate")
    p.add_argument("model", metavar="MODEL", help="an ONNX model (.onnx; needs onnx + onnxruntime)")
    p.add_argument(
        "--feeds",
        metavar="FEEDS",
        required=True,
        help="an .npz of example inputs, one array per model input (by name); axis 0 is the "
        "batch and is cut into --batch-size pieces",
    )
    p.add_argument(
        "-o", "--output", metavar="STATS", required=True, help="the statistics file (.safetensors)"
    )
    p.add_argument(
        "--batch-size", type=_positive_int, metavar="N", default=16, help="rows per run (16)"
    )
    p.add_argument(
        "--token-mask",
        metavar="INPUT",
        help="a model input (e.g. attention_mask) whose zeros mark padding positions, which are "
        "then not recorded",
    )
    p.add_argument(
        "--no-full",
        action="store_true",
        help="keep only per-channel vectors, not X^T X (for layers too wide for in^2 floats; "
        "enough for wanda and the bit budget, not for gptq / sparsegpt)",
    )
    p.set_defaults(func=cmd_calibrate)

    p = add("inspect")
    p.add_argument("file", metavar="FILE", help="an .epk file")
    p.set_defaults(func=cmd_inspect)

    p = add("decompress")
    p.add_argument("file", metavar="FILE", help="an .epk file")
    p.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="OUT.safetensors or OUT.npz"
    )
    p.add_argument(
        "--quantized",
        action="store_true",
        help="keep int8/int4 data with NAME.scale / NAME.zero_point tensors (safetensors only)",
    )
    p.set_defaults(func=cmd_decompress)

    p = add("verify")
    p.add_argument("file", metavar="FILE", help="an .epk file")
    p.set_defaults(func=cmd_verify)

    p = add("bench")
    p.add_argument(
        "--quick", action="store_true", help="small sizes, short timings (under a minute)"
    )
    p.add_argument(
        "--json", metavar="FILE", help="also write the results and the machine line as JSON"
    )
    p.set_defaults(func=cmd_bench)
    return parser


# --------------------------------------------------------------------------------------------
# Errors and the entry point
# --------------------------------------------------------------------------------------------


def _describe(e: BaseException) -> str:
    """One line saying what went wrong (the exception's own message and its notes)."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        msg = f"{e.strerror}: {e.filename!r}"
    elif isinstance(e, ModuleNotFoundError) and e.name:
        msg = f"{e} (install the package that provides {e.name!r})"
    else:
        msg = str(e) or type(e).__name__
    notes = getattr(e, "__notes__", None) or []
    if notes:
        msg += " (" + "; ".join(notes) + ")"
    msg = _term(" ".join(msg.split()))
    # One line, never a copy of a hostile file's contents.
    return msg if len(msg) <= 2000 else f"{msg[:2000]}... ({len(msg)} characters)"


_EXPECTED = (OSError, ValueError, TypeError, ImportError, MemoryError, EnvironmentProblem)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``edgepack`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        parser = build_parser()
    except Exception as e:  # the package itself cannot be imported
        print(f"{PROG}: error: {_describe(e)}", file=sys.stderr)
        return 1
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    debug = getattr(args, "debug", False)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except UsageError as e:
        sub = f"{PROG} {args.command}"
        print(f"{sub}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): not an error worth a message.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0
    except Exception as e:
        if debug:
            traceback.print_exc()
        elif isinstance(e, _EXPECTED):
            print(f"{PROG}: error: {_describe(e)}", file=sys.stderr)
        else:
            print(
                f"{PROG}: internal error: {type(e).__name__}: {_describe(e)} "
                "(run again with --debug for the traceback, and please report it)",
                file=sys.stderr,
            )
        return 1


def _entry() -> None:  # pragma: no cover - used by __main__
    sys.exit(main())
