"""Fuzz the ``codesign`` CLI with mutants of every model in ../shared and print the outcome classes.

    python benchmarks/fuzz.py                         # >= 5,000 inspect, 500 compiles + 20 --verify per backend
    python benchmarks/fuzz.py --inspect 300 --compile 0 --verify 0 --seed 3   # a quick look
    python benchmarks/fuzz.py --budget-s 1800 --json fuzz.json

Every mutant runs in a forked child with an RLIMIT_AS cap and a timeout (tests/fuzz/runner.py)
and must end ``ok`` (exit 0, the right totals) or ``refused`` (exit 2, one stderr line); every
other class is a bug. Outcome classes and what each family does: docs/fuzzing.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzz.mutators import FAMILIES, MODEL, Mutant, base_mutant, generate
from fuzz.runner import CLASSES, GOOD, OK, Outcome, preload, register_bases, run_all

SHARED = Path(os.environ.get("CODESIGN_SHARED", ROOT.parent / "shared"))
#: Backend -> (compile stage seed salt, --verify stage seed salt): hls4ml's and rtl's compile salts are the
#: earlier runs', hls4ml --verify keeps its 3 (its stage was "verify").
BACKENDS = {"hls4ml": (1, 3), "rtl": (2, 5), "finn": (4, 6)}


def spread(total: int, models: int, families: list[str]) -> dict[str, int]:
    """Mutants per model per family so that all of them add up to at least ``total``."""
    each = math.ceil(total / max(1, models * len(families))) if total else 0
    return {f: each for f in families}


def table(outcomes: list[Outcome], title: str) -> str:
    """Family x class counts, then the bad outcomes grouped by class and message."""
    fams = sorted({o.mutant.family for o in outcomes})
    cls = [c for c in CLASSES if any(o.cls == c for o in outcomes)]
    counts = Counter((o.mutant.family, o.cls) for o in outcomes)
    lines = [f"== {title}: {len(outcomes)} mutants, {sum(o.cls not in GOOD for o in outcomes)} bad",
             f"{'family':10s} " + " ".join(f"{c:>16s}" for c in cls)]  # fmt: skip
    for f in fams:
        lines.append(f"{f:10s} " + " ".join(f"{counts[f, c]:16d}" for c in cls))
    lines.append(f"{'total':10s} " + " ".join(f"{sum(counts[f, c] for f in fams):16d}" for c in cls))
    bad = Counter((o.cls, o.mutant.family, _msg(o)) for o in outcomes if o.cls not in GOOD)
    for (c, f, msg), n in sorted(bad.items(), key=lambda kv: -kv[1])[:40]:
        lines.append(f"  {n:4d} x {c:16s} {f:8s} {msg}")
    slow = max(outcomes, key=lambda o: o.seconds, default=None)
    fat = max(outcomes, key=lambda o: o.max_rss_mb, default=None)
    if slow and fat:
        lines.append(f"  slowest {slow.seconds:.1f} s ({slow.mutant.base} {slow.mutant.label[:40]}); "
                     f"largest RSS {fat.max_rss_mb:.0f} MB ({fat.mutant.base} {fat.mutant.label[:40]})")  # fmt: skip
    return "\n".join(lines)


def _msg(o: Outcome) -> str:
    """A bad outcome's message, with paths and numbers folded so that like groups with like."""
    import re

    err = [ln for ln in o.stderr.strip().splitlines() if ln.strip()]
    text = err[-1] if o.cls == "traceback" and err else (err[0] if err else f"(exit {o.code}) {o.mutant.label}")
    text = re.sub(r"/tmp/codesign-fuzz-\w+", "<dir>", text)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)[:110]


def accepted(models: list[Path], bases: list[Mutant], command: list[str], args: argparse.Namespace) -> list[Path]:
    """The models whose unmutated run of ``command`` ends ok: their mutants reach the backend's verification,
    where most others' end at the refusal their unmutated model already gets (rtl takes 1 of the shared models)."""
    outcomes = run_all(bases, command, args.timeout, args.mem_mb, jobs=args.jobs)
    keep = [p for p, o in zip(models, outcomes) if o.cls == OK]
    print(f"  {command[4]} --verify: {len(keep)} of {len(models)} unmutated models pass: "
          + ", ".join(p.name for p in keep), flush=True)  # fmt: skip
    return keep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inspect", type=int, default=5000, help="loader mutants through `inspect --json`")
    ap.add_argument("--compile", type=int, default=500, help="`compile` mutants per backend")
    ap.add_argument("--verify", type=int, default=20, help="`compile --verify --samples 8` mutants per backend")
    ap.add_argument(
        "--verify-accepted",
        action="store_true",
        help="--verify stages mutate only the models whose unmutated --verify compile ends ok",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated mutant families")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant")
    ap.add_argument("--mem-mb", type=int, default=4096, help="RLIMIT_AS of each child, MiB")
    ap.add_argument(
        "--backends", default="hls4ml,rtl,finn", help="backends to compile (and --verify): hls4ml, rtl, finn"
    )
    ap.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    ap.add_argument("--budget-s", type=float, default=None, help="stop each stage when this much time is spent")
    ap.add_argument("--json", type=Path, default=None, help="write every outcome here")
    ap.add_argument("--from-json", type=Path, default=None, help="print the tables of a saved --json run and exit")
    args = ap.parse_args(argv)
    if args.from_json:
        for name, rows in json.loads(args.from_json.read_text()).items():
            print(table([Outcome(Mutant(r["family"], r["label"], r["base"], {}), name, r["class"], r["code"], r["seconds"],
                                 r["max_rss_mb"], r["stderr"]) for r in rows], f"{name} (from {args.from_json})"))  # fmt: skip
        return 0

    models = sorted((SHARED / "models").rglob("*.onnx"))
    if not models:
        print(f"no models under {SHARED / 'models'} (set CODESIGN_SHARED)", file=sys.stderr)
        return 2
    fams = [f for f in args.families.split(",") if f]
    unknown = set(fams) - set(FAMILIES)
    if unknown:
        print(f"unknown families: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    bases = [base_mutant(p, SHARED / "models") for p in models]
    register_bases(bases)
    backends = [b for b in args.backends.split(",") if b]
    if set(backends) - set(BACKENDS):
        print(f"unknown backends: {', '.join(sorted(set(backends) - set(BACKENDS)))}", file=sys.stderr)
        return 2
    stages: list[tuple[str, list[str], int, int]] = [("inspect", ["inspect", "--json"], args.inspect, 0)]
    for b in backends:  # salts 1, 2 (hls4ml, rtl: as before) and 4 (finn) compile; verify: 3, 5, 6
        compile_cmd = ["compile", "-t", "vu13p", "--backend", b, "-o", "{out}"]
        stages.append((b, compile_cmd, args.compile, BACKENDS[b][0]))
        stages.append((f"{b}-verify", [*compile_cmd, "--verify", "--samples", "8"], args.verify, BACKENDS[b][1]))
    preload({"inspect", *(f"compile-{b}" for b in backends)} if args.compile or args.verify else {"inspect"})
    report: dict[str, list[dict]] = {}
    bad_total = 0
    for name, command, total, salt in stages:
        if total <= 0:
            continue
        pool = models
        if args.verify_accepted and name.endswith("-verify"):
            pool = accepted(models, bases, command, args)
            if not pool:
                continue
        per = spread(total, len(pool), fams)
        while True:  # some families make fewer mutants of some models (no weights to externalise): top up
            mutants: list[Mutant] = generate(pool, per, args.seed * 10 + salt, SHARED / "models")
            if len(mutants) >= total:
                break
            per = {f: n + max(1, n // 10) for f, n in per.items()}
        # interleave models and families so a budget-cut run still covers all of them
        mutants.sort(key=lambda m: zlib.crc32(f"{m.family}|{m.base}|{m.label}|{len(m.files[MODEL])}".encode()))
        mutants = mutants[: max(total, 1)]
        t0 = time.monotonic()
        outcomes = []
        for start in range(0, len(mutants), 50):
            if args.budget_s and time.monotonic() - t0 > args.budget_s:
                print(f"  {name}: budget of {args.budget_s:.0f} s spent after {len(outcomes)} mutants", flush=True)
                break
            outcomes += run_all(mutants[start : start + 50], command, args.timeout, args.mem_mb, jobs=args.jobs)
            bad = sum(o.cls not in GOOD for o in outcomes)
            print(
                f"  {name}: {len(outcomes)}/{len(mutants)} mutants, {bad} bad, {time.monotonic() - t0:.0f} s",
                flush=True,
            )
            report[name] = [
                {"family": o.mutant.family, "base": o.mutant.base, "label": o.mutant.label, "class": o.cls,
                 "code": o.code, "seconds": round(o.seconds, 2), "max_rss_mb": round(o.max_rss_mb),
                 "stderr": o.stderr[-2000:]}
                for o in outcomes
            ]  # fmt: skip
            if args.json:  # after every chunk: a run cut short keeps what it measured
                args.json.write_text(json.dumps(report, indent=1))
        print(table(outcomes, f"{name} ({time.monotonic() - t0:.0f} s, seed {args.seed})"), flush=True)
        bad_total += sum(o.cls not in GOOD for o in outcomes)
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main())
