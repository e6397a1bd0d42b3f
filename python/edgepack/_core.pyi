# Hand-written stub of the native module (src/python/). Checked against the build with
# `python -m mypy.stubtest edgepack._core` (CI runs it).

import os
from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "build_info",
    "get_num_threads",
    "set_num_threads",
    "release_buffers",
    # .epk file format (src/python/format.rs)
    "EpkReader",
    "EpkWriter",
    "epk_validate",
    "safetensors_header",
    "check_json",
    "error_sums",
    # quantize / dequantize
    "dequantize_linear",
    "dynamic_quantize_linear",
    "quantize",
    "quantize_linear",
    # pruning and sparse storage
    "prune_magnitude_mask",
    "prune_nm_mask",
    "prune_block_mask",
    "prune_channel_mask",
    "SparseTensorCore",
    # int8 matmul
    "PackedMatrix",
    "_pack_matrix",
    "_matmul_integer",
    "_matmul_integer_b",
    "_qlinear_matmul",
    "_linear_forward",
    "_linear_forward_q8",
    # calibration statistics (src/python/calib_stats.rs)
    "CalibrationStatsCore",
    # calibration solvers (src/python/calib.rs)
    "gptq",
    "sparsegpt",
    "calib_objective",
    "hqq",
    "smoothquant_scales",
    "awq_search",
    "awq_scales",
    "awq_clip",
]

def build_info() -> dict[str, object]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

# --- .epk file format (src/python/format.rs) ---
@final
class EpkReader:
    def __new__(cls, path: str | os.PathLike[str]) -> EpkReader: ...
    @property
    def path(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    def header_json(self, recipe: bool = True) -> str: ...
    def recipe_json(self) -> str: ...
    def payload(self, tensor: str, role: str) -> npt.NDArray[np.uint8]: ...
    def save(self, dest: str | os.PathLike[str]) -> None: ...
    def verify(self) -> None: ...

@final
class EpkWriter:
    def __new__(cls, path: str | os.PathLike[str]) -> EpkWriter: ...
    def add(
        self,
        name: str,
        dtype: str,
        shape: list[int],
        encoding: str,
        params_json: str,
        stats_json: str | None,
        payloads: list[tuple[str, str, list[int], npt.NDArray[np.uint8]]],
        zstd_level: int | None = None,
    ) -> None: ...
    def finish(self, metadata: dict[str, str], recipe_json: str | None = None) -> None: ...
    def abort(self) -> None: ...

def epk_validate(data: bytes) -> str: ...
def safetensors_header(
    path: str | os.PathLike[str],
) -> tuple[dict[str, str] | None, list[tuple[str, str, list[int], int, int]], int, int]: ...
def check_json(text: str, what: str) -> None: ...
def error_sums(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.float32]
) -> tuple[float, float, float, float, float, int]: ...
# ---- quantize / dequantize ----
def quantize_linear(
    x: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.int32] | None,
    dtype: str,
    axis: int,
    block_size: int,
    out: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.uint8]: ...
def dequantize_linear(
    q: npt.NDArray[np.uint8],
    dtype: str,
    shape: list[int],
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.int32] | None,
    axis: int,
    block_size: int,
    out: npt.NDArray[np.float32] | None = None,
    in_scale: npt.NDArray[np.float32] | None = None,
    in_axis: int = 0,
) -> npt.NDArray[np.float32]: ...
def dynamic_quantize_linear(
    x: npt.NDArray[np.float32], out: npt.NDArray[np.uint8] | None = None
) -> tuple[npt.NDArray[np.uint8], float, int]: ...
def quantize(
    x: npt.NDArray[np.float32],
    bits: int,
    symmetric: bool,
    axis: int | None,
    block_size: int | None,
    convention: str,
    reduce_range: bool,
    calibration: str,
    percentile: float | None,
    out: npt.NDArray[np.uint8] | None = None,
    scale_dtype: str = "float32",
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32], npt.NDArray[np.int32]]: ...
def release_buffers() -> int: ...

# --- pruning and sparse storage ---

def prune_magnitude_mask(
    x: npt.NDArray[np.float32],
    groups: int,
    sparsity: float,
    importance: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.bool_]: ...
def prune_nm_mask(
    x: npt.NDArray[np.float32], n: int, m: int, axis: int
) -> npt.NDArray[np.bool_]: ...
def prune_block_mask(
    x: npt.NDArray[np.float32], block: list[int], sparsity: float
) -> npt.NDArray[np.bool_]: ...
def prune_channel_mask(
    x: npt.NDArray[np.float32], channels: int, norm: str, sparsity: float
) -> npt.NDArray[np.bool_]: ...
@final
class SparseTensorCore:
    @staticmethod
    def encode(
        x: npt.NDArray[np.generic], dtype: str, mask: npt.NDArray[np.uint8] | None = None
    ) -> SparseTensorCore: ...
    @staticmethod
    def encode_nm(
        x: npt.NDArray[np.generic], dtype: str, n: int, m: int, axis: int
    ) -> SparseTensorCore: ...
    @staticmethod
    def from_bytes(buf: bytes) -> SparseTensorCore: ...
    def to_bytes(self, level: int = 1) -> bytes: ...
    def to_dense(self) -> npt.NDArray[np.generic]: ...
    def to_dense_into(self, out: npt.NDArray[np.generic]) -> None: ...
    def mask(self) -> npt.NDArray[np.uint8]: ...
    def values(self) -> npt.NDArray[np.generic]: ...
    def positions(self) -> npt.NDArray[np.uint8]: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def nnz(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def nm(self) -> tuple[int, int, int] | None: ...
# --- int8 matmul ---
@final
class PackedMatrix:
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def zero_point(self) -> int | npt.NDArray[np.int32] | None: ...

def _pack_matrix(b: npt.NDArray[np.uint8], b_signed: bool, b_zero_point: npt.NDArray[np.int64]) -> PackedMatrix: ...
def _matmul_integer(
    a: npt.NDArray[np.uint8],
    a_signed: bool,
    a_zero_point: npt.NDArray[np.int64],
    b: PackedMatrix,
    out: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.int32]: ...
def _matmul_integer_b(
    a: npt.NDArray[np.uint8],
    a_signed: bool,
    a_zero_point: npt.NDArray[np.int64],
    b: npt.NDArray[np.uint8],
    b_signed: bool,
    b_zero_point: npt.NDArray[np.int64],
    out: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.int32]: ...
def _qlinear_matmul(
    a: npt.NDArray[np.uint8],
    a_signed: bool,
    a_scale: float,
    a_zero_point: npt.NDArray[np.int64],
    b: PackedMatrix,
    b_scale: npt.NDArray[np.float32],
    y_scale: float,
    y_zero_point: int,
    y_signed: bool,
) -> npt.NDArray[np.uint8]: ...
def _linear_forward(
    x: npt.NDArray[np.float32],
    b: PackedMatrix,
    w_scale: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None,
    activations_mode: str,
    input_scale: float,
    input_zero_point: int,
) -> npt.NDArray[np.float32]: ...
def _linear_forward_q8(
    x: npt.NDArray[np.float32],
    b: PackedMatrix,
    w_scale: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None,
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    output_signed: bool,
) -> npt.NDArray[np.uint8]: ...

# --- calibration statistics (src/python/calib_stats.rs) ---
@final
class CalibrationStatsCore:
    def __new__(cls, full: bool = True) -> CalibrationStatsCore: ...
    @property
    def full(self) -> bool: ...
    def update(
        self,
        names: list[str],
        x: npt.NDArray[np.float32] | npt.NDArray[np.float64],
        layouts: list[str] | None = None,
    ) -> None: ...
    def names(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str, /) -> bool: ...
    def groups(self) -> list[list[str]]: ...
    def group(self, name: str) -> list[str]: ...
    def layout(self, name: str) -> str: ...
    def in_features(self, name: str) -> int: ...
    def count(self, name: str) -> int: ...
    def hessian(self, name: str) -> npt.NDArray[np.float64]: ...
    def channel_stats(self, name: str) -> dict[str, npt.NDArray[np.float64]]: ...
    def parts(
        self, name: str
    ) -> tuple[
        list[str],
        list[str],
        int,
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64] | None,
    ]: ...
    def insert_parts(
        self,
        names: list[str],
        layouts: list[str],
        count: int,
        sum: npt.NDArray[np.float64],
        sum_abs: npt.NDArray[np.float64],
        sum_sq: npt.NDArray[np.float64],
        max_abs: npt.NDArray[np.float64],
        xtx_packed: npt.NDArray[np.float64] | None = None,
    ) -> None: ...
    def merge(self, other: CalibrationStatsCore) -> None: ...

# --- calibration solvers (src/python/calib.rs) ---
def gptq(
    w: npt.NDArray[np.float32],
    h: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.int32] | None,
    row_block: int,
    col_block: int,
    qmin: int,
    qmax: int,
    damp: float = 0.01,
    act_order: bool = True,
    block: int = 128,
    precision: str = "float32",
) -> tuple[npt.NDArray[np.int32], float]: ...
def sparsegpt(
    w: npt.NDArray[np.float32],
    h: npt.NDArray[np.float64],
    sparsity: float,
    structure: str = "unstructured",
    n: int = 2,
    m: int = 4,
    block_shape: tuple[int, int] = ...,
    scale: npt.NDArray[np.float32] | None = None,
    zero_point: npt.NDArray[np.int32] | None = None,
    row_block: int = 0,
    col_block: int = 0,
    qmin: int = 0,
    qmax: int = 0,
    damp: float = 0.01,
    block: int = 128,
    precision: str = "float32",
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.int32] | None, float
]: ...
def calib_objective(
    w: npt.NDArray[np.float32], w_hat: npt.NDArray[np.float32], h: npt.NDArray[np.float64]
) -> float: ...
def hqq(
    w: npt.NDArray[np.float32],
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.int32] | None,
    row_block: int,
    col_block: int,
    qmin: int,
    qmax: int,
    iters: int = 20,
    p: float = 0.7,
    col_weight: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32] | None]: ...
def smoothquant_scales(
    act_max: npt.NDArray[np.float64], w: npt.NDArray[np.float32], alpha: float = 0.5
) -> npt.NDArray[np.float32]: ...
def awq_search(
    w: npt.NDArray[np.float32],
    in_axis: int,
    h: npt.NDArray[np.float64],
    mean_abs: npt.NDArray[np.float64],
    bits: int,
    symmetric: bool,
    axis: int | None,
    block_size: int | None,
    calibration: str = "minmax",
    percentile: float | None = None,
    n_grid: int = 20,
) -> tuple[npt.NDArray[np.float32], float, float, npt.NDArray[np.float64]]: ...
def awq_scales(mean_abs: npt.NDArray[np.float64], alpha: float) -> npt.NDArray[np.float32]: ...
def awq_clip(
    w: npt.NDArray[np.float32],
    h: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float32],
    zero_point: npt.NDArray[np.int32] | None,
    row_block: int,
    col_block: int,
    qmin: int,
    qmax: int,
    n_grid: int = 20,
    max_shrink: float = 0.5,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32] | None]: ...
