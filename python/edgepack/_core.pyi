# Hand-written stub of the native module (src/python/). Checked against the build with
# `python -m mypy.stubtest edgepack._core` (CI runs it).

__all__ = [
    "build_info",
    "get_num_threads",
    "set_num_threads",
    # int8 matmul (issue 3)
    "PackedMatrix",
    "_pack_matrix",
    "_matmul_integer",
    "_qlinear_matmul",
    "_linear_forward",
    "_linear_forward_q8",
]

from typing import final

import numpy as np
import numpy.typing as npt

def build_info() -> dict[str, object]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

# --- int8 matmul (issue 3) ---
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
