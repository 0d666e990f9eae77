"""Data sets the search and the tests use, loaded once as numpy arrays."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def load_mnist_idx(images: str | Path, labels: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST idx files (optionally gzipped) -> (uint8 images N x 28 x 28, int64 labels)."""

    def _read(path: str | Path) -> bytes:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            return f.read()

    raw_x, raw_y = _read(images), _read(labels)
    if int.from_bytes(raw_x[:4], "big") != 2051 or int.from_bytes(raw_y[:4], "big") != 2049:
        raise ValueError("not MNIST idx files (bad magic number)")
    n, rows, cols = (int.from_bytes(raw_x[4 + 4 * k : 8 + 4 * k], "big") for k in range(3))
    x = np.frombuffer(raw_x, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    y = np.frombuffer(raw_y, dtype=np.uint8, offset=8).astype(np.int64)
    return x, y
