"""Local search (NAC's second stage): brevitas QAT at a sweep of bit widths, optuna TPE over the
training hyper-parameters, and iterative magnitude pruning with weight rewinding (lottery ticket).

Every result is exported with ``brevitas.export.export_qonnx(..., dynamo=False)`` and loaded with
``codesign.frontends.load``, so its BOPs, sparsity and resource estimates come from the same
passes as ``inspect``/``compile``. Each finished TPE trial / pruning round is committed to
``local.sqlite`` at once, so ``--resume`` skips it (TPE is replayed from the stored trials).
With ``local.distill`` the candidate's float twin is trained first and teaches every quantized
net (``codesign.search.distill``); each bit width's round 0 is also trained without it.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError
from codesign.search.data import Dataset
from codesign.search.distill import DistillError, DistillSpec, Teacher, teacher_hparams, teacher_logits
from codesign.search.genome import UNSIGNED_ACTIVATIONS, Genome
from codesign.search.objectives import pareto_mask
from codesign.search.run import csv_text, staged_outputs
from codesign.search.space import Space

LOCAL_OUTPUTS = ("local_pareto.csv", "local_pareto.json", "local_candidates")


class LocalSearchError(CodesignError):
    """The local stage cannot run (no global run, unsupported candidate, bad local settings)."""


@dataclass
class LocalSpec:
    """The ``local:`` section of a search YAML (all optional)."""

    select: str = "best"  # best | spread:K | trial:ID[,ID...]
    bops_budget: float | None = None  # 'best' = most accurate under this BOPs budget
    bits: list[int] = field(default_factory=lambda: [4, 6, 8])
    tpe_trials: int = 6
    learning_rate: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2])
    batch_size: list[int] = field(default_factory=lambda: [64, 128, 256])
    l1: list[float] = field(default_factory=lambda: [0.0, 1e-5, 1e-4])
    dropout: list[float] = field(default_factory=lambda: [0.0, 0.1])
    epochs: list[int] = field(default_factory=lambda: [5, 10])
    prune_rounds: int = 10
    prune_fraction: float = 0.2
    rewind_epoch: int = 1
    seed: int = 0
    max_train_rows: int | None = None
    distill: DistillSpec | None = None  # {alpha, temperature}: the float twin teaches every quantized net
    #: where the nets train (auto | cpu | cuda[:N]); None = the space's training.device. Not in the digest:
    #: a run resumes on any device
    device: str | None = None

    def __post_init__(self) -> None:
        try:
            self.distill = DistillSpec.parse(self.distill)
        except DistillError as exc:
            raise LocalSearchError(f"local.distill: {exc}") from None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "local") -> LocalSpec:
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise LocalSearchError(f"{source}: local.{bad[0]}: unknown key (known: {', '.join(sorted(known))})")
        try:
            d["distill"] = DistillSpec.parse(d.get("distill"))
        except DistillError as exc:
            raise LocalSearchError(f"{source}: local.distill: {exc}") from None
        spec = cls(**d)
        if spec.bops_budget is not None:  # YAML reads 2.5e7 (no '+') as a string
            try:
                spec.bops_budget = float(spec.bops_budget)
            except (TypeError, ValueError):
                raise LocalSearchError(f"{source}: local.bops_budget: not a number ({spec.bops_budget!r})") from None
        if not spec.bits or any(not 2 <= int(b) <= 16 for b in spec.bits):
            raise LocalSearchError(f"{source}: local.bits: each bit width must be within 2..16")
        if not 0.0 < spec.prune_fraction < 1.0:
            raise LocalSearchError(f"{source}: local.prune_fraction: must be in (0, 1)")
        if spec.device is not None:
            from codesign.search.device import DeviceError, check_device

            try:
                spec.device = check_device(spec.device)
            except DeviceError as exc:
                raise LocalSearchError(f"{source}: local.device: {exc}") from None
        if spec.prune_rounds < 0 or spec.tpe_trials < 1 or spec.rewind_epoch < 0:
            raise LocalSearchError(f"{source}: local: prune_rounds >= 0, tpe_trials >= 1, rewind_epoch >= 0")
        return spec

    def digest(self) -> str:
        import hashlib

        d = asdict(self)
        del d["device"]
        if d["distill"] is None:  # stores made before distillation existed keep their digest
            del d["distill"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def choices(self) -> dict[str, list[Any]]:
        """The TPE search lists (hyper-parameter name -> categorical choices)."""
        return {k: getattr(self, k) for k in ("learning_rate", "batch_size", "l1", "dropout", "epochs")}


# ----------------------------------------------------------------------------- candidate selection
def select_candidates(run_dir: Path, spec: LocalSpec) -> list[dict[str, Any]]:
    """Rows of the global ``pareto.json`` picked by ``spec.select`` (best | spread:K | trial:IDS)."""
    path = Path(run_dir) / "pareto.json"
    if not path.is_file():
        raise LocalSearchError(f"{run_dir}: no pareto.json (run the global stage first)")
    rows = [r for r in json.loads(path.read_text())["pareto"] if r.get("file")]
    if not rows:
        raise LocalSearchError(f"{path}: the global Pareto front is empty")
    rule = spec.select
    if rule == "best":
        ok = [r for r in rows if spec.bops_budget is None or r["bops"] <= spec.bops_budget]
        if not ok:
            raise LocalSearchError(f"{path}: no Pareto candidate within {spec.bops_budget:g} BOPs")
        return [max(ok, key=lambda r: (r["accuracy"], -r["bops"]))]
    if rule.startswith("spread:"):
        k = int(rule.split(":", 1)[1])
        by_bops = sorted(rows, key=lambda r: r["bops"])
        idx = sorted({round(i * (len(by_bops) - 1) / max(k - 1, 1)) for i in range(min(k, len(by_bops)))})
        return [by_bops[i] for i in idx]
    if rule.startswith("trial:"):
        ids = [int(v) for v in rule.split(":", 1)[1].split(",")]
        picked = [r for r in rows if r["trial"] in ids]
        missing = sorted(set(ids) - {r["trial"] for r in picked})
        if missing:
            raise LocalSearchError(f"{path}: trial {missing[0]} is not on the global Pareto front")
        return picked
    raise LocalSearchError(f"local.select must be best, spread:K or trial:ID[,ID], not {rule!r}")


def genome_of(run_dir: Path, trial_id: int) -> Genome:
    """The genome of a stored global trial (read-only access to trials.sqlite)."""
    db = sqlite3.connect(f"file:{Path(run_dir) / 'trials.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT genome FROM trials WHERE id = ?", (trial_id,)).fetchone()
    finally:
        db.close()
    if row is None:
        raise LocalSearchError(f"{run_dir}: trial {trial_id} not in trials.sqlite")
    return Genome.from_dict(json.loads(row[0]))


# ----------------------------------------------------------------------------- the QAT network
#: conv genomes' "float" twin: the same QONNX-exact net at this many bits (quantization noise far below
#: the task's; the fake-quantizers stay so the twin is the very module the quantized rounds train)
CONV_FLOAT_BITS = 16


def build_net(genome: Genome, n_features: int, n_classes: int, bits: int | None, dropout: float):
    """Brevitas MLP of ``genome`` at ``bits`` (power-of-two scales), or its float twin (``bits=None``).
    A genome with conv / pooling / residual / ConvAttention blocks gets the global stage's own QAT net
    (:class:`~codesign.search.nets.ConvCandidateNet`: power-of-two scales, QONNX ``Quant`` semantics op for
    op), so what the local stage trains and prunes is bit for bit what :func:`export_ir` writes."""
    from torch import nn

    if genome.n_conv:
        from codesign.search.nets import ConvCandidateNet

        return ConvCandidateNet(replace(genome, bits=bits or CONV_FLOAT_BITS, dropout=dropout), n_features, n_classes)
    acts = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "gelu": nn.GELU, "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid, "identity": nn.Identity}  # fmt: skip
    dims = [n_features, *genome.widths, n_classes]
    layers: list[nn.Module] = []
    if bits is None:
        for i in range(genome.depth):
            layers += [nn.Linear(dims[i], dims[i + 1])]
            if genome.norms[i] == "batch":
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            elif genome.norms[i] == "layer":
                layers.append(nn.LayerNorm(dims[i + 1]))
            layers += [nn.Dropout(dropout), acts[genome.activations[i]]()]
        layers.append(nn.Linear(dims[-2], dims[-1]))
        return nn.Sequential(*layers)
    import brevitas.nn as qnn
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int16Bias,
        Uint8ActPerTensorFixedPoint,
    )

    def linear(n_in: int, n_out: int) -> nn.Module:
        return qnn.QuantLinear(
            n_in, n_out, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=bits,
            bias_quant=Int16Bias, return_quant_tensor=False,
        )  # fmt: skip

    layers.append(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=True))
    for i in range(genome.depth):
        layers.append(linear(dims[i], dims[i + 1]))
        if genome.norms[i] == "batch":
            layers.append(nn.BatchNorm1d(dims[i + 1]))
        elif genome.norms[i] == "layer":
            layers.append(nn.LayerNorm(dims[i + 1]))
        layers.append(nn.Dropout(dropout))
        act = genome.activations[i]
        if act == "relu":
            layers.append(
                qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits, return_quant_tensor=True)
            )
        else:
            layers.append(acts[act]())
            quant = Uint8ActPerTensorFixedPoint if act in UNSIGNED_ACTIVATIONS else Int8ActPerTensorFixedPoint
            layers.append(qnn.QuantIdentity(act_quant=quant, bit_width=bits, return_quant_tensor=True))
    layers.append(linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


def calibrate(net, data: Dataset, rows: int = 512) -> None:
    """One train-mode forward pass without gradients: brevitas (and the conv net's range trackers)
    initialise their activation scales from these statistics (so the state dict is complete before
    the first step)."""
    import torch

    net.train()
    with torch.no_grad():
        net(torch.from_numpy(data.x_train[:rows]).to(_device_of(net)))


def _device_of(net) -> Any:
    return next(net.parameters()).device


def _is_conv(net) -> bool:
    return hasattr(net, "genome") and bool(net.genome.n_conv)


def _weights(net) -> list:
    """The prunable weight tensors (every Linear / QuantLinear / Conv, attention q/k/v included; the
    output layer last)."""
    from torch import nn

    return [m.weight for m in net.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]


def _train(net, data: Dataset, hp: dict[str, Any], epochs: int, seed: int, masks: list | None = None,
           start_epoch: int = 0, on_epoch: Callable[[int], None] | None = None,
           teacher: Teacher | None = None) -> None:  # fmt: skip
    """Adam + cross-entropy (or the distillation loss against ``teacher``) (+ L1 on the weights);
    pruned weights are held at zero after every step."""
    import torch

    from codesign.search.train import _tensors, task_loss

    x, y, _, _ = _tensors(data, _device_of(net))  # on the training device once, not per batch
    opt = torch.optim.Adam(net.parameters(), lr=hp["learning_rate"])
    weights = _weights(net)
    bs = int(hp["batch_size"])
    for epoch in range(start_epoch, epochs):
        net.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1009 + epoch), device="cpu").to(
            x.device
        )
        for start in range(0, len(x), bs):
            idx = order[start : start + bs]
            if len(idx) < 2:
                continue
            out = net(x[idx])
            loss = task_loss(out, y[idx]) if teacher is None else teacher.loss(out, y[idx], idx)
            if hp["l1"]:
                loss = loss + hp["l1"] * sum(w.abs().sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if masks is not None:
                with torch.no_grad():
                    for w, m in zip(weights, masks):
                        w.mul_(m)
        if on_epoch is not None:
            on_epoch(epoch + 1)


def accuracy(net, data: Dataset) -> float:
    """The validation score the global stage reports for this task (accuracy, R^2 or -distance)."""
    import torch

    from codesign.search.train import _tensors, score_outputs

    _, _, xv, yv = _tensors(data, _device_of(net))
    net.eval()
    with torch.no_grad():
        out = net(xv)
    out = out.value if hasattr(out, "value") else out
    return score_outputs(out, yv, data.score)


def prune_masks(net, masks: list, fraction: float) -> list:
    """Per layer, zero ``fraction`` of the still-unpruned weights with the smallest magnitude
    (the output layer at half the rate, as in the lottery-ticket paper)."""
    import torch

    weights = _weights(net)
    out = []
    for i, (w, m) in enumerate(zip(weights, masks)):
        rate = fraction / 2 if i == len(weights) - 1 else fraction
        alive = w.detach().abs()[m.bool()]
        k = round(rate * alive.numel())
        if k == 0 or alive.numel() - k < 1:
            out.append(m.clone())
            continue
        thresh = torch.kthvalue(alive.flatten(), k).values
        out.append(((w.detach().abs() > thresh) & m.bool()).float())
    return out


# ----------------------------------------------------------------------------- IR round trip
def export_ir(net, n_features: int, path: Path, n_classes: int | None = None):
    """export_qonnx(dynamo=False) -> codesign IR (the same loader as every other model); a conv
    genome's net is written by the search's own QONNX builder (``genome.build_ir``, its trained
    parameters), which the global stage's candidates and compile already go through."""
    import copy
    import warnings

    import torch

    from codesign.frontends import load

    net = copy.deepcopy(net).cpu()  # export on the host; the training copy stays on its device
    net.eval()
    if _is_conv(net):
        from codesign.ir.io import save_model
        from codesign.search.genome import build_ir

        out = n_classes if n_classes is not None else net.linears[-1].out_features
        save_model(build_ir(net.genome, n_features, out, net.export_params(), name="local"), path)
        return load(path)
    from brevitas.export import export_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net, torch.zeros(1, n_features), str(path), dynamo=False)
    return load(path)


def measure_ir(ir, target: str | None, estimator: str = "hls4ml") -> dict[str, Any]:
    """BOPs, weight sparsity (MAC layers) and, with a target, the estimator's resources."""
    from codesign.passes.cost import MAC_OPS, cost_report

    rep = cost_report(ir)
    t = rep.totals
    mac = [layer for layer in rep.layers if layer.op in MAC_OPS]
    w_params = sum(layer.params for layer in mac)
    w_nz = sum(layer.nonzero_params for layer in mac)
    out: dict[str, Any] = {
        "bops": t["bops"], "macs": t["macs"], "params": int(t["params"]), "nonzero_params": int(t["nonzero_params"]),
        "sparsity": 1.0 - w_nz / w_params if w_params else 0.0, "param_sparsity": t["sparsity"],
    }  # fmt: skip
    if target:
        from codesign.passes.estimate import estimate

        est = estimate(ir, estimator, target=target)
        out |= {k: float(est.totals[k]) for k in ("LUT", "FF", "DSP", "BRAM_18K") if k in est.totals}
        out["latency"] = float(est.totals.get("latency_cycles", 0.0))
    return out


# ----------------------------------------------------------------------------- the store
class LocalStore:
    """``local.sqlite``: one row per finished TPE trial / pruning round (committed at once)."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS results (
        key TEXT PRIMARY KEY, kind TEXT NOT NULL, candidate INTEGER NOT NULL, bits INTEGER,
        round INTEGER, hparams TEXT NOT NULL, metrics TEXT NOT NULL, onnx BLOB, state BLOB, finished REAL NOT NULL);
    """

    def __init__(self, path: Path, digest: str, resume: bool):
        self.path = path
        existed = path.exists()
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(self.SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='digest'").fetchone()
        n = self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        if existed and n and not resume:
            self.db.close()
            raise LocalSearchError(f"{path} already holds {n} local results; pass --resume to continue it")
        if row is not None and row[0] != digest:
            self.db.close()
            raise LocalSearchError(f"{path} was made with different local settings; use a new run folder")
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('digest', ?)", (digest,))

    def get(self, key: str) -> dict[str, Any] | None:
        r = self.db.execute("SELECT hparams, metrics, onnx, state FROM results WHERE key = ?", (key,)).fetchone()
        if r is None:
            return None
        return {"hparams": json.loads(r[0]), "metrics": json.loads(r[1]), "onnx": r[2], "state": r[3]}

    def put(self, key: str, kind: str, candidate: int, bits: int | None, rnd: int | None, hparams: dict[str, Any],
            metrics: dict[str, Any], onnx: bytes | None = None, state: bytes | None = None) -> None:  # fmt: skip
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, kind, candidate, bits, rnd, json.dumps(hparams), json.dumps(metrics), onnx, state, time.time()),
            )

    def rows(self, kind: str) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT key, candidate, bits, round, hparams, metrics, onnx FROM results WHERE kind = ? ORDER BY finished",
            (kind,),
        )
        return [
            {
                "key": k,
                "candidate": c,
                "bits": b,
                "round": r,
                "hparams": json.loads(h),
                "metrics": json.loads(m),
                "onnx": o,
            }
            for k, c, b, r, h, m, o in cur
        ]

    def close(self) -> None:
        self.db.close()


def _state_bytes(net, masks: list | None) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"net": net.state_dict(), "masks": masks}, buf)
    return buf.getvalue()


def _load_state(net, blob: bytes) -> list | None:
    import torch

    state = torch.load(io.BytesIO(blob), weights_only=False, map_location="cpu")  # a run resumes on any device
    net.load_state_dict(state["net"])
    masks = state["masks"]
    return None if masks is None else [m.to(_device_of(net)) for m in masks]


# ----------------------------------------------------------------------------- the stage
@dataclass
class LocalSummary:
    run_dir: Path
    results: list[dict[str, Any]]
    front: list[dict[str, Any]]
    float_accuracy: dict[int, float]
    #: with ``local.distill``: per candidate and bit width, round-0 accuracy with / without the teacher
    distillation: list[dict[str, Any]] = field(default_factory=list)


def _fresh_net(spec: LocalSpec, genome: Genome, data: Dataset, bits: int | None, hp: dict[str, Any]):
    """The seeded, calibrated, untrained network every TPE trial / pruning run starts from."""
    import torch

    torch.manual_seed(spec.seed)
    net = build_net(genome, data.n_features, data.n_classes, bits, hp["dropout"])
    if genome.n_conv:  # the global stage's seeded initial weights and data-driven input scale
        from codesign.search.train import initial_params

        net.load_params(initial_params(net.genome, data, spec.seed))
        net.act_range.zero_()
        net.attn_range.zero_()
    net.to(_resolve(spec))
    calibrate(net, data)
    return net


def _resolve(spec: LocalSpec) -> Any:
    from codesign.search.device import resolve_device

    return resolve_device(spec.device or "cpu")


def _tpe(store: LocalStore, spec: LocalSpec, genome: Genome, cand: int, data: Dataset, bits: int,
         log: Callable[[str], None], teacher: Teacher | None = None) -> dict[str, Any]:  # fmt: skip
    """Seeded TPE over lr / batch / L1 / dropout / epochs at ``bits``; stored trials are replayed, not retrained."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=spec.seed))
    choices = spec.choices()
    for n in range(spec.tpe_trials):
        trial = study.ask()
        hp = {k: trial.suggest_categorical(k, v) for k, v in choices.items()}
        key = f"tpe/{cand}/{bits}/{n}"
        done = store.get(key)
        if done is None:
            net = _fresh_net(spec, genome, data, bits, hp)
            _train(net, data, hp, hp["epochs"], spec.seed, teacher=teacher)
            acc = accuracy(net, data)
            store.put(key, "tpe", cand, bits, None, hp, {"accuracy": acc})
            log(f"  tpe {n + 1}/{spec.tpe_trials} (trial {cand}, {bits} bit): acc {acc:.4f} {hp}")
        else:
            acc = done["metrics"]["accuracy"]
        study.tell(trial, acc)
    return {k: study.best_trial.params[k] for k in choices}


def _rewind_point(store: LocalStore, key: str, net, spec: LocalSpec, cand: int, data: Dataset, bits: int | None,
                  hp: dict[str, Any], teacher: Teacher | None) -> bytes:  # fmt: skip
    """The weights after ``rewind_epoch`` epochs (trained once, then read from the store)."""
    rw = store.get(key)
    if rw is not None:
        return rw["state"]
    _train(net, data, hp, min(spec.rewind_epoch, hp["epochs"]), spec.seed, teacher=teacher)
    rewind = _state_bytes(net, None)
    store.put(key, "rewind", cand, bits, None, hp, {}, state=rewind)
    return rewind


def _imp(store: LocalStore, spec: LocalSpec, genome: Genome, cand: int, data: Dataset, bits: int | None,
         hp: dict[str, Any], target: str | None, estimator: str, log: Callable[[str], None],
         teacher: Teacher | None = None) -> None:  # fmt: skip
    """Iterative magnitude pruning with rewinding: train, prune, rewind to epoch ``rewind_epoch``, retrain."""
    import torch

    net = _fresh_net(spec, genome, data, bits, hp)
    rounds = spec.prune_rounds if bits is not None else 0
    tag = "float" if bits is None else str(bits)
    rewind = _rewind_point(store, f"rewind/{cand}/{tag}", net, spec, cand, data, bits, hp, teacher)
    masks = [torch.ones_like(w) for w in _weights(net)]
    for r in range(rounds + 1):
        key = f"round/{cand}/{tag}/{r}"
        done = store.get(key)
        if done is not None:
            masks = _load_state(net, done["state"])
            continue
        if r > 0:
            masks = prune_masks(net, masks, spec.prune_fraction)
        _load_state(net, rewind)
        with torch.no_grad():
            for w, m in zip(_weights(net), masks):
                w.mul_(m)
        _train(net, data, hp, hp["epochs"], spec.seed, masks, start_epoch=min(spec.rewind_epoch, hp["epochs"]),
               teacher=teacher)  # fmt: skip
        acc = accuracy(net, data)
        metrics: dict[str, Any] = {"accuracy": acc}
        blob = None
        if bits is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "m.onnx"
                ir = export_ir(net, data.n_features, path, data.n_classes)
                metrics |= measure_ir(ir, target, estimator)
                blob = path.read_bytes()
        kept = float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks))
        metrics["mask_sparsity"] = 1.0 - kept
        store.put(
            key, "round" if bits is not None else "float", cand, bits, r, hp, metrics, blob, _state_bytes(net, masks)
        )
        spars = metrics.get("sparsity", 0.0)
        log(
            f"  trial {cand} {tag} bit round {r}/{rounds}: acc {acc:.4f} sparsity {spars:.3f} BOPs {metrics.get('bops', 0):.4g}"
        )


def _load_teacher(store: LocalStore, spec: LocalSpec, genome: Genome, cand: int, data: Dataset) -> Teacher:
    """The candidate's trained float twin (``round/{cand}/float/0``) with its logits on every training row."""
    import torch

    done = store.get(f"round/{cand}/float/0")
    net = build_net(genome, data.n_features, data.n_classes, None, 0.0).to(_resolve(spec))
    _load_state(net, done["state"])
    logits = teacher_logits(net, torch.from_numpy(data.x_train).to(_device_of(net)))
    return Teacher(logits, spec.distill or DistillSpec(), done["metrics"]["accuracy"])


def _no_distill(store: LocalStore, spec: LocalSpec, genome: Genome, cand: int, data: Dataset, bits: int,
                hp: dict[str, Any]) -> float:  # fmt: skip
    """Validation accuracy of the dense (round-0) net at ``bits`` trained WITHOUT the teacher: the
    same hyper-parameters, seed and rewind schedule as the distilled round 0 (the with/without pair)."""
    key = f"nodistill/{cand}/{bits}"
    done = store.get(key)
    if done is not None:
        return done["metrics"]["accuracy"]
    net = _fresh_net(spec, genome, data, bits, hp)
    _load_state(net, _rewind_point(store, f"rewind/{cand}/{bits}/nodistill", net, spec, cand, data, bits, hp, None))
    _train(net, data, hp, hp["epochs"], spec.seed, start_epoch=min(spec.rewind_epoch, hp["epochs"]))
    acc = accuracy(net, data)
    store.put(key, "nodistill", cand, bits, 0, hp, {"accuracy": acc}, state=_state_bytes(net, None))
    return acc


def local_objectives(m: dict[str, Any]) -> list[float]:
    """Minimisation vector of the local front: -accuracy, BOPs, estimated LUT (when estimated)."""
    return [-m["accuracy"], m["bops"]] + ([m["LUT"]] if "LUT" in m else [])


def run_local(space: Space, spec: LocalSpec, run_dir: str | Path, data: Dataset, resume: bool = False,
              log: Callable[[str], None] = lambda s: None) -> LocalSummary:  # fmt: skip
    """Run the local stage on the global run in ``run_dir`` and write local_pareto.* + local_candidates/."""
    import torch

    run_dir = Path(run_dir)
    if spec.distill is not None and data.regression:
        raise LocalSearchError(f"local.distill: distillation needs a classification task ({data.name} is regression)")
    picked = select_candidates(run_dir, spec)
    if spec.device is None:
        spec = replace(spec, device=space.training.device)
    if spec.max_train_rows is not None:
        data = replace(data, x_train=data.x_train[: spec.max_train_rows], y_train=data.y_train[: spec.max_train_rows])
    threads = torch.get_num_threads()
    # brevitas MLPs: 2 intra-op threads (what the documented numbers used); the conv nets' small tensors
    # only contend (one forward + backward measured 10x slower with 2 threads on a loaded 2-core machine)
    conv = any(genome_of(run_dir, int(r["trial"])).n_conv for r in picked)
    torch.set_num_threads(1 if conv else max(1, min(2, os.cpu_count() or 1)))
    store = LocalStore(run_dir / "local.sqlite", spec.digest() + space.digest(), resume)
    float_acc: dict[int, float] = {}
    distillation: list[dict[str, Any]] = []
    try:
        for row in picked:
            cand = int(row["trial"])
            genome = genome_of(run_dir, cand)
            log(f"local stage: trial {cand} ({genome.label()}), global acc {row['accuracy']:.4f}")
            teacher = None
            if spec.distill is not None:  # the float twin first: it teaches the TPE trials too
                _imp(store, spec, genome, cand, data, None, teacher_hparams(spec.choices()), None, space.estimator, log)
                teacher = _load_teacher(store, spec, genome, cand, data)
                log(f"  teacher: float twin of trial {cand}, acc {teacher.accuracy:.4f} "
                    f"(alpha {spec.distill.alpha:g}, temperature {spec.distill.temperature:g})")  # fmt: skip
            hp = _tpe(store, spec, genome, cand, data, max(spec.bits), log, teacher)
            store.put(f"hparams/{cand}", "hparams", cand, None, None, hp, {})
            if teacher is None:
                _imp(store, spec, genome, cand, data, None, hp, None, space.estimator, log)
            float_acc[cand] = store.get(f"round/{cand}/float/0")["metrics"]["accuracy"]
            for bits in spec.bits:
                _imp(store, spec, genome, cand, data, bits, hp, space.target, space.estimator, log, teacher)
                if teacher is not None:
                    distillation.append(_with_without(store, spec, genome, cand, data, bits, hp, teacher, log))
        results = store.rows("round")
        without = {(d["candidate"], d["bits"]): d["accuracy_no_distill"] for d in distillation}
        for r in results:
            r["float_accuracy"] = float_acc.get(r["candidate"])
            if r["round"] == 0 and (r["candidate"], r["bits"]) in without:
                r["accuracy_no_distill"] = without[(r["candidate"], r["bits"])]
        front = write_local_outputs(run_dir, results, float_acc, distillation, spec.distill)
    finally:
        store.close()
        torch.set_num_threads(threads)
    return LocalSummary(run_dir, results, front, float_acc, distillation)


def _with_without(store: LocalStore, spec: LocalSpec, genome: Genome, cand: int, data: Dataset, bits: int,
                  hp: dict[str, Any], teacher: Teacher, log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """One row of the distillation table (and its log line): round 0 at ``bits`` with and without the teacher."""
    with_ = store.get(f"round/{cand}/{bits}/0")["metrics"]["accuracy"]
    without = _no_distill(store, spec, genome, cand, data, bits, hp)
    log(f"  distillation trial {cand} {bits} bit: acc {with_:.4f} with the teacher, {without:.4f} without "
        f"({with_ - without:+.4f}); teacher {teacher.accuracy:.4f}")  # fmt: skip
    return {"candidate": cand, "bits": bits, "accuracy": with_, "accuracy_no_distill": without,
            "gain": with_ - without, "teacher_accuracy": teacher.accuracy}  # fmt: skip


def _local_row(rank: int, r: dict[str, Any], file: str | None) -> dict[str, Any]:
    m = {k: v for k, v in r["metrics"].items()}
    kd = {"accuracy_no_distill": r["accuracy_no_distill"]} if "accuracy_no_distill" in r else {}
    return {"rank": rank, "candidate": r["candidate"], "bits": r["bits"], "round": r["round"], **m,
            "float_accuracy": r.get("float_accuracy"), **kd, **{f"hp_{k}": v for k, v in r["hparams"].items()},
            "file": file or ""}  # fmt: skip


def write_local_outputs(
    run_dir: Path,
    results: list[dict[str, Any]],
    float_acc: dict[int, float],
    distillation: list[dict[str, Any]] | None = None,
    distill: DistillSpec | None = None,
) -> list[dict[str, Any]]:
    """local_pareto.csv/json + local_candidates/*.onnx, built in a temp folder and moved into place."""
    keep = pareto_mask([local_objectives(r["metrics"]) for r in results])
    front = sorted((r for r, k in zip(results, keep) if k), key=lambda r: local_objectives(r["metrics"]))
    with staged_outputs(run_dir, ".local.", LOCAL_OUTPUTS, "local outputs") as tmp:
        (tmp / "local_candidates").mkdir()
        rows = []
        for rank, r in enumerate(front):
            fname = f"local_candidates/{rank:03d}_trial{r['candidate']}_w{r['bits']}_round{r['round']}.onnx"
            (tmp / fname).write_bytes(r["onnx"])
            rows.append(_local_row(rank, r, fname))
        (tmp / "local_pareto.csv").write_text(csv_text(rows))
        payload = {
            "objectives": ["accuracy", "bops"] + (["LUT"] if any("LUT" in r["metrics"] for r in results) else []),
            "float_accuracy": {str(k): v for k, v in float_acc.items()},
            "pareto": rows, "results": [_local_row(-1, r, None) for r in results],
        }  # fmt: skip
        if distillation:
            payload["distill"] = asdict(distill or DistillSpec())
            payload["distillation"] = distillation
        (tmp / "local_pareto.json").write_text(json.dumps(payload, indent=2, default=float))
    return front
