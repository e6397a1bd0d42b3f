# Hand-written stub of the native module (src/python/). Checked against the build with
# `python -m mypy.stubtest edgepack._core` (CI runs it).

__all__ = [
    "build_info",
    "get_num_threads",
    "set_num_threads",
    # quantize / dequantize (issue 2)
    "dequantize_linear",
    "dynamic_quantize_linear",
    "quantize",
    "quantize_linear",
]

import numpy as np
import numpy.typing as npt

def build_info() -> dict[str, object]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

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
