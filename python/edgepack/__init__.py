"""edgepack: make trained networks small and fast enough for laptops, phones and edge boxes.

Arrays in, a small file out: exact int8/int4 quantization (bit-exact with ONNX
QuantizeLinear / DequantizeLinear), pruning with compact sparse storage, and fast int8
matrix multiplication, on a Rust core that picks the best SIMD kernels for the CPU at run time.
"""

from __future__ import annotations

from edgepack import _core
from edgepack._errors import (
    ArgumentError,
    DtypeError,
    EdgepackError,
    FormatError,
    LimitError,
    NonFiniteError,
)


# --- whole-model compression (issue 5) ---
from edgepack.model import CompressedModel, compress, load
from edgepack.recipe import Recipe, Rule
from edgepack.report import Report
# ---- quantize / dequantize (issue 2) ----
from edgepack import kernels
from edgepack.kernels import dequantize_linear, dynamic_quantize_linear, quantize_linear
from edgepack.quantize import QuantizedTensor, dequantize, quantize
# --- int8 matmul and QuantizedLinear (issue 3) ---
from edgepack.kernels import PackedMatrix, matmul_integer, pack_matrix, qlinear_matmul
from edgepack.linear import QuantizedLinear

# --- end issue 3 ---

__version__: str = _core.build_info()["version"]

# --- pruning and sparse storage (issue 4) ---
from edgepack import prune, sparse  # noqa: E402


def build_info() -> dict[str, object]:
    """Facts about this build and this CPU.

    Returns a dict with ``version``, ``profile`` (``"release"`` or ``"debug"``),
    ``target_arch``, ``isa_detected`` (every instruction-set level this CPU supports, lowest
    first), ``isa`` (the level the kernels use: the best detected one, or the one
    ``EDGEPACK_ISA`` narrowed it to) and ``num_threads``.
    """
    return dict(_core.build_info())


def set_num_threads(n: int) -> None:
    """Set how many threads kernels use (default: ``EDGEPACK_NUM_THREADS``, else all cores)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """How many threads kernels use."""
    return int(_core.get_num_threads())


__all__ = [
    "__version__",
    "build_info",
    "set_num_threads",
    "get_num_threads",
    "EdgepackError",
    "ArgumentError",
    "DtypeError",
    "NonFiniteError",
    "LimitError",
    "FormatError",
    # issue 5
    "compress",
    "load",
    "CompressedModel",
    "Recipe",
    "Rule",
    "Report",
    # quantize / dequantize (issue 2)
    "kernels",
    "quantize",
    "dequantize",
    "QuantizedTensor",
    "quantize_linear",
    "dequantize_linear",
    "dynamic_quantize_linear",
    # issue 4
    "prune",
    "sparse",
    # int8 matmul and QuantizedLinear (issue 3)
    "PackedMatrix",
    "matmul_integer",
    "pack_matrix",
    "qlinear_matmul",
    "QuantizedLinear",
]
