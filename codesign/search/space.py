"""The search-space YAML: schema, validation with one-line errors, and the gene table.

One file describes the data, the architecture choices (SNAC-Pack's MLP table or NAC's
per-block lists), training hyper-parameters, objectives, hardware budgets and the
baselines to seed with. Every gene is a finite list of choices, so a genome is a vector
of choice indices: pymoo's integer operators and duplicate elimination work unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from codesign.errors import CodesignError

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "tanh", "sigmoid", "identity")
NORMS = ("none", "batch", "layer")
OBJECTIVES = {"accuracy": "max", "bops": "min", "params": "min", "lut": "min", "resources": "min", "latency": "min"}
BLOCK_TYPES_KNOWN = ("dense", "conv1d", "conv2d", "conv_attention")
#: blocks on a (channels, positions...) tensor, placed before the dense head
CONV_TYPES = ("conv1d", "conv2d", "conv_attention")
POOLS = ("none", "max", "avg")


class SearchSpaceError(CodesignError):
    """The search-space YAML is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(_Strict):
    """Which data set, how to split it (seeded) and how to preprocess it."""

    #: bragg: generated 11x11 Bragg-peak patches (codesign.search.bragg), centre regression, score = -distance (px)
    dataset: Literal["magic", "mnist", "jets", "csv", "npz", "hdf5", "bragg"]
    path: str | None = None
    label: str | None = None
    #: regression: the label column is a float target; "accuracy" is then the validation R^2
    task: Literal["classification", "regression"] = "classification"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0
    max_rows: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _needs_path(self) -> DataSpec:
        if self.dataset in ("csv", "npz", "hdf5") and not self.path:
            raise ValueError(f"dataset {self.dataset!r} needs a 'path'")
        if self.dataset in ("csv", "npz", "hdf5") and not self.label:
            raise ValueError(f"dataset {self.dataset!r} needs a 'label' column name")
        if self.dataset == "bragg":
            self.task = "regression"
        if self.task == "regression" and self.dataset not in ("csv", "npz", "hdf5", "bragg"):
            raise ValueError(
                f"task 'regression' needs a user table (csv/npz/hdf5), not the {self.dataset!r} classification set"
            )
        return self


class BlockSpec(_Strict):
    """One NAC-style block: its own width (conv: ``channels``)/activation/norm choices; conv blocks
    also search the (odd, 'same'-padded) kernel size, a residual skip and a 2x pooling."""

    type: str = "dense"
    width: list[int] | None = None
    channels: list[int] | None = None
    kernel: list[int] | None = None
    skip: list[bool] | None = None
    pool: list[str] | None = None
    activation: list[str] | None = None
    norm: list[str] | None = None

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[int] | None) -> list[int] | None:
        return _check_widths(v) if v is not None else v

    @field_validator("kernel")
    @classmethod
    def _kernel(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(k < 1 or k > 15 or k % 2 == 0 for k in v)):
            raise ValueError("kernel choices must be odd integers in [1, 15] ('same' padding)")
        return list(dict.fromkeys(v)) if v is not None else v

    @field_validator("skip")
    @classmethod
    def _skip(cls, v: list[bool] | None) -> list[bool] | None:
        if v is not None and not v:
            raise ValueError("skip needs at least one choice")
        return list(dict.fromkeys(v)) if v is not None else v

    @field_validator("pool")
    @classmethod
    def _pool(cls, v: list[str] | None) -> list[str] | None:
        return _check_choices(v, POOLS, "pool") if v is not None else v

    @model_validator(mode="after")
    def _conv_fields(self) -> BlockSpec:
        if self.type == "dense":
            extra = [k for k in ("channels", "kernel", "skip", "pool") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to conv blocks, not dense")
        elif self.type == "conv_attention" and (self.kernel is not None or self.skip is not None):
            raise ValueError(
                "a conv_attention block has fixed 1x1 projections and a residual: no 'kernel'/'skip' genes"
            )
        elif self.channels is not None and self.width is not None:
            raise ValueError("a conv block takes 'channels' (or 'width'), not both")
        return self

    @property
    def is_conv(self) -> bool:
        return self.type in CONV_TYPES

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in BLOCK_TYPES_KNOWN:
            raise ValueError(f"unknown block type {v!r}; choose from {', '.join(BLOCK_TYPES_KNOWN)}")
        return v

    @field_validator("width")
    @classmethod
    def _width(cls, v: list[int] | None) -> list[int] | None:
        return _check_widths(v) if v is not None else v

    @field_validator("activation")
    @classmethod
    def _act(cls, v: list[str] | None) -> list[str] | None:
        return _check_choices(v, ACTIVATIONS, "activation") if v is not None else v

    @field_validator("norm")
    @classmethod
    def _norm(cls, v: list[str] | None) -> list[str] | None:
        return _check_choices(v, NORMS, "norm") if v is not None else v


def _check_choices(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    if not values:
        raise ValueError(f"{what} needs at least one choice")
    for v in values:
        if v not in allowed:
            raise ValueError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(values))


def _check_widths(values: list[int]) -> list[int]:
    if not values:
        raise ValueError("width needs at least one choice")
    if any(w < 1 or w > 4096 for w in values):
        raise ValueError("widths must be between 1 and 4096")
    return list(dict.fromkeys(values))


class LayerRange(_Strict):
    min: int = Field(1, ge=1)
    max: int = Field(3, ge=1, le=16)

    @model_validator(mode="after")
    def _order(self) -> LayerRange:
        if self.min > self.max:
            raise ValueError(f"layers.min ({self.min}) is larger than layers.max ({self.max})")
        return self


class ModelSpec(_Strict):
    """Architecture genes: depth, widths, activation, norm, dropout, bit width."""

    layers: LayerRange = LayerRange()
    width: list[int] = [8, 16, 32, 64]
    activation: list[str] = ["relu"]
    norm: list[str] = ["none"]
    dropout: list[float] = [0.0]
    bits: list[int] = [8]
    blocks: list[BlockSpec] | None = None
    #: per-sample input shape, channels first ([C, L] for conv1d, [C, H, W] for conv2d): the flat
    #: feature rows are reshaped to it (conv spaces only; MNIST defaults to [1, 28, 28])
    input_shape: list[int] | None = None

    @field_validator("width")
    @classmethod
    def _width(cls, v: list[int]) -> list[int]:
        return _check_widths(v)

    @field_validator("activation")
    @classmethod
    def _act(cls, v: list[str]) -> list[str]:
        return _check_choices(v, ACTIVATIONS, "activation")

    @field_validator("norm")
    @classmethod
    def _norm(cls, v: list[str]) -> list[str]:
        return _check_choices(v, NORMS, "norm")

    @field_validator("dropout")
    @classmethod
    def _dropout(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 <= p < 1.0 for p in v):
            raise ValueError("dropout choices must be in [0, 1)")
        return list(dict.fromkeys(v))

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if not v or any(not 2 <= b <= 16 for b in v):
            raise ValueError("bits choices must be integers in [2, 16]")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _blocks(self) -> ModelSpec:
        if self.blocks is not None and len(self.blocks) != self.layers.max:
            raise ValueError(f"blocks lists {len(self.blocks)} blocks but layers.max is {self.layers.max}")
        kinds = [b.type for b in self.blocks or []]
        convs = [k for k in kinds if k in CONV_TYPES]
        if not convs:
            return self
        if len(set(convs) - {"conv_attention"}) > 1:
            raise ValueError("conv1d and conv2d blocks cannot be mixed in one space")
        if kinds[: len(convs)] != convs:
            raise ValueError("conv blocks must come before dense blocks (a conv feature extractor, then the MLP head)")
        kind = self.conv_type()
        if self.input_shape is not None:
            want = {"conv1d": (2,), "conv2d": (3,)}.get(kind, (2, 3))
            if len(self.input_shape) not in want or any(d < 1 for d in self.input_shape):
                raise ValueError(
                    f"{kind} blocks need input_shape with {' or '.join(map(str, want))} positive entries (channels first)"
                )
        return self

    def conv_type(self) -> str | None:
        """'conv1d'/'conv2d' (or 'conv_attention' when only attention blocks) for a conv space, else None."""
        kinds = [b.type for b in self.blocks or [] if b.is_conv]
        return next((k for k in kinds if k != "conv_attention"), kinds[0] if kinds else None)


class TrainingSpec(_Strict):
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(128, ge=1)
    learning_rate: list[float] = [1e-3]
    l1: list[float] = [0.0]
    #: where every trainer runs: auto (CUDA when present), cpu, cuda or cuda:N (the CLI's --device wins)
    device: str = "cpu"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        from codesign.search.device import DeviceError, check_device

        try:
            return check_device(v)
        except DeviceError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("learning_rate")
    @classmethod
    def _lr(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 < x < 10.0 for x in v):
            raise ValueError("learning_rate choices must be in (0, 10)")
        return list(dict.fromkeys(v))

    @field_validator("l1")
    @classmethod
    def _l1(cls, v: list[float]) -> list[float]:
        if not v or any(x < 0 for x in v):
            raise ValueError("l1 choices must be >= 0")
        return list(dict.fromkeys(v))


class ConstraintSpec(_Strict):
    """Hardware budgets: a candidate over any of them is infeasible (not just worse)."""

    bops_max: float | None = Field(None, gt=0)
    params_max: int | None = Field(None, gt=0)
    resources_max_percent: float | None = Field(None, gt=0)
    latency_max_cycles: float | None = Field(None, gt=0)


#: the default DARTS sweep: BOPs budgets as fractions of the largest net's, log-spaced
DEFAULT_BOPS_TARGETS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)


class DartsSpec(_Strict):
    """``search.darts``: the differentiable (DARTS/NASH-style) search, one supernet per cost weight."""

    #: one supernet per BOPs budget (fraction of the largest net's BOPs), cost term
    #: ``target_weight * |log(E[BOPs] / budget)|`` (TuNAS-style: each lands near its budget; the default sweep)
    bops_targets: list[float] | None = None
    target_weight: float = Field(1.0, gt=0)
    #: or one per lambda of ``loss = task loss + lambda * log(E[BOPs] / BOPs of the largest net)`` (DARTS + penalty)
    cost_weights: list[float] | None = None
    warmup_epochs: int = Field(2, ge=0, le=1000)  # supernet weights only, shared by every cost weight
    epochs: int = Field(8, ge=1, le=1000)  # weights and architecture alternate, per cost weight
    weight_learning_rate: float = Field(3e-3, gt=0, lt=10)
    arch_learning_rate: float = Field(1e-2, gt=0, lt=10)
    #: softmax temperature, annealed geometrically from the first to the second value
    temperature: tuple[float, float] = (1.0, 0.1)
    #: share of the training rows that update the architecture (the rest update the weights)
    arch_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    #: architectures derived per supernet and retrained: the argmax, then the next most probable
    derive_top: int = Field(1, ge=1, le=32)

    @model_validator(mode="after")
    def _sweep(self) -> DartsSpec:
        if self.bops_targets is not None and self.cost_weights is not None:
            raise ValueError("give cost_weights or bops_targets, not both")
        if self.bops_targets is not None:
            if not self.bops_targets or any(not 0.0 < t <= 1.0 for t in self.bops_targets):
                raise ValueError("bops_targets must be fractions in (0, 1] of the largest net's BOPs")
            self.bops_targets = list(dict.fromkeys(float(t) for t in self.bops_targets))
        return self

    def sweep(self) -> list[tuple[str, float]]:
        """One (kind, value) per supernet: ('bops_target', fraction) or ('cost_weight', lambda)."""
        if self.cost_weights is not None:
            return [("cost_weight", w) for w in self.cost_weights]
        return [("bops_target", t) for t in self.bops_targets or DEFAULT_BOPS_TARGETS]

    @field_validator("cost_weights")
    @classmethod
    def _weights(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v or any(x < 0 for x in v):
            raise ValueError("cost_weights must be a non-empty list of numbers >= 0")
        return list(dict.fromkeys(float(x) for x in v))

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: tuple[float, float]) -> tuple[float, float]:
        if min(v) <= 0:
            raise ValueError("temperature values must be > 0")
        return v


class SearchSpec(_Strict):
    #: nsga2: NSGA-II over genomes (trains every candidate); darts: differentiable supernet search
    method: Literal["nsga2", "darts"] = "nsga2"
    darts: DartsSpec | None = None
    trials: int = Field(50, ge=1)
    population: int = Field(20, ge=2)
    seed: int = 0
    bops: Literal["qonnx", "nac"] = "qonnx"
    #: zero-cost proxy that pre-screens NSGA-II offspring (codesign.search.proxies); None = train all
    proxy: Literal["synflow", "naswot", "grad_norm"] | None = None
    #: share of each generation's new candidates trained when ``proxy`` is set (the best by proxy)
    proxy_keep: float | None = Field(None, gt=0.0, le=1.0)
    #: rank by (proxy, BOPs) Pareto level first, so cheap candidates are not all screened out
    proxy_cost: bool = True

    @model_validator(mode="after")
    def _method(self) -> SearchSpec:
        if self.darts is not None and self.method != "darts":
            raise ValueError("a darts section needs method: darts")
        if self.method == "darts":
            if self.proxy is not None:
                raise ValueError("proxy pre-screens NSGA-II offspring; it does not apply to method: darts")
            self.darts = self.darts or DartsSpec()
        return self

    @model_validator(mode="after")
    def _proxy(self) -> SearchSpec:
        if (self.proxy_keep is not None or not self.proxy_cost) and self.proxy is None:
            raise ValueError("proxy_keep/proxy_cost need a proxy (synflow, naswot or grad_norm)")
        if self.proxy is not None and self.proxy_keep is None:
            self.proxy_keep = 0.5
        return self


class BaselineSpec(_Strict):
    """A fixed architecture evaluated (and seeded) alongside the search."""

    name: str
    widths: list[int]
    activation: str = "relu"
    norm: str = "none"
    dropout: float = 0.0
    bits: int = 8
    learning_rate: float | None = None
    l1: float = 0.0
    #: a conv baseline (NAC's BraggNN): per conv block of the space's first len(widths) blocks, its kernel
    #: (1 for an attention block), residual skip and pool; widths = conv channels, then dense widths
    kernels: list[int] | None = None
    skips: list[bool] | None = None
    pools: list[str] | None = None

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if not v or any(w < 1 for w in v):
            raise ValueError("baseline widths must be a non-empty list of positive integers")
        return v

    @field_validator("activation")
    @classmethod
    def _act(cls, v: str) -> str:
        return _check_choices([v], ACTIVATIONS, "activation")[0]

    @field_validator("norm")
    @classmethod
    def _norm(cls, v: str) -> str:
        return _check_choices([v], NORMS, "norm")[0]


class Space(_Strict):
    """The whole search-space file."""

    name: str = "search"
    data: DataSpec
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    objectives: list[str] = ["accuracy", "bops"]
    constraints: ConstraintSpec = ConstraintSpec()
    search: SearchSpec = SearchSpec()
    target: str | None = None
    estimator: Literal["hls4ml", "da", "rule4ml"] = "hls4ml"
    reuse_factor: list[int] = [1]
    baselines: list[BaselineSpec] = []

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        if len(v) < 1:
            raise ValueError("objectives needs at least one entry")
        for o in v:
            if o not in OBJECTIVES:
                raise ValueError(f"unknown objective {o!r}; choose from {', '.join(OBJECTIVES)}")
        if len(set(v)) != len(v):
            raise ValueError("objectives lists an entry twice")
        return v

    @field_validator("reuse_factor", mode="before")
    @classmethod
    def _rf(cls, v: Any) -> Any:
        v = [v] if isinstance(v, int) else v
        if not isinstance(v, list) or not v or any(not isinstance(r, int) or r < 1 for r in v):
            raise ValueError("reuse_factor must be an integer >= 1 or a list of them")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _input_shape(self) -> Space:
        m = self.model
        if m.conv_type() and m.input_shape is None:
            if self.data.dataset != "mnist" or m.conv_type() == "conv1d":
                raise ValueError("conv blocks need model.input_shape (channels first, e.g. [1, 28, 28])")
            m.input_shape = [1, 28, 28]
        return self

    @model_validator(mode="after")
    def _target(self) -> Space:
        needs = {"lut", "resources", "latency"} & set(self.objectives)
        if (needs or self.constraints.resources_max_percent or self.constraints.latency_max_cycles) and not self.target:
            raise ValueError("resource/latency objectives or budgets need a 'target' (FPGA part or board)")
        return self

    # ------------------------------------------------------------------ genes
    def genes(self) -> list[tuple[str, list[Any]]]:
        """(name, choices) for every gene, in genome order."""
        m, t = self.model, self.training
        genes: list[tuple[str, list[Any]]] = [("layers", list(range(m.layers.min, m.layers.max + 1)))]
        per_block_act = m.blocks is not None and any(b.activation for b in m.blocks)
        per_block_norm = m.blocks is not None and any(b.norm for b in m.blocks)
        for i in range(m.layers.max):
            block = m.blocks[i] if m.blocks else None
            genes.append(
                (f"width{i}", (block.channels or block.width if block and (block.channels or block.width) else m.width))
            )
            if block is not None and block.type == "conv_attention":
                genes.append((f"pool{i}", block.pool or ["none"]))
            elif block is not None and block.is_conv:
                genes += [
                    (f"kernel{i}", block.kernel or [3]),
                    (f"skip{i}", block.skip or [False]),
                    (f"pool{i}", block.pool or ["none"]),
                ]
            if per_block_act:
                genes.append((f"activation{i}", (block.activation if block and block.activation else m.activation)))
            if per_block_norm:
                genes.append((f"norm{i}", (block.norm if block and block.norm else m.norm)))
        if not per_block_act:
            genes.append(("activation", m.activation))
        if not per_block_norm:
            genes.append(("norm", m.norm))
        genes += [("dropout", m.dropout), ("bits", m.bits), ("learning_rate", t.learning_rate), ("l1", t.l1)]
        if len(self.reuse_factor) > 1:  # a hardware gene: changes the estimate, not the training
            genes.append(("reuse_factor", self.reuse_factor))
        return genes

    def digest(self) -> str:
        """Hash of everything that changes what a trial means (resume refuses a different space)."""
        payload = self.model_dump(exclude={"search": {"trials"}, "training": {"device"}})  # same trial on any device
        if payload["search"]["proxy"] is None:  # fields added with proxies: absent = the digest of before
            del payload["search"]["proxy"], payload["search"]["proxy_keep"], payload["search"]["proxy_cost"]
        if payload["search"]["method"] == "nsga2":  # fields added with DARTS: absent = the digest of before
            del payload["search"]["method"], payload["search"]["darts"]
        if payload["model"]["input_shape"] is None:  # fields added with conv blocks: absent = the digest of before
            del payload["model"]["input_shape"]
        for b in payload["baselines"]:  # conv baselines' fields: absent = the digest of before
            for k in ("kernels", "skips", "pools"):
                if b[k] is None:
                    del b[k]
        for b in payload["model"]["blocks"] or []:
            for k in ("channels", "kernel", "skip", "pool"):
                if b[k] is None:
                    del b[k]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{more}"


def parse_space(payload: Any, source: str = "search space") -> Space:
    """Validate a parsed YAML/JSON mapping; one-line SearchSpaceError on any problem."""
    if not isinstance(payload, dict):
        raise SearchSpaceError(f"{source}: expected a mapping at the top level, got {type(payload).__name__}")
    try:
        return Space.model_validate(payload)
    except ValidationError as exc:
        raise SearchSpaceError(f"{source}: {_one_line(exc)}") from None


def load_space(path: str | Path) -> Space:
    """Read and validate a search-space YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SearchSpaceError(f"{path}: no such file")
    try:
        payload = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SearchSpaceError(f"{path}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SearchSpaceError(f"{path}: not valid YAML{where}") from None
    space = parse_space(payload, str(path))
    if space.data.path and not Path(space.data.path).is_absolute():
        space.data.path = str((path.parent / space.data.path).resolve())
    return space


def override_search(space: Space, source: str | Path, method: str | None = None, proxy: str | None = None,
                    device: str | None = None) -> Space:  # fmt: skip
    """``space`` with ``search.method`` / ``search.proxy`` / ``training.device`` overridden (the CLI's
    --method/--proxy/--device), validated like the YAML; ``proxy="none"`` removes a proxy."""
    payload = space.model_dump()
    flags = []
    if device is not None:
        payload["training"]["device"] = device
        flags.append(f"--device {device}")
    if method is not None:
        payload["search"]["method"] = method
        if method != "darts":
            payload["search"]["darts"] = None
        flags.append(f"--method {method}")
    if proxy is not None:
        payload["search"]["proxy"] = None if proxy == "none" else proxy
        if proxy == "none":
            payload["search"]["proxy_keep"], payload["search"]["proxy_cost"] = None, True
        flags.append(f"--proxy {proxy}")
    return parse_space(payload, f"{source} ({' '.join(flags)})")
