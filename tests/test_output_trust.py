"""Outputs you can trust: stale temp folders cleaned, --force swaps atomically (kills recovered),
--force never deletes the input model, a search folder is locked, yosys never sees our paths."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import mlp_proto

from codesign.backends import output as out
from codesign.backends.output import atomic_output_dir, check_destination, clean_stale
from codesign.errors import OutputError

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _build(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "marker").write_text(marker)
    return path


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_stale_temp_siblings_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    dead, dest = _dead_pid(), tmp_path / "prj"
    _build(tmp_path / f".prj.tmp-{dead}-abc", "half-written")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _build(tmp_path / f".prj.tmp-{sleeper.pid}-xyz", "being written")
        _build(tmp_path / f".prj.v2.tmp-{dead}-abc", "another output's")  # not a sibling of prj
        with atomic_output_dir(dest) as tmp:
            (tmp / "a").write_text("1")
        assert (dest / "a").read_text() == "1"
        assert _hidden(tmp_path) == [f".prj.tmp-{sleeper.pid}-xyz", f".prj.v2.tmp-{dead}-abc"]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert clean_stale(dest) == [tmp_path / f".prj.tmp-{sleeper.pid}-xyz"]  # its owner is dead now


def test_stale_temp_sibling_without_pid_is_removed_only_when_older_than_the_run(tmp_path):
    old = _build(tmp_path / ".prj.tmp-k3j4l5m6", "from an older codesign")
    os.utime(old, (out._RUN_STARTED - 60, out._RUN_STARTED - 60))
    fresh = _build(tmp_path / ".prj.tmp-a1b2c3d4", "from a run that started after this one")
    check_destination(tmp_path / "prj", force=False)
    assert not old.exists() and fresh.exists()


def test_force_replaces_atomically_and_leaves_nothing_hidden(tmp_path):
    dest = _build(tmp_path / "prj", "old")
    with atomic_output_dir(dest, force=True) as tmp:
        (tmp / "marker").write_text("new")
    assert (dest / "marker").read_text() == "new" and _hidden(tmp_path) == []
    with pytest.raises(RuntimeError), atomic_output_dir(dest, force=True) as tmp:  # a failed build: old one stays
        (tmp / "marker").write_text("broken")
        raise RuntimeError("conversion failed")
    assert (dest / "marker").read_text() == "new" and _hidden(tmp_path) == []


def test_two_rename_fallback_replaces_too(tmp_path, monkeypatch):
    monkeypatch.setattr(out, "_exchange", lambda a, b: False)
    dest = _build(tmp_path / "prj", "old")
    with atomic_output_dir(dest, force=True) as tmp:
        (tmp / "marker").write_text("new")
    assert (dest / "marker").read_text() == "new" and _hidden(tmp_path) == []


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from codesign.backends import output as out
out._exchange = lambda a, b: False            # the two-rename path (filesystems without RENAME_EXCHANGE)
real, calls = os.replace, []
def replace(a, b):
    real(a, b)
    calls.append(b)
    if len(calls) == 1:                          # the previous build is hidden; the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
with out.atomic_output_dir(Path(sys.argv[1]), force=True) as tmp:
    (tmp / "marker").write_text("new")
"""


def test_kill_between_the_two_renames_is_recovered_on_next_start(tmp_path):
    dest = _build(tmp_path / "prj", "good old build")
    proc = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_RENAMES, str(dest)], check=False, env=ENV, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not dest.exists()  # the kill left the good build hidden ...
    hidden = _hidden(tmp_path)
    assert any(".prj.old-" in h for h in hidden) and any(".prj.tmp-" in h for h in hidden), hidden
    with pytest.raises(OutputError, match="already exists; pass --force"):
        check_destination(dest, force=False)  # ... and the next run puts it back before deciding
    assert (dest / "marker").read_text() == "good old build" and _hidden(tmp_path) == []


def test_force_refuses_to_delete_the_folder_holding_the_input_model(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    src = models / "mlp.onnx"
    src.write_bytes(mlp_proto().SerializeToString())
    for dest in (models, tmp_path):  # the model's folder, and a parent of it
        with pytest.raises(OutputError, match="holds the input model"):
            check_destination(dest, force=True, keep=src)
    monkeypatch.chdir(models)
    with pytest.raises(OutputError, match="holds the current folder"):
        check_destination(Path("."), force=True)
    assert src.is_file()


def test_cli_compile_force_dot_keeps_the_model(tmp_path):
    src = tmp_path / "mlp.onnx"
    src.write_bytes(mlp_proto().SerializeToString())
    proc = subprocess.run([sys.executable, "-m", "codesign.cli", "compile", "mlp.onnx", "-t", "vu13p", "-o", ".",
                           "--force"], check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "holds the input model" in proc.stderr, proc.stderr
    assert src.is_file()


# ------------------------------------------------------------------ search folder lock
HOLD_LOCK = """
import sys, time
from pathlib import Path
from codesign.search.run import run_lock
with run_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_search_on_a_locked_run_folder_exits_with_one_line(tmp_path):
    pytest.importorskip("pymoo")
    from helpers import toy_npz

    from codesign.search.run import run_lock, run_search
    from codesign.search.space import parse_space

    spec = {
        "name": "toy", "data": {"dataset": "npz", "path": str(toy_npz(tmp_path, 200)), "label": "label"},
        "model": {"layers": {"min": 1, "max": 1}, "width": [2, 4, 8, 16], "activation": ["relu", "tanh"], "norm": ["none"]},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": [0.01]}, "search": {"trials": 2, "population": 2},
    }  # fmt: skip
    run = tmp_path / "run"
    run_search(parse_space(spec), run)  # a finished run with its store
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match="is in use by another codesign search"):
            run_search(parse_space(spec), run, trials=4, resume=True)
        (tmp_path / "space.yaml").write_text(__import__("yaml").safe_dump(spec))
        proc = subprocess.run([sys.executable, "-m", "codesign.cli", "search", str(tmp_path / "space.yaml"), "-o",
                               str(run), "--resume", "--trials", "4"], check=False, env=ENV, capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "in use by another" in proc.stderr, proc.stderr
    finally:
        holder.kill()
        holder.wait()
    summary = run_search(parse_space(spec), run, trials=4, resume=True)  # a killed holder released the lock
    assert summary.trials == 4
    with run_lock(run), run_lock(run):  # re-entrant within one process (a pipeline's stages nest)
        pass


# ------------------------------------------------------------------ yosys script
def _fake_yosys(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "yosys"
    tool.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        pwd > "{tmp_path}/yosys.cwd"
        printf '%s\\n' "$@" > "{tmp_path}/yosys.args"
        printf '     LUT6  7\\n     FDRE  3\\n'
        """))  # fmt: skip
    tool.chmod(0o755)
    return bin_dir


def _fake_project(folder: Path, top: str = "model") -> None:
    (folder / "src" / "static").mkdir(parents=True)
    for rel in ("src/static/shift_adder.v", "src/logic0.v", f"src/{top}.v", f"src/{top}_wrapper.v"):
        (folder / rel).write_text("module m; endmodule\n")


@pytest.mark.parametrize("name", ["a b", "x;y", "p; tee -o /tmp/pwned stat;", "q$(touch z)'\""])
def test_synth_script_never_holds_the_output_path(tmp_path, monkeypatch, name):
    from codesign.backends.rtl_backend import synthesize

    monkeypatch.setenv("PATH", f"{_fake_yosys(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    folder = tmp_path / name
    _fake_project(folder)
    counts = synthesize(folder, "model")
    assert (counts["LUT"], counts["FF"]) == (7, 3)
    assert (tmp_path / "yosys.cwd").read_text().strip() == str(folder)
    args = (tmp_path / "yosys.args").read_text()
    assert name not in args and str(tmp_path) not in args
    assert "read_verilog -sv src/static/shift_adder.v src/logic0.v src/model.v src/model_wrapper.v;" in args


def _yosys_path() -> str | None:
    local = Path("/tmp/hardening-yosys/root/usr/bin")  # a dpkg -x of Debian's yosys, where not installed
    return shutil.which("yosys") or shutil.which("yosys", path=str(local))


@pytest.mark.slow
@pytest.mark.skipif(_yosys_path() is None, reason="needs yosys (Debian package 'yosys')")
def test_real_yosys_synthesises_into_a_folder_named_with_space_and_semicolon(tmp_path, monkeypatch):
    from codesign import load
    from codesign.backends.rtl_backend import compile_rtl

    monkeypatch.setenv("PATH", f"{Path(_yosys_path()).parent}{os.pathsep}{os.environ['PATH']}")
    src = tmp_path / "m.onnx"
    from test_rtl_backend import _requant_model

    _requant_model().save(src)
    dest = tmp_path / "out dir; tee -o pwned.txt stat"
    t0 = time.perf_counter()
    result = compile_rtl(load(src), "vu13p", dest, synth=True, source=src)
    assert result.manifest["synth"]["LUT"] > 0 and (dest / "yosys_stat.txt").is_file()
    assert not list(tmp_path.rglob("pwned.txt")) and time.perf_counter() - t0 < 300
