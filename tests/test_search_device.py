"""--device / training.device: parsing, auto selection (a faked CUDA), per-worker pinning and where the
trainers put their tensors. The CUDA path itself runs in benchmarks/gpu_check.py on a GPU machine."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from codesign.cli import app
from codesign.search import device as dev
from codesign.search.device import DeviceError, check_device, pin, resolve_device, worker_device
from codesign.search.space import SearchSpaceError, parse_space

SPACE = {"name": "d", "data": {"dataset": "bragg", "max_rows": 200}, "model": {"layers": {"min": 1, "max": 1}, "width": [4]},
         "training": {"epochs": 1}}  # fmt: skip


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend this machine has 2 CUDA devices (selection only: nothing is allocated on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(dev, "_PINNED", {})


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_PINNED", {})


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:0", "CUDA:3", " cpu "])
def test_device_strings_accepted(text):
    assert check_device(text) == text.strip().lower()


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:0", "auto:1", "cuda:-1", ""])
def test_device_strings_refused_in_one_line(text):
    with pytest.raises(DeviceError, match=r"expected auto, cpu, cuda or cuda:N"):
        check_device(text)


def test_auto_picks_cuda_when_present_else_cpu(fake_gpus, monkeypatch):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_without_a_gpu_is_refused(no_gpu):
    with pytest.raises(DeviceError, match="no CUDA GPU is available here"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="no CUDA GPU is available here"):
        resolve_device("cuda:0")


def test_workers_pin_one_gpu_each_round_robin(fake_gpus):
    assert [worker_device("auto", k) for k in range(3)] == [torch.device("cuda", k) for k in (0, 1, 0)]
    assert worker_device("cuda:1", 0) == torch.device("cuda", 1)  # an explicit GPU is kept
    assert worker_device("cpu", 1) == torch.device("cpu")
    assert pin("auto", 3) == "cuda:1" and resolve_device("auto") == torch.device("cuda", 1)  # the pinned one


def test_local_pool_worker_initializer_pins_by_start_order(fake_gpus):
    import multiprocessing as mp

    from codesign.search import cluster

    counter = mp.get_context("spawn").Value("i", 0)
    space = parse_space({**SPACE, "training": {"epochs": 1, "device": "auto"}})
    pinned = []
    for _ in range(3):
        cluster._init_worker(space, None, counter)
        pinned.append(dev._PINNED["device"])
    assert pinned == [torch.device("cuda", k) for k in (0, 1, 0)]


def test_training_device_in_the_yaml_is_validated_and_not_in_the_digest():
    base = parse_space(SPACE)
    assert base.training.device == "cpu"  # the CPU path stays the default
    auto = parse_space({**SPACE, "training": {"epochs": 1, "device": "auto"}})
    assert auto.training.device == "auto" and auto.digest() == base.digest()  # a run resumes on any device
    with pytest.raises(SearchSpaceError, match=r"training.device: device 'tpu'"):
        parse_space({**SPACE, "training": {"epochs": 1, "device": "tpu"}})


def test_evaluate_genomes_trains_on_the_resolved_device(fake_gpus, monkeypatch):
    """The population trainer receives the device ``auto`` resolved to (cuda:0 here)."""
    from codesign.search import nsga
    from codesign.search.genome import Genome

    seen = []

    def fake_train(genomes, data, epochs, batch_size, seed=0, device=None, **kw):
        seen.append(device)
        raise RuntimeError("stop")

    monkeypatch.setattr(nsga, "train_population", fake_train)
    space = parse_space({**SPACE, "training": {"epochs": 1, "device": "auto"}})
    with pytest.raises(RuntimeError, match="stop"):
        nsga.evaluate_genomes(space, None, [Genome((4,), ("relu",), ("none",))])
    assert seen == [torch.device("cuda", 0)]


def test_population_group_tensors_live_on_the_training_device():
    """Every tensor of a batched group (weights, Adam state, masks) is made on the given device."""
    from codesign.search.genome import Genome, random_params
    from codesign.search.train import _Group

    genomes = [Genome((4,), ("relu",), ("batch",)), Genome((6,), ("tanh",), ("none",))]
    inits = [random_params(g, 5, 2, seed=k) for k, g in enumerate(genomes)]
    group = _Group(genomes, inits, 5, 2, device="meta")  # a device with no storage: placement only
    tensors = [group.flat, group.m, group.v, group.lr2, group.bits, group.in_scale, *group.mask, *group.rm, *group.rv]
    assert {t.device.type for t in tensors} == {"meta"}
    cpu = _Group(genomes, inits, 5, 2)
    assert cpu.flat.device.type == "cpu"


def test_cli_refuses_bad_devices_in_one_line(tmp_path, no_gpu):
    runner = CliRunner()
    yml = tmp_path / "s.yaml"
    import yaml

    yml.write_text(yaml.safe_dump(SPACE))
    r = runner.invoke(app, ["search", str(yml), "-o", str(tmp_path / "r"), "--device", "gpu"])
    assert r.exit_code == 2 and "training.device: device 'gpu': expected auto, cpu, cuda or cuda:N" in r.output
    r = runner.invoke(app, ["search", str(yml), "-o", str(tmp_path / "r"), "--device", "cuda:0"])
    assert r.exit_code == 2 and "no CUDA GPU is available here" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "r").exists()
