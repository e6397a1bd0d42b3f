"""Helpers to take .epk files apart and put (possibly hostile) ones together in tests."""

from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"\x89EPK\r\n\x1a\n"

def split(b: bytes) -> tuple[dict, bytes]:
    """(header dict, data section bytes) of a valid file."""
    (n,) = struct.unpack("<Q", b[16:24])
    header = json.loads(b[24 : 24 + n])
    start = -(-(24 + n) // 64) * 64
    return header, b[start:]

def build(header: dict | str | bytes, data: bytes, *, version: int = 1, flags: int = 0,
          header_len: int | None = None) -> bytes:
    """A file from a header (dict -> compact sorted JSON, or raw text/bytes) and data."""
    if isinstance(header, dict):
        hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    elif isinstance(header, str):
        hb = header.encode()
    else:
        hb = header
    n = len(hb) if header_len is None else header_len
    out = MAGIC + struct.pack("<IIQ", version, flags, n) + hb
    out += b"\0" * (-len(out) % 64)
    return out + data

def payload_spans(header: dict) -> list[tuple[str, str, int, int]]:
    """(tensor, role, offset, length) in file order."""
    return [(t["name"], p["role"], p["offset"], p["length"]) for t in header["tensors"] for p in t["payloads"]]

def u8(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)
