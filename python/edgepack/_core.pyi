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
    # issue 5
    "EpkReader",
    "EpkWriter",
    "epk_copy",
    "epk_validate",
    # quantize / dequantize (issue 2)
    "dequantize_linear",
    "dynamic_quantize_linear",
    "quantize",
    "quantize_linear",
]

def build_info() -> dict[str, object]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

# --- .epk file format (issue 5, src/python/format.rs) ---
@final
class EpkReader:
    def __new__(cls, path: str | os.PathLike[str]) -> EpkReader: ...
    @property
    def path(self) -> str: ...
    @property
    def nbytes(self) -> int: ...
    def header_json(self) -> str: ...
    def payload(self, tensor: str, role: str) -> npt.NDArray[np.uint8]: ...
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

def epk_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None: ...
def epk_validate(data: bytes) -> str: ...
# ---- quantize / dequantize (issue 2) ----
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
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32], npt.NDArray[np.int32]]: ...
