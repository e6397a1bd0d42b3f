"""edgepack: make trained networks small and fast enough for laptops, phones and edge boxes.

Arrays in, a small file out: exact int8/int4 quantization (bit-exact with ONNX
QuantizeLinear / DequantizeLinear), pruning with compact sparse storage, and fast int8
matrix multiplication, on a Rust core that picks the best SIMD kernels for the CPU at run time.
"""

from __future__ import annotations

from edgepack import _core, calibration, kernels, methods, prune, sparse
from edgepack._errors import (
    ArgumentError,
    DtypeError,
    EdgepackError,
    FormatError,
    LimitError,
    NonFiniteError,
)
from edgepack.calibration import CalibrationStats, collect_onnx, collect_torch
from edgepack.kernels import (
    PackedMatrix,
    dequantize_linear,
    dynamic_quantize_linear,
    matmul_integer,
    pack_matrix,
    qlinear_matmul,
    quantize_linear,
)
from edgepack.linear import QuantizedLinear
from edgepack.methods import awq, gptq, hqq, output_error, smoothquant_scales, sparsegpt
from edgepack.model import CompressedModel, compress, load
from edgepack.quantize import QuantizedTensor, dequantize, quantize
from edgepack.recipe import Recipe, Rule
from edgepack.report import Report

__version__: str = str(_core.build_info()["version"])


def build_info() -> dict[str, object]:
    """Facts about this build and this CPU.

    Returns a dict with ``version``, ``profile`` (``"release"`` or ``"debug"``),
    ``target_arch``, ``isa_detected`` (every instruction-set level this CPU supports, lowest
    first), ``isa`` (the level the kernels use: the best detected one, or the one
    ``EDGEPACK_ISA`` narrowed it to), ``num_threads``, ``spin_us`` (how long worker threads
    wait for the next call before they sleep, ``EDGEPACK_SPIN_US``) and ``buffer_cache_limit``
    (bytes of recycled result buffers kept between calls, see :func:`release_buffers`).
    """
    return dict(_core.build_info())


def set_num_threads(n: int) -> None:
    """Set how many threads kernels use (default: ``EDGEPACK_NUM_THREADS``, else all cores)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """How many threads kernels use."""
    return int(_core.get_num_threads())


def release_buffers() -> int:
    """Give the cached result buffers back to the operating system; returns the bytes freed.

    Results of 4 MiB and more (from ``quantize``, ``quantize_linear``, ``dequantize_linear``,
    ``dynamic_quantize_linear``, ``QuantizedTensor.dequantize``, ``matmul_integer`` and
    ``QuantizedLinear`` with float output) live in buffers that are
    recycled once the last array using them is freed, so the next large result does not pay
    the operating system's page faults again (a fresh 256 MiB result costs about 22 ms of
    faults, twice the dequantize itself), as onnxruntime's arena does. At most
    ``EDGEPACK_BUFFER_CACHE_MB`` MiB (default 256; 0 turns recycling off) are kept. Results
    never depend on the cache; only memory held between calls does.
    """
    return int(_core.release_buffers())


__all__ = [
    "__version__",
    "build_info",
    "set_num_threads",
    "get_num_threads",
    "release_buffers",
    "EdgepackError",
    "ArgumentError",
    "DtypeError",
    "NonFiniteError",
    "LimitError",
    "FormatError",
    # whole models: compress, load, the .epk file
    "compress",
    "load",
    "CompressedModel",
    "Recipe",
    "Rule",
    "Report",
    # quantize / dequantize
    "kernels",
    "quantize",
    "dequantize",
    "QuantizedTensor",
    "quantize_linear",
    "dequantize_linear",
    "dynamic_quantize_linear",
    # pruning and sparse storage
    "prune",
    "sparse",
    # int8 matmul and QuantizedLinear
    "PackedMatrix",
    "matmul_integer",
    "pack_matrix",
    "qlinear_matmul",
    "QuantizedLinear",
    # calibration-aware compression
    "calibration",
    "methods",
    "CalibrationStats",
    "collect_onnx",
    "collect_torch",
    "gptq",
    "awq",
    "sparsegpt",
    "hqq",
    "output_error",
    "smoothquant_scales",
]
