"""Knowledge distillation in the local stage: the float twin teaches the quantized / pruned students."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from conftest import ROOT
from typer.testing import CliRunner

pytest.importorskip("brevitas")
pytest.importorskip("optuna")

from helpers import toy_npz

from codesign.search import local as local_mod
from codesign.search.data import Dataset, load_dataset
from codesign.search.distill import DistillSpec, Teacher, kd_loss, teacher_hparams
from codesign.search.local import LocalSearchError, LocalSpec, LocalStore, run_local
from codesign.search.run import run_search
from codesign.search.space import parse_space

KD = {"alpha": 0.7, "temperature": 4.0}
FAST = {"bits": [3], "tpe_trials": 1, "epochs": [3], "batch_size": [128], "learning_rate": [0.01], "l1": [0.0],
        "dropout": [0.0], "prune_rounds": 1, "rewind_epoch": 1}  # fmt: skip


def _space(tmp_path) -> dict:
    return {
        "name": "toy_kd", "data": {"dataset": "npz", "path": str(toy_npz(tmp_path, 1200)), "label": "label"},
        "model": {"layers": {"min": 1, "max": 2}, "width": [8, 16], "activation": ["relu"], "norm": ["none"],
                  "dropout": [0.0], "bits": [8]},
        "training": {"epochs": 1, "batch_size": 128, "learning_rate": [0.01]},
        "objectives": ["accuracy", "bops"], "search": {"trials": 2, "population": 2, "seed": 0},
    }  # fmt: skip


@pytest.fixture(scope="module")
def kd_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kd")
    space = parse_space(_space(tmp))
    data = load_dataset(space.data)
    run_dir = tmp / "run"
    run_search(space, run_dir, data=data)
    lines: list[str] = []
    summary = run_local(space, LocalSpec.from_dict({**FAST, "distill": KD}), run_dir, data, log=lines.append)
    return space, data, run_dir, summary, lines


# ----------------------------------------------------------------------------- settings
def test_distill_spec_validation():
    assert LocalSpec.from_dict(None).distill is None
    assert LocalSpec.from_dict({"distill": False}).distill is None
    assert LocalSpec.from_dict({"distill": True}).distill == DistillSpec(0.5, 2.0)
    assert LocalSpec.from_dict({"distill": {"alpha": 1, "temperature": 2}}).distill == DistillSpec(1.0, 2.0)
    for bad, msg in (({"alpha": 0}, "alpha must be in"), ({"alpha": 1.5}, "alpha must be in"),
                     ({"temperature": 0}, "temperature must be > 0"), ({"temperature": -1}, "temperature must be > 0"),
                     ({"beta": 1}, "beta: unknown key"), ({"alpha": "x"}, "must be numbers"),
                     ("yes", "true, false or a mapping")):  # fmt: skip
        with pytest.raises(LocalSearchError, match=msg) as err:
            LocalSpec.from_dict({"distill": bad}, "x.yaml")
        assert str(err.value).startswith("x.yaml: local.distill: ") and "\n" not in str(err.value)
    with pytest.raises(LocalSearchError, match="unknown key"):
        LocalSpec.from_dict({"distil": True}, "x.yaml")
    with pytest.raises(LocalSearchError, match="alpha must be in"):
        LocalSpec(distill={"alpha": 2})


def test_digest_changes_with_distill_and_old_stores_keep_theirs():
    # golden digests of the settings before local.distill existed: old local.sqlite files still --resume
    assert LocalSpec().digest() == "f2dcaacec0522c07"
    assert LocalSpec(bits=[4], tpe_trials=2).digest() == "87940c83966f74a6"
    digests = {LocalSpec(distill=d).digest() for d in (None, True, {"alpha": 0.9}, {"temperature": 3.0})}
    assert len(digests) == 4


def test_teacher_hparams_rule():
    hp = teacher_hparams(LocalSpec(learning_rate=[0.01, 0.001, 0.003], batch_size=[512, 256]).choices())
    assert hp == {"learning_rate": 0.003, "batch_size": 256, "l1": 0.0, "dropout": 0.0, "epochs": 10}


# ----------------------------------------------------------------------------- the loss
def _ref_kd(s: np.ndarray, t: np.ndarray, y: np.ndarray, alpha: float, temp: float) -> float:
    """The KD loss by hand in float64 numpy."""

    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    ce = -log_softmax(s)[np.arange(len(y)), y].mean()
    lt, ls = log_softmax(t / temp), log_softmax(s / temp)
    kl = (np.exp(lt) * (lt - ls)).sum(1).mean()
    return (1 - alpha) * ce + alpha * temp**2 * kl


def test_kd_loss_matches_hand_computation():
    import torch
    import torch.nn.functional as F

    s = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, -0.3]])
    t = np.array([[1.0, 0.0, 3.0], [-2.0, 1.5, 0.0]])
    y = np.array([0, 2])
    ts, tt, ty = torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32), torch.tensor(y)
    assert torch.equal(kd_loss(ts, tt, ty, 0.0, 4.0), F.cross_entropy(ts, ty))  # alpha 0: plain CE, exactly
    for alpha, temp in ((0.0, 4.0), (0.5, 1.0), (0.7, 4.0), (1.0, 2.0), (0.3, 0.5)):
        got = float(kd_loss(ts, tt, ty, alpha, temp))
        assert got == pytest.approx(_ref_kd(s, t, y, alpha, temp), rel=1e-5), (alpha, temp)
    # by hand: CE = (0.2413 + 1.4207) / 2 = 0.83107, KL(T=2) = 0.24336, so 0.5 * CE + 0.5 * 2^2 * KL
    assert float(kd_loss(ts, tt, ty, 0.5, 2.0)) == pytest.approx(0.5 * 0.831069 + 0.5 * 4 * 0.243362, rel=1e-5)
    # a student that equals its teacher pays only the hard-label part
    assert float(kd_loss(tt, tt, ty, 0.7, 4.0)) == pytest.approx(0.3 * float(F.cross_entropy(tt, ty)), abs=1e-6)


def test_teacher_logits_steer_training():
    """Same seed and data: alpha 0 trains exactly like plain CE; alpha 0.7 does not, and two different
    teachers give two different students."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = Dataset("t", x, y, x[:64], y[:64], ["a", "b"])
    hp = {"learning_rate": 0.01, "batch_size": 64, "l1": 0.0, "dropout": 0.0, "epochs": 2}

    def trained(teacher):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        local_mod._train(net, data, hp, 2, seed=0, teacher=teacher)
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    logits = torch.from_numpy(rng.normal(size=(256, 2)).astype(np.float32)) * 3
    plain = trained(None)
    assert torch.equal(trained(Teacher(logits, DistillSpec(0.0, 4.0), 1.0)), plain)  # alpha 0 (unvalidated): plain CE
    a = trained(Teacher(logits, DistillSpec(0.7, 4.0), 1.0))
    b = trained(Teacher(-logits, DistillSpec(0.7, 4.0), 1.0))
    assert not torch.allclose(a, plain, atol=1e-4) and not torch.allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------------- the stage
def test_local_run_reports_with_and_without(kd_run):
    _, data, run_dir, summary, lines = kd_run
    payload = json.loads((run_dir / "local_pareto.json").read_text())
    assert payload["distill"] == KD
    (row,) = payload["distillation"]
    cand = row["candidate"]
    assert row["bits"] == 3 and row["teacher_accuracy"] == payload["float_accuracy"][str(cand)]
    assert row["gain"] == pytest.approx(row["accuracy"] - row["accuracy_no_distill"])
    majority = max(np.mean(data.y_val == c) for c in np.unique(data.y_val))
    assert min(row["accuracy"], row["accuracy_no_distill"], row["teacher_accuracy"]) > majority
    r0 = [r for r in payload["results"] if r["round"] == 0]
    assert (
        len(r0) == 1
        and r0[0]["accuracy"] == row["accuracy"]
        and r0[0]["accuracy_no_distill"] == row["accuracy_no_distill"]
    )
    assert all("accuracy_no_distill" not in r for r in payload["results"] if r["round"] > 0)
    assert summary.distillation == payload["distillation"]
    assert any(f"distillation trial {cand} 3 bit: acc {row['accuracy']:.4f} with the teacher" in ln for ln in lines)
    # the teacher is trained before the TPE trials it teaches
    first = {key: next(i for i, ln in enumerate(lines) if key in ln) for key in ("teacher:", "tpe ")}
    assert first["teacher:"] < first["tpe "]


def test_teacher_changes_the_student_weights(kd_run):
    """The distilled round 0 and its no-distill twin share seed, hyper-parameters and schedule;
    only the teacher differs, and their weights differ."""
    import torch

    space, _data, run_dir, summary, _ = kd_run
    cand = summary.distillation[0]["candidate"]
    digest = LocalSpec.from_dict({**FAST, "distill": KD}).digest() + space.digest()
    store = LocalStore(run_dir / "local.sqlite", digest, resume=True)
    try:
        with_ = torch.load(io.BytesIO(store.get(f"round/{cand}/3/0")["state"]), weights_only=False)["net"]
        without = torch.load(io.BytesIO(store.get(f"nodistill/{cand}/3")["state"]), weights_only=False)["net"]
        assert store.get(f"round/{cand}/3/0")["hparams"] == store.get(f"nodistill/{cand}/3")["hparams"]
    finally:
        store.close()
    weights = [k for k in with_ if k.endswith(".weight") and with_[k].dim() == 2]
    assert weights and all(not torch.allclose(with_[k], without[k]) for k in weights)


def test_no_distill_twin_is_the_plain_round_zero(tmp_path, kd_run):
    """The 'without' number is exactly what a run without local.distill gives for round 0 (same hp)."""
    _, data, run_dir, summary, _ = kd_run
    cand = summary.distillation[0]["candidate"]
    genome = local_mod.genome_of(run_dir, cand)
    spec = LocalSpec.from_dict({**FAST, "prune_rounds": 0})
    hp = summary.results[0]["hparams"]
    store = LocalStore(tmp_path / "plain.sqlite", "x", resume=False)
    try:
        local_mod._imp(store, spec, genome, cand, data, 3, hp, None, "hls4ml", lambda s: None)
        plain = store.get(f"round/{cand}/3/0")["metrics"]["accuracy"]
    finally:
        store.close()
    assert plain == summary.distillation[0]["accuracy_no_distill"]


def test_resume_retrains_nothing_and_keeps_the_table(kd_run, monkeypatch):
    space, data, run_dir, summary, _ = kd_run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished result was retrained")

    monkeypatch.setattr(local_mod, "_train", no_training)
    again = run_local(space, LocalSpec.from_dict({**FAST, "distill": KD}), run_dir, data, resume=True)
    assert again.distillation == summary.distillation
    with pytest.raises(LocalSearchError, match="different local settings"):
        run_local(space, LocalSpec.from_dict(FAST), run_dir, data, resume=True)


def test_report_shows_the_distillation_table(kd_run):
    from codesign.search.report import write_report

    *_, run_dir, summary, _ = kd_run
    page = write_report(run_dir).read_text()
    assert 'id="distillation"' in page and "accuracy_no_distill" in page
    assert f"{summary.distillation[0]['accuracy_no_distill']:.4g}" in page


def test_regression_refuses_distill(tmp_path):
    x = np.zeros((8, 3), np.float32)
    data = Dataset("reg", x, np.zeros(8, np.float32), x, np.zeros(8, np.float32), [], "regression")
    with pytest.raises(LocalSearchError, match="needs a classification task"):
        run_local(parse_space(_space(tmp_path)), LocalSpec(distill=True), tmp_path / "none", data)


def test_cli_prints_with_and_without(tmp_path):
    import yaml

    from codesign.cli import app

    cfg = {**_space(tmp_path), "local": {**FAST, "prune_rounds": 0, "distill": {"alpha": 0.5, "temperature": 2}}}
    yml = tmp_path / "kd.yaml"
    yml.write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(tmp_path / "run"), "--stage", "all"])
    assert r.exit_code == 0, r.output
    assert "with the teacher" in r.output and "without" in r.output
    # --no-distill / --distill override the YAML (so the store's settings differ: refused on resume)
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(tmp_path / "run"), "--stage", "local", "--resume",
                                 "--no-distill"])  # fmt: skip
    assert r.exit_code == 2 and "different local settings" in r.output
    yml.write_text(yaml.safe_dump({**cfg, "local": {**FAST, "prune_rounds": 0}}))
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(tmp_path / "run3"), "--stage", "all", "--distill"])
    assert r.exit_code == 0 and "with the teacher" in r.output
    assert json.loads((tmp_path / "run3" / "local_pareto.json").read_text())["distill"] == {
        "alpha": 0.5,
        "temperature": 2.0,
    }
    bad = {**cfg, "local": {"distill": {"alpha": 0}}}
    yml.write_text(yaml.safe_dump(bad))
    r = CliRunner().invoke(app, ["search", str(yml), "-o", str(tmp_path / "run2"), "--stage", "local"])
    assert r.exit_code == 2 and "local.distill: alpha must be in (0, 1]" in r.output


def test_example_distill_config_parses():
    from codesign.search.pipeline import load_pipeline

    cfg = load_pipeline(ROOT / "examples/search/magic_distill.yaml")
    assert cfg.local.distill is not None and cfg.local.distill.temperature > 0
    assert math.isclose(cfg.local.distill.alpha, 0.5) and cfg.local.distill.temperature == 2.0
