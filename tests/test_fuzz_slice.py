"""A seeded slice of the fuzz run (benchmarks/fuzz.py) in CI: mutants of the real models in ../shared
through ``codesign inspect --json`` and ``compile``, each in a capped, timed child process.

Every mutant must end ``ok`` (exit 0, the unmutated model's totals where they must not change)
or ``refused`` (exit 2, one stderr line). Classes still seen today, until validation at the door
lands (issue 15 item 2), are listed in KNOWN: the zero-bad test of such a family is xfail
(strict=False, class named); a class outside KNOWN fails CI at once. docs/fuzzing.md has the counts.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, all_shared_models, require_shared
from fuzz.mutators import FAMILIES, MODEL, Mutant, base_mutant, generate
from fuzz.runner import GOOD, OK, REFUSED, preload, register_bases, run_all, run_one
from onnx import TensorProto, helper, numpy_helper

SEED = 2024
PER_FAMILY = 8  # mutants per family in the slice
TIMEOUT_S, MEM_MB = 20.0, 3072
SMALL = 64_000  # bytes: the slice draws from the shared models up to this size (the full run takes every one)

#: Bad classes a family may still show (none since validation at the door landed; a class here turns its test xfail).
KNOWN: dict[str, set[str]] = {f: set() for f in ("bytes", "attr", "extdata", "names", "graph")}


def _slice_models() -> list[Path]:
    return [p for p in all_shared_models() if p.stat().st_size <= SMALL]


@pytest.fixture(scope="module")
def slice_outcomes():
    require_shared()
    models = _slice_models()
    register_bases([base_mutant(p, MODELS) for p in models])
    everything = generate(models, {f: PER_FAMILY for f in FAMILIES}, SEED, MODELS)
    rng = random.Random(SEED)
    picked = [m for f in FAMILIES for m in rng.sample([m for m in everything if m.family == f],
                                                        min(PER_FAMILY, sum(m.family == f for m in everything)))]  # fmt: skip
    preload({"inspect"})
    return run_all(picked, ["inspect", "--json"], TIMEOUT_S, MEM_MB)


def _bad(outcomes, family: str) -> list[str]:
    return [o.line() for o in outcomes if o.mutant.family == family and o.cls not in GOOD]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_slice_has_no_new_kind_of_failure(slice_outcomes, family):
    ran = [o for o in slice_outcomes if o.mutant.family == family]
    assert ran, f"no {family} mutants generated"
    new = [o.line() for o in ran if o.cls not in GOOD and o.cls not in KNOWN[family]]
    assert not new, "\n".join(new)


@pytest.mark.parametrize(
    "family",
    [pytest.param(f, marks=pytest.mark.xfail(strict=False, reason=f"known today: {', '.join(sorted(KNOWN[f]))}"))
     if KNOWN[f] else f for f in FAMILIES],
)  # fmt: skip
def test_slice_has_zero_bad_outcomes(slice_outcomes, family):
    bad = _bad(slice_outcomes, family)
    assert not bad, f"{len(bad)} bad:\n" + "\n".join(bad)


def test_unmutated_models_pass_and_a_broken_one_is_caught(tmp_path):
    """The harness itself: real models end ok with their totals, a hang, a crash and a hog are classified."""
    require_shared()
    preload({"inspect"})
    model = min(_slice_models(), key=lambda p: p.stat().st_size)
    base = base_mutant(model, MODELS)
    (tmp_path / "a").mkdir()
    o = run_one(base, ["inspect", "--json"], tmp_path / "a", TIMEOUT_S, MEM_MB)
    assert o.cls == OK and o.totals() and o.totals()["macs"] >= 0, o.stderr
    junk = Mutant("bytes", "text", base.base, {MODEL: b"not a model"})
    (tmp_path / "b").mkdir()
    r = run_one(junk, ["inspect"], tmp_path / "b", TIMEOUT_S, MEM_MB)
    assert r.cls == REFUSED and r.stderr.startswith("codesign: error: "), r.stderr
    from fuzz.runner import classify

    assert classify(None, 9, "", "any", False, 10, MEM_MB) == "signal"
    assert classify(1, None, "codesign: error: internal error: X", "any", False, 10, MEM_MB) == "internal"
    assert classify(2, None, "[W:onnxruntime] x\ncodesign: error: y\n", "any", False, 10, MEM_MB) == "multiline"
    assert classify(0, None, "", "refuse", False, 10, MEM_MB) == "accepted-invalid"
    assert classify(None, 9, "", "any", True, 10, MEM_MB) == "timeout"
    assert classify(1, None, "MemoryError", "any", False, 10, MEM_MB) == "memory"
    assert classify(3, None, "codesign: error: verification FAILED: ...", "any", False, 10, MEM_MB) == "verify-failed"


# ------------------------------------------------------------------ compile slice (every backend, then --verify)
def _compile(backend: str, *extra: str) -> list[str]:
    return ["compile", "-t", "vu13p", "--backend", backend, "-o", "{out}", *extra]


@pytest.mark.parametrize("backend", ["hls4ml", "rtl", "finn"])
def test_compile_slice_ends_ok_or_refused(backend, tmp_path):
    require_shared()
    pytest.importorskip({"hls4ml": "hls4ml", "rtl": "da4ml", "finn": "qonnx"}[backend])
    models = sorted(_slice_models(), key=lambda p: p.stat().st_size)[:6]
    muts = generate(models, {"attr": 1, "names": 1, "graph": 1}, SEED + 1, MODELS)
    muts = random.Random(SEED).sample(muts, min(6, len(muts)))
    preload({f"compile-{backend}"})
    outcomes = run_all(muts, _compile(backend), 60.0, 4096)
    bad = [o.line() for o in outcomes if o.cls not in GOOD]
    assert not bad, "\n".join(bad)


#: Small shared models each backend's --verify passes unmutated: their mutants reach the verification.
VERIFIED = {"rtl": ("bnn_model_fc_1layer.onnx",), "finn": ("bnn_model_fc_1layer.onnx", "two_layer_keras.onnx",
                                                            "conv1d_small_keras.onnx", "three_layer_keras.onnx")}  # fmt: skip


def _verify_slice(backend: str) -> tuple[list[str], bool]:
    """(bad outcome lines, whether some mutant verified) of the seeded ``--verify`` slice on ``backend``."""
    models = [p for p in _slice_models() if p.name in VERIFIED[backend]]
    muts = generate(models, {"bytes": 2, "names": 2, "attr": 1}, SEED + 2, MODELS)
    muts = random.Random(SEED).sample(muts, min(8, len(muts)))
    preload({f"compile-{backend}"})
    outcomes = run_all(muts, _compile(backend, "--verify", "--samples", "8"), 120.0, 4096)
    return [o.line() for o in outcomes if o.cls not in GOOD], any(o.cls == OK and "verif" in o.stdout for o in outcomes)


@pytest.mark.parametrize("backend", sorted(VERIFIED))
def test_verify_slice_ends_ok_or_refused_and_verifies_some(backend):
    """`compile --verify` mutants: exit 0 (bit-exact, measured) or one line; a mismatch would be exit 3 (bad).

    The fork server is a fresh interpreter: forked from this pytest process, whose earlier tests started
    thread pools (torch, OpenMP), an rtl child hung past its timeout inside the full suite only.
    """
    import json
    import subprocess
    import sys

    require_shared()
    pytest.importorskip("da4ml" if backend == "rtl" else "qonnx")
    here = Path(__file__).resolve().parent
    code = (f"import json, sys; sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]; import test_fuzz_slice as t; "
            f"print(json.dumps(t._verify_slice({backend!r})))")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200, cwd=here.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    bad, verified = json.loads(run.stdout.strip().splitlines()[-1])
    assert not bad, "\n".join(bad)
    assert verified, "no mutant verified"


# ------------------------------------------------------------------ mutants that found bugs in the full run
#: (model path suffix, family, generate() seed, label, compile arguments, what the one line must say): mutants
#: the full run (docs/fuzzing.md) saw fail.
FOUND = [
    ("floatquant_exec/qonnx_act_weight_fp8.onnx", "attr", 1, "input dim 1=1099511627776", ("hls4ml",),
     "CODESIGN_MAX_ACTIVATION_BYTES"),  # MemoryError, 4 TiB
    ("kwsmlp_w3a3/kwsmlp_w3a3.onnx", "attr", 1, "input dim 1=1099511627776", ("hls4ml",),
     "CODESIGN_MAX_ACTIVATION_BYTES"),  # MemoryError, 1.9 PiB
    ("build_dataflow/model.onnx", "bytes", 6, "flip@0.732802", ("finn", "--verify", "--samples", "8"),
     "initializer 'MatMul_0_param0' is annotated BIPOLAR but holds"),  # internal: qonnx's "Rounding error is too high"
    ("build_dataflow/model.onnx", "graph", 14, "chain 2000", ("finn",),
     "onnxruntime cannot load the model"),  # internal: onnxruntime's InvalidGraph (Relu on TopK's int64 indices)
    ("conv1d_small_keras.onnx", "names", 1, "all-nodes='aaaaaaaaaaaaaaaaaaaaaaaa'", ("hls4ml",),
     ""),  # internal: IndexError, 5000-char node names cut to one name, a weight overwritten by a scale
]  # fmt: skip


@pytest.mark.parametrize("suffix,family,seed,label,args,says", FOUND,
                         ids=[f"{f[0].split('/')[-1]}:{f[3]}" for f in FOUND])  # fmt: skip
def test_found_mutants_compile_ok_or_refused(suffix, family, seed, label, args, says):
    require_shared()
    pytest.importorskip("hls4ml" if args[0] == "hls4ml" else "qonnx")
    model = next((p for p in all_shared_models() if str(p).endswith(suffix)), None)
    if model is None:
        pytest.skip(f"{suffix} not in ../shared")
    mutant = next((m for m in generate([model], {family: 60}, seed, MODELS) if m.label == label), None)
    assert mutant is not None, f"{suffix}: no {family} mutant {label!r} with seed {seed}"
    preload({f"compile-{args[0]}"})
    (o,) = run_all([mutant], _compile(*args), 60.0, 4096)
    assert o.cls in GOOD, o.line()
    assert says in o.stderr, o.stderr


# ------------------------------------------------------------------ hypothesis: valid quantizers are accepted
def _quant_mlp(bits: int, scale_exp: int, signed: int, narrow: int) -> bytes:
    """x -> Quant(8b) -> MatMul(Quant(W, ``bits``)) -> y: a model whose weight type follows the parameters."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "w")]
    nodes = []
    for name, x, b, s, sg in (("qx", "x", 8, 0.25, 1), ("qw", "w", bits, 2.0**scale_exp, signed)):
        inits += [numpy_helper.from_array(np.array(v, dtype=np.float32), f"{name}_{k}") for k, v in
                  (("s", s), ("z", 0.0), ("b", float(b)))]  # fmt: skip
        nodes.append(helper.make_node("Quant", [x, f"{name}_s", f"{name}_z", f"{name}_b"], [f"{name}_o"], name=name,
                                      domain="qonnx.custom_op.general", signed=sg, narrow=narrow if name == "qw" else 0,
                                      rounding_mode="ROUND"))  # fmt: skip
    nodes.append(helper.make_node("MatMul", ["qx_o", "qw_o"], ["y"], name="mm"))
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)  # fmt: skip
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    )
    m.ir_version = 8
    return m.SerializeToString()


def test_valid_quantizer_parameters_are_accepted_with_their_bit_width(tmp_path):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    preload({"inspect"})
    counter = iter(range(10**6))

    @hypothesis.settings(max_examples=6, deadline=None, derandomize=True, database=None)
    @hypothesis.given(bits=st.integers(2, 16), scale_exp=st.integers(-8, 2), signed=st.integers(0, 1),
                      narrow=st.integers(0, 1))  # fmt: skip
    def check(bits: int, scale_exp: int, signed: int, narrow: int) -> None:
        d = tmp_path / str(next(counter))
        d.mkdir()
        m = Mutant("attr", f"bits={bits}", "quant_mlp", {MODEL: _quant_mlp(bits, scale_exp, signed, narrow)})
        o = run_one(m, ["inspect", "--json"], d, TIMEOUT_S, MEM_MB)
        assert o.cls == OK, o.stderr
        import json

        row = next(r for r in json.loads(o.stdout)["layers"] if r["op"] == "MatMul")
        exact = (f"INT{bits}" if signed else f"UINT{bits}") if scale_exp == 0 else f"SCALEDINT<{bits}>"
        assert row["weight_dtype"] == exact, row
        assert row["bops"] == pytest.approx(row["macs"] * 8 * bits), row

    check()
