#!/usr/bin/env python3
"""Regenerate ``python/edgepack/data/digits_mlp.npz``, the demo model bundled in the wheel.

A small real network: a 64-128-64-10 ReLU MLP trained (seeded) by scikit-learn's
``MLPClassifier`` on its bundled 8x8 digits data (no download). The file holds the float32
weights in PyTorch's ``(out, in)`` layout and the biases, plus the held-out test split
(pixel values 0..16 as uint8, labels as uint8), so ``edgepack demo`` can measure accuracy with
a numpy forward pass and without scikit-learn::

    x = pixels / 16
    h = relu(x @ fc1.weight.T + fc1.bias); h = relu(h @ fc2.weight.T + fc2.bias)
    predicted = argmax(h @ fc3.weight.T + fc3.bias)

Run from the repository root: ``python scripts/make_demo_model.py`` (needs scikit-learn).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

SEED = 0
HIDDEN = (128, 64)
TEST_FRACTION = 0.2
OUT = Path(__file__).resolve().parents[1] / "python" / "edgepack" / "data" / "digits_mlp.npz"


def main() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args()

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data,
        digits.target,
        test_size=TEST_FRACTION,
        random_state=SEED,
        stratify=digits.target,
    )
    clf = MLPClassifier(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        alpha=1e-4,
        max_iter=400,
        random_state=SEED,
    )
    clf.fit(x_train / 16.0, y_train)

    arrays: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True), start=1):
        arrays[f"fc{i}.weight"] = np.ascontiguousarray(w.T, dtype=np.float32)  # (out, in)
        arrays[f"fc{i}.bias"] = b.astype(np.float32)
    arrays["test.pixels"] = x_test.astype(np.uint8)  # digits pixels are integers 0..16
    arrays["test.labels"] = y_test.astype(np.uint8)

    # Accuracy of our own numpy forward pass must equal scikit-learn's on the same data.
    h = x_test.astype(np.float32) / 16
    for i in (1, 2, 3):
        h = h @ arrays[f"fc{i}.weight"].T + arrays[f"fc{i}.bias"]
        if i < 3:
            h = np.maximum(h, 0)
    ours = float(np.mean(h.argmax(1) == y_test))
    theirs = float(clf.score(x_test / 16.0, y_test))
    assert abs(ours - theirs) < 1e-9, (ours, theirs)

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(buf.getvalue())
    print(
        f"wrote {args.output} ({len(buf.getvalue())} bytes); "
        f"{len(y_test)} held-out samples, accuracy {ours:.2%}"
    )


if __name__ == "__main__":
    main()
