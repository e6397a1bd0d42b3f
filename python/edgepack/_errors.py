"""The edgepack exception hierarchy.

The Rust core maps its one error enum onto these classes (``src/python/errors.rs``); the
Python layer raises the same classes for what it checks itself. Each is also a builtin
``ValueError`` / ``TypeError``, so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "EdgepackError",
    "ArgumentError",
    "DtypeError",
    "NonFiniteError",
    "LimitError",
    "FormatError",
]


class EdgepackError(Exception):
    """Base class of every error edgepack raises itself (I/O errors stay ``OSError``)."""


class ArgumentError(EdgepackError, ValueError):
    """An argument has a wrong value or shape."""


class DtypeError(EdgepackError, TypeError):
    """An argument has a wrong type or dtype."""


class NonFiniteError(ArgumentError):
    """Data from which something is derived contains NaN or an infinity."""


class LimitError(ArgumentError):
    """A size is beyond what can be computed exactly or allocated (checked before allocating)."""


class FormatError(EdgepackError, ValueError):
    """A file or buffer is corrupt, truncated, or not an edgepack file."""
