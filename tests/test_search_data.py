"""Data loaders: MAGIC (real, in ../shared), jets layout on files the test writes, user CSV/NPZ, seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from codesign.search.data import DataError, load_dataset, load_jets, load_magic, load_table, split
from codesign.search.space import parse_space

JET_CLASSES = ["g", "q", "t", "w", "z"]


def test_magic_loader_real_file():
    path = shared_path("data", "magic", "magic04.data")
    x, y, classes = load_magic(path)
    assert x.shape == (19020, 10) and x.dtype == np.float32
    assert classes == ["g", "h"] and np.bincount(y).tolist() == [12332, 6688]  # UCI: 12332 gamma, 6688 hadron
    assert x[0, 0] == pytest.approx(28.7967) and x[0, 9] == pytest.approx(81.8828)


def test_magic_split_is_seeded_and_standardised():
    shared_path("data", "magic", "magic04.data")
    spec = parse_space({"data": {"dataset": "magic", "seed": 3}}).data
    a, b = load_dataset(spec), load_dataset(spec)
    assert a.x_train.shape == (15216, 10) and a.x_val.shape == (3804, 10)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(a.x_train.std(axis=0), 1, atol=1e-3)
    other = load_dataset(parse_space({"data": {"dataset": "magic", "seed": 4}}).data)
    assert not np.array_equal(a.y_val, other.y_val)


def _jets(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 16)).astype(np.float32), [JET_CLASSES[i % 5] for i in range(n)]


def test_jets_csv_with_header(tmp_path):
    x, labels = _jets(50)
    names = [f"f{i}" for i in range(16)]
    lines = [",".join(names + ["class"])] + [",".join([f"{v:.6f}" for v in row] + [lab]) for row, lab in zip(x, labels)]
    (tmp_path / "jets.csv").write_text("\n".join(lines) + "\n")
    xs, y, classes = load_jets(tmp_path / "jets.csv")
    assert xs.shape == (50, 16) and classes == JET_CLASSES
    np.testing.assert_allclose(xs, x, atol=1e-6)
    assert [classes[i] for i in y] == labels


def test_jets_arff_and_headerless_csv(tmp_path):
    x, labels = _jets(20, seed=1)
    attrs = "\n".join(f"@attribute f{i} numeric" for i in range(16))
    rows = "\n".join(",".join([f"{v:.6f}" for v in r] + [f"'{lab}'"]) for r, lab in zip(x, labels))
    (tmp_path / "jets.arff").write_text(f"@relation jets\n{attrs}\n@attribute class {{g,q,t,w,z}}\n@data\n{rows}\n")
    xa, ya, ca = load_jets(tmp_path / "jets.arff")
    (tmp_path / "plain.csv").write_text(
        "\n".join(",".join([f"{v:.6f}" for v in r] + [lab]) for r, lab in zip(x, labels))
    )
    xc, yc, cc = load_jets(tmp_path / "plain.csv")
    np.testing.assert_array_equal(xa, xc)
    np.testing.assert_array_equal(ya, yc)
    assert ca == cc == JET_CLASSES


def test_jets_wrong_layout_is_refused(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2,3,g\n4,5,6,q\n")
    with pytest.raises(DataError, match="the jet set has 16 features, this file has 3"):
        load_jets(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="no such file"):
        load_jets(tmp_path / "missing.csv")


def test_user_csv_and_npz_named_label(tmp_path):
    (tmp_path / "d.csv").write_text("a,target,b\n1,yes,2\n3,no,4\n5,yes,6\n")
    x, y, classes = load_table(tmp_path / "d.csv", "target")
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]] and classes == ["no", "yes"] and y.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="no column named 'label'"):
        load_table(tmp_path / "d.csv", "label")
    np.savez(tmp_path / "d.npz", x=np.arange(12, dtype=np.float32).reshape(6, 2), y=np.array([0, 1, 2, 0, 1, 2]))
    x, y, classes = load_table(tmp_path / "d.npz", "y")
    assert x.shape == (6, 2) and classes == ["0", "1", "2"] and y.tolist() == [0, 1, 2, 0, 1, 2]
    spec = parse_space(
        {"data": {"dataset": "npz", "path": str(tmp_path / "d.npz"), "label": "y", "val_fraction": 0.5}}
    ).data
    ds = load_dataset(spec)
    assert ds.n_features == 2 and ds.n_classes == 3 and len(ds.y_val) == 3


def test_split_rejects_mismatch():
    with pytest.raises(DataError, match="5 feature rows but 4 labels"):
        split(np.zeros((5, 2)), np.zeros(4), ["a"], name="t")


def test_user_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["a"] = np.array([1.0, 2.0, 3.0, 4.0])
        f["b"] = np.array([5.0, 6.0, 7.0, 8.0])
        f["kind"] = np.array([b"x", b"y", b"x", b"y"])
    x, y, classes = load_table(tmp_path / "d.h5", "kind")
    assert x.tolist() == [[1, 5], [2, 6], [3, 7], [4, 8]] and y.tolist() == [0, 1, 0, 1] and len(classes) == 2
    spec = parse_space(
        {"data": {"dataset": "hdf5", "path": str(tmp_path / "d.h5"), "label": "kind", "val_fraction": 0.5}}
    )
    assert load_dataset(spec.data).n_features == 2
