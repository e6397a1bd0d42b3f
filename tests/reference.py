"""Numpy oracles: the independent definition of every result edgepack computes.

Each function states the formula in plain numpy, written from the specs (ONNX operators,
TFLite and PyTorch conventions), never from edgepack's own code. Tests compare edgepack
against these, or against a peer library when it is installed.
"""

from __future__ import annotations

import numpy as np
