"""Search-space YAML: examples validate, bad files give one clear line, genes round-trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codesign.search.genome import Genome, baseline_genome, decode, encode
from codesign.search.space import SearchSpaceError, load_space, parse_space

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "search").glob("*.yaml"))
BASE = {"data": {"dataset": "magic"}}


def _with(**sections):
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    out.update(sections)
    return out


def test_examples_validate():
    names = {p.stem for p in EXAMPLES}
    assert {"magic_small", "snac_pack_mlp", "nac_blocks"} <= names
    snac = load_space(ROOT / "examples/search/snac_pack_mlp.yaml")
    genes = dict(snac.genes())
    assert genes["layers"] == [4, 5, 6, 7, 8] and genes["width7"] == [8, 16, 32, 64]
    assert "learning_rate" in genes and "l1" in genes and "dropout" in genes
    nac = load_space(ROOT / "examples/search/nac_blocks.yaml")
    genes = dict(nac.genes())
    assert genes["activation0"] == ["relu", "gelu", "leaky_relu"] and genes["norm3"] == ["none", "batch"]
    assert genes["width0"] == [4, 8, 16] and genes["kernel1"] == [1, 3] and genes["skip1"] == [False, True]
    assert (
        genes["width2"] == [4, 8]
        and genes["pool2"] == ["none", "max"]
        and "kernel2" not in genes
        and "skip2" not in genes
    )
    assert "kernel3" not in genes and nac.model.input_shape == [1, 28, 28]


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"data": {"dataset": "imagenet"}}, "data.dataset: Input should be"),
        (_with(model={"width": []}), "model.width: width needs at least one choice"),
        (_with(model={"activation": ["relu", "swish"]}), "unknown activation 'swish'"),
        (_with(model={"layers": {"min": 4, "max": 2}}), "layers.min (4) is larger than layers.max (2)"),
        (_with(model={"bits": [1]}), "bits choices must be integers in [2, 16]"),
        (
            _with(model={"blocks": [{"type": "conv_attention", "kernel": [3]}], "layers": {"min": 1, "max": 1}}),
            "fixed 1x1 projections",
        ),
        (
            _with(model={"blocks": [{"type": "attention"}], "layers": {"min": 1, "max": 1}}),
            "unknown block type 'attention'",
        ),
        (
            _with(model={"blocks": [{"type": "conv2d"}], "layers": {"min": 1, "max": 1}}),
            "conv blocks need model.input_shape",
        ),
        (
            _with(model={"blocks": [{"type": "conv1d"}], "layers": {"min": 1, "max": 1}, "input_shape": [1, 2, 3]}),
            "conv1d blocks need input_shape with 2",
        ),
        (
            _with(
                model={
                    "blocks": [{"type": "dense"}, {"type": "conv1d"}],
                    "layers": {"min": 1, "max": 2},
                    "input_shape": [1, 8],
                }
            ),
            "conv blocks must come before dense",
        ),
        (
            _with(
                model={
                    "blocks": [{"type": "conv1d"}, {"type": "conv2d"}],
                    "layers": {"min": 1, "max": 2},
                    "input_shape": [1, 8],
                }
            ),
            "cannot be mixed",
        ),
        (
            _with(
                model={
                    "blocks": [{"type": "conv1d", "kernel": [2]}],
                    "layers": {"min": 1, "max": 1},
                    "input_shape": [1, 8],
                }
            ),
            "kernel choices must be odd",
        ),
        (
            _with(model={"blocks": [{"type": "dense", "kernel": [3]}], "layers": {"min": 1, "max": 1}}),
            "kernel only apply to conv blocks",
        ),
        (
            _with(model={"blocks": [{"width": [8]}], "layers": {"min": 1, "max": 2}}),
            "blocks lists 1 blocks but layers.max is 2",
        ),
        (_with(objectives=["accuracy", "flops"]), "unknown objective 'flops'"),
        (_with(objectives=["accuracy", "resources"]), "need a 'target'"),
        (_with(bogus=1), "bogus: Extra inputs are not permitted"),
        ({"data": {"dataset": "csv", "path": "x.csv"}}, "needs a 'label' column name"),
        (_with(training={"learning_rate": [0.0]}), "learning_rate choices must be in (0, 10)"),
        ([1, 2], "expected a mapping at the top level"),
    ],
)
def test_bad_spaces_give_one_line(payload, expected):
    with pytest.raises(SearchSpaceError) as info:
        parse_space(payload, "space.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("space.yaml: ") and expected in msg, msg


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("data: {dataset: magic\nmodel: [")
    with pytest.raises(SearchSpaceError, match=r"not valid YAML at line \d"):
        load_space(p)
    with pytest.raises(SearchSpaceError, match="no such file"):
        load_space(tmp_path / "missing.yaml")


def test_cli_reports_yaml_error_in_one_line(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("data: {dataset: magic}\nmodel: {width: [0]}\n")
    r = subprocess.run([sys.executable, "-m", "codesign.cli", "search", str(p), "-o", str(tmp_path / "run")], check=False,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"codesign: error: {p}: model.width: widths must be between 1 and 4096"]
    assert not (tmp_path / "run").exists()


def test_decode_encode_round_trip():
    space = load_space(ROOT / "examples/search/nac_blocks.yaml")
    rng = np.random.default_rng(0)
    genes = space.genes()
    for _ in range(50):
        x = np.asarray([rng.integers(len(c)) for _, c in genes])
        g = decode(space, x)
        assert space.model.layers.min <= g.depth <= space.model.layers.max
        assert decode(space, encode(space, g)) == g
        assert g.kinds[:2] == ("conv2d", "conv2d") and g.input_shape == (1, 28, 28)
        assert not g.skips[1] or g.widths[0] == g.widths[1]  # a skip needs equal channels (canonical)
        if g.depth >= 3:
            assert g.kinds[2] == "conv_attention" and g.skips[2] and g.kernels[2] == 1
    base = baseline_genome(space, space.baselines[0])
    assert base == Genome((64, 32, 32), ("relu",) * 3, ("none",) * 3, 0.0, 8, 0.001, 0.0)
    assert encode(space, base) is None  # an MLP is outside a conv-first space (still trained, as a baseline)
    snac = load_space(ROOT / "examples/search/snac_pack_mlp.yaml")
    assert encode(snac, Genome((128,) * 4, ("relu",) * 4, ("none",) * 4)) is None  # width 128 is not a choice
    assert (
        encode(snac, Genome((64,) * 4, ("relu",) * 4, ("none",) * 4, learning_rate=snac.training.learning_rate[0]))
        is not None
    )


def test_unused_genes_do_not_change_identity():
    space = parse_space(_with(model={"layers": {"min": 1, "max": 3}, "width": [4, 8]}))
    a = decode(space, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    b = decode(space, [0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    assert a.widths == (8,) and a.key() == b.key()
    assert space.digest() == parse_space(_with(model={"layers": {"min": 1, "max": 3}, "width": [4, 8]})).digest()
