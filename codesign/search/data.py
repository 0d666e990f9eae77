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


# ----------------------------------------------------------------------------- tabular sets

import csv
import os
import urllib.request
from dataclasses import dataclass

from codesign.errors import CodesignError


class DataError(CodesignError):
    """A data file is missing, unreadable or not in the expected layout."""


#: patches generated for ``dataset: bragg`` unless ``max_rows`` says otherwise
BRAGG_ROWS = 20000

#: OpenML data set id of the hls4ml LHC jet high-level-feature set (16 features, 5 classes).
JETS_OPENML_ID = 42468
JETS_FEATURES = 16


@dataclass
class Dataset:
    """Train/validation arrays (standardised with train statistics) and their sizes."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    #: "classification" (int labels, accuracy) or "regression" (float targets, R^2)
    task: str = "classification"
    #: what the search's "accuracy" is: "" = the task's default (accuracy / R^2), or "distance" =
    #: minus the mean Euclidean distance between predicted and true coordinates (Bragg peaks, pixels)
    metric: str = ""

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        """Output units: one per class, or one per regression target (a (N, T) target has T)."""
        if self.regression:
            return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])
        return len(self.classes)

    @property
    def score(self) -> str:
        """How outputs are scored: accuracy, r2 or distance."""
        return self.metric or ("r2" if self.regression else "accuracy")

    @property
    def regression(self) -> bool:
        return self.task == "regression"


def shared_data_dir() -> Path:
    """``$CODESIGN_SHARED/data`` or ``../shared/data`` next to the checkout."""
    root = os.environ.get("CODESIGN_SHARED") or str(Path(__file__).resolve().parents[3] / "shared")
    return Path(root) / "data"


def _labels(raw: list[str] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class labels of any type -> int64 indices into the sorted class names."""
    raw = np.asarray(raw)
    classes, y = np.unique(raw.astype(str), return_inverse=True)
    return y.astype(np.int64), [str(c) for c in classes]


def load_magic(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """UCI MAGIC gamma telescope: CSV without header, 10 float features, label g/h."""
    path = Path(path) if path else shared_data_dir() / "magic" / "magic04.data"
    rows = _read_csv_rows(path)
    try:
        x = np.asarray([[float(v) for v in r[:10]] for r in rows if r], dtype=np.float32)
        raw = [r[10].strip() for r in rows if r]
    except (ValueError, IndexError):
        raise DataError(f"{path}: not the MAGIC layout (10 numeric features + label g/h per line)") from None
    if set(raw) - {"g", "h"}:
        raise DataError(f"{path}: MAGIC labels must be g or h, found {sorted(set(raw) - {'g', 'h'})[:3]}")
    y, classes = _labels(raw)
    return x, y, classes


def _read_csv_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, newline="") as f:
            return [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def load_table(path: str | Path, label: str, task: str = "classification") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A user CSV (header row), NPZ or HDF5 with a named label column; every other column is a feature.

    For ``task="regression"`` the label column is a float target (classes: ``[]``).
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return _load_npz(path, label, task)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _load_hdf5(path, label, task)
    rows = _read_csv_rows(path)
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if label not in header:
        raise DataError(
            f"{path}: no column named {label!r} (columns: {', '.join(header[:8])}{'...' if len(header) > 8 else ''})"
        )
    li = header.index(label)
    try:
        x = np.asarray([[float(v) for j, v in enumerate(r) if j != li] for r in body], dtype=np.float32)
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric feature value ({exc})") from None
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{path}: no feature rows")
    y, classes = _targets([r[li].strip() for r in body], task, path)
    return x, y, classes


def _targets(raw: list[str] | np.ndarray, task: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """Class indices + names, or float regression targets (no classes)."""
    if task != "regression":
        return _labels(raw)
    try:
        return np.asarray(raw, dtype=np.float32).reshape(-1), []
    except ValueError:
        raise DataError(f"{path}: regression targets must be numeric") from None


def _load_npz(path: Path, label: str, task: str = "classification") -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    return _from_arrays(path, arrays, label, task)


def _load_hdf5(path: Path, label: str, task: str = "classification") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """HDF5 with top-level datasets laid out as in an .npz (needs h5py)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path}: reading HDF5 needs h5py (pip install h5py)") from None
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: np.asarray(f[k]) for k in f if isinstance(f[k], h5py.Dataset)}
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    return _from_arrays(path, arrays, label, task)


def _from_arrays(
    path: Path, arrays: dict[str, np.ndarray], label: str, task: str = "classification"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Label array by name; features from 'x'/'X'/'features' or every 1-D column of the same length."""
    if label not in arrays:
        raise DataError(f"{path}: no array named {label!r} (arrays: {', '.join(sorted(arrays))})")
    y, classes = _targets(arrays.pop(label), task, path)
    key = next((k for k in ("x", "X", "features") if k in arrays), None)
    if key is not None:
        x = arrays[key].reshape(len(y), -1)
    else:
        cols = [arrays[k] for k in sorted(arrays) if arrays[k].shape == (len(y),)]
        if not cols:
            raise DataError(f"{path}: no feature array ('x') and no 1-D feature columns of length {len(y)}")
        x = np.stack(cols, axis=1)
    return x.astype(np.float32), y, classes


def _parse_arff(text: str) -> tuple[np.ndarray, list[str]]:
    """Numeric ARFF with a final nominal class attribute -> (features, label strings)."""
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip().lower() == "@data":
            break
    else:
        raise DataError("not an ARFF file (no @data section)")
    feats, labels = [], []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("%"):
            continue
        parts = [p.strip().strip("'\"") for p in line.split(",")]
        feats.append([float(v) for v in parts[:-1]])
        labels.append(parts[-1])
    return np.asarray(feats, dtype=np.float32), labels


def load_jets(
    path: str | Path | None = None, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """hls4ml LHC jet HLF set: a user CSV/ARFF/NPZ (16 features + label), else OpenML 42468 (downloaded once, cached)."""
    if path is not None:
        path = Path(path)
        if path.suffix.lower() == ".arff":
            if not path.is_file():
                raise DataError(f"{path}: no such file")
            x, raw = _parse_arff(path.read_text())
            y, classes = _labels(raw)
        elif path.suffix.lower() == ".npz":
            x, y, classes = _load_npz(path, "class")
        else:
            x, y, classes = _jets_csv(path)
        if x.shape[1] != JETS_FEATURES:
            raise DataError(f"{path}: the jet set has {JETS_FEATURES} features, this file has {x.shape[1]}")
        return x, y, classes
    cache = (
        Path(cache_dir or os.environ.get("CODESIGN_CACHE", Path.home() / ".cache" / "codesign"))
        / "hls4ml_lhc_jets_hlf.npz"
    )
    if not cache.is_file():
        _download_jets(cache)
    with np.load(cache) as f:
        return f["x"], f["y"], [str(c) for c in f["classes"]]


def _jets_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rows = _read_csv_rows(path)
    has_header = not _is_number(rows[0][0])
    if has_header:
        header = [h.strip() for h in rows[0]]
        return load_table(path, "class" if "class" in header else header[-1])
    try:
        x = np.asarray([[float(v) for v in r[:-1]] for r in rows], dtype=np.float32)
    except ValueError:
        raise DataError(f"{path}: expected {JETS_FEATURES} numeric features + a label per line") from None
    y, classes = _labels([r[-1].strip() for r in rows])
    return x, y, classes


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _download_jets(cache: Path) -> None:
    """Fetch the ARFF from OpenML once and store it as .npz (atomic rename)."""
    meta_url = f"https://www.openml.org/api/v1/json/data/{JETS_OPENML_ID}"
    try:
        import json

        with urllib.request.urlopen(meta_url, timeout=60) as r:
            file_id = json.load(r)["data_set_description"]["file_id"]
        with urllib.request.urlopen(f"https://www.openml.org/data/v1/download/{file_id}", timeout=600) as r:
            text = r.read().decode()
    except Exception as exc:
        raise DataError(
            f"cannot download OpenML data set {JETS_OPENML_ID} ({type(exc).__name__}); pass a local file with 16 features + label"
        ) from None
    x, raw = _parse_arff(text)
    y, classes = _labels(raw)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x=x, y=y, classes=np.asarray(classes))
    os.replace(tmp, cache)


def split(
    x: np.ndarray, y: np.ndarray, classes: list[str], val_fraction: float = 0.2, seed: int = 0,
    max_rows: int | None = None, name: str = "data", task: str = "classification", scale_target: bool = True,
) -> Dataset:  # fmt: skip
    """Seeded shuffle, train/validation split, standardisation with the train statistics
    (of the features; for regression of the target too, which R^2 does not see)."""
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} feature rows but {len(y)} labels")
    order = np.random.default_rng(seed).permutation(len(x))
    if max_rows is not None:
        order = order[:max_rows]
    n_val = max(1, round(len(order) * val_fraction))
    if len(order) - n_val < 1:
        raise DataError(f"{name}: too few rows ({len(order)}) for a train/validation split")
    val, train = order[:n_val], order[n_val:]
    x = x.reshape(len(x), -1).astype(np.float32)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    xs = (x - mean) / std
    if task == "regression" and not scale_target:
        y = y.astype(np.float32)
    elif task == "regression":
        y = y.astype(np.float32)
        y_std = float(y[train].std()) or 1.0
        y = (y - float(y[train].mean())) / y_std
    return Dataset(name, xs[train], y[train], xs[val], y[val], classes, task)


def load_dataset(spec: object) -> Dataset:
    """A search space's ``data`` section -> Dataset (deterministic for a given seed)."""
    kind, path = spec.dataset, spec.path
    if kind == "bragg":  # generated (codesign.search.bragg); targets stay in pixels: the score is a distance
        from codesign.search.bragg import bragg_patches

        x, y = bragg_patches(spec.max_rows or BRAGG_ROWS, seed=spec.seed)
        data = split(x, y, [], spec.val_fraction, spec.seed, name=kind, task="regression", scale_target=False)
        data.metric = "distance"
        return data
    if kind == "magic":
        x, y, classes = load_magic(path)
    elif kind == "jets":
        x, y, classes = load_jets(path)
    elif kind == "mnist":
        folder = Path(path) if path else shared_data_dir() / "mnist"
        images, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
        if not images.is_file() or not labels.is_file():
            raise DataError(f"{folder}: needs t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
        xi, y = load_mnist_idx(images, labels)
        x, classes = xi.reshape(len(xi), -1).astype(np.float32) / 255.0, [str(i) for i in range(10)]
    else:
        x, y, classes = load_table(path, spec.label, spec.task)
    if spec.task == "regression":
        return split(x, y, [], spec.val_fraction, spec.seed, spec.max_rows, name=kind, task="regression")
    if len(classes) < 2:
        raise DataError(f"{kind}: needs at least two classes, found {len(classes)}")
    return split(x, y, classes, spec.val_fraction, spec.seed, spec.max_rows, name=kind)
