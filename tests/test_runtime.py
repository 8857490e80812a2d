"""gimbal.runtime: the device choice, the named seed streams and the thread budget."""

from __future__ import annotations

import os

import pytest
import torch

from gimbal import runtime
from gimbal.errors import ParamError
from gimbal.runtime import (
    Dist,
    Seeds,
    TrainConfig,
    apply_thread_budget,
    resolve_device,
    setup_distributed,
    step_noise_seed,
    thread_budget,
)


# ----------------------------------------------------------------------------------------------- device
@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(no_cuda) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_takes_cuda_when_there_is_one(two_gpus) -> None:
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_cuda_without_a_gpu_names_the_source_and_the_fix(no_cuda) -> None:
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(ParamError) as err:
            resolve_device(spec, "--device")
        assert str(err.value) == f"--device is '{spec}' but no CUDA device is available; use 'auto' or 'cpu'"


def test_a_gpu_index_beyond_the_machine_is_refused(two_gpus) -> None:
    with pytest.raises(ParamError, match=r"params 'train.device' is 'cuda:2' but this machine has 2 CUDA device"
                                         r"\(s\); use cuda:0 .. cuda:1"):
        resolve_device("cuda:2", "params 'train.device'")


@pytest.mark.parametrize("spec", ["tpu", "gpu", "mps", "cuda:x", ""])
def test_an_unknown_device_lists_the_choices(spec: str, no_cuda) -> None:
    with pytest.raises(ParamError, match=f"--device: unknown device {spec!r}; use auto, cpu, cuda or cuda:N"):
        resolve_device(spec, "--device")


def test_the_train_group_checks_its_device_when_parsed() -> None:
    with pytest.raises(ParamError, match="'train.device' must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        TrainConfig(device="gpu")
    assert TrainConfig(device="cuda:3").device == "cuda:3"  # checked against the machine only when used


def test_a_single_process_run_is_rank_0_of_1(no_cuda, monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    dist, dev = setup_distributed("auto")
    assert dist == Dist(rank=0, world=1, local_rank=0) and dist.main and dev == torch.device("cpu")
    assert not Dist(rank=1, world=2).main


# ----------------------------------------------------------------------------------------------- seeds
def test_every_stream_of_a_rank_is_its_own_and_validation_is_shared() -> None:
    """The data, noise and validation streams never share a seed within a run, and across ranks only the validation
    stream (the same fixed scenes for every model and rank) and nothing else repeats."""
    for seed in (0, 1, 137):
        ranks = [Seeds.for_rank(seed, r) for r in range(4)]
        assert len({s.validation for s in ranks}) == 1
        for s in ranks:
            assert len({s.data, s.noise, s.validation}) == 3, s
            assert s.loader == s.torch
        for attr in ("torch", "data"):
            assert len({getattr(s, attr) for s in ranks}) == 4, attr
        assert len({s.noise for s in ranks}) == 4
    assert Seeds.for_rank(5, 0) == Seeds.for_rank(5, 0)
    assert Seeds.for_rank(5, 0).torch == 5  # rank 0's weights are those of the run seed itself
    streams = [Seeds.for_rank(seed, 0) for seed in range(50)]
    for attr in ("torch", "data", "noise", "validation"):
        assert len({getattr(s, attr) for s in streams}) == 50, attr


def test_step_noise_seeds_never_repeat_within_or_across_runs() -> None:
    """Re-seeding the sensor noise every step: no two (seed, step) pairs of ordinary runs share a noise seed."""
    seen = set()
    for seed in range(20):
        seeds = {step_noise_seed(seed, step) for step in range(20_000)}
        assert len(seeds) == 20_000 and not seeds & seen, seed
        seen |= seeds
    assert all(0 <= s < 2**63 for s in seen)  # torch.Generator.manual_seed's range


# ----------------------------------------------------------------------------------------------- threads
@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    yield
    torch.set_num_threads(threads)
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_thread_budget_from_the_environment(monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("GIMBAL_THREADS", raising=False)
    monkeypatch.delenv("GIMBAL_JOBS", raising=False)
    assert thread_budget() == 8
    monkeypatch.setenv("GIMBAL_JOBS", "2")
    assert thread_budget() == 4
    monkeypatch.setenv("GIMBAL_JOBS", "16")
    assert thread_budget() == 1  # never zero
    monkeypatch.setenv("GIMBAL_THREADS", "3")
    assert thread_budget() == 3  # an explicit count wins
    for name, bad in (("GIMBAL_THREADS", "0"), ("GIMBAL_THREADS", "two"), ("GIMBAL_JOBS", "-1")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ParamError, match=f"{name} must be a positive integer, got '{bad}'"):
            thread_budget()
        monkeypatch.setenv(name, "1")


def test_apply_thread_budget_limits_torch_and_the_children(restore_threads) -> None:
    assert apply_thread_budget(1) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    assert apply_thread_budget(2) == 2 and torch.get_num_threads() == 2


# ----------------------------------------------------------------------------------------------- train group
def test_warmup_ramps_linearly_to_the_full_rate() -> None:
    cfg = TrainConfig(warmup_steps=4)
    assert [cfg.lr_scale(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert TrainConfig(warmup_steps=0).lr_scale(0) == 1.0
