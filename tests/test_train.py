"""The end-to-end system (sensor + network) and the training loop on tiny synthetic shards."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from shard_fixtures import training_shards

from gimbal.config import parse_config
from gimbal.data.irradiance import Scenes, fixed_irradiance_set
from gimbal.display import sensor_ground_truth
from gimbal.errors import DataError, ParamError
from gimbal.pipeline import build_system, train
from gimbal.system import GimbalSystem, load_system, save_system
from gimbal.training.burst import validate

REPO = Path(__file__).resolve().parents[1]


def tiny_params(n: int = 3) -> dict:
    """The repo's params.yaml shrunk to a few steps on 16x16 crops of 17-frame clips."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["exposure"]["n"] = n
    p["augment"].update(crop=24, center=16, out_size=16)
    p["model"].update(flow_levels=2, kpn_base_channels=4, kpn_depth=1)
    p["train"].update(steps=6, batch_size=2, val_every=3, val_clips=2, checkpoint_every=2, samples_per_clip=2,
                      loader="torch", lr=1e-3)
    p["flow_pretrain"]["use"] = False  # the stage scripts here train without models/flow_pretrained.pt
    return p


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_shards")
    return training_shards(root)


def _irradiance(b: int = 2, frames: int = 17, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2e5 * (0.2 + torch.rand(b, frames, 1, size, size, generator=g))  # e-/s: ~ 100-500 e- in 2 ms


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("variant", ["gimbal", "kpn"])
def test_system_shapes_and_gradients(n: int, variant: str) -> None:
    # Fixed init: with kpn_init=reference the aligned frames (and so the flow net) reach the loss at
    # step 0 only through the KPN head's weights; with 4-channel test KPNs, some random inits (about 1
    # in 30) have all last-layer ReLUs dead, and the flow gets its first gradient a few steps later.
    torch.manual_seed(0)
    p = tiny_params(n)
    p["variants"]["kpn"] = {"model": {"use_flow": False, "learn_exposure": True}}  # logits get gradient in both
    system = GimbalSystem.from_params(p, variant)
    irr = _irradiance()
    out = system(irr, step=0, srgb=torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    assert out.image.shape == (2, 1, 16, 16) and out.target.shape == (2, 1, 16, 16)
    assert out.burst.shape == (2, n, 1, 16, 16)
    out.loss.backward()
    logits = [q for name, q in system.named_parameters() if name.startswith("sensor.")]
    assert logits and all(q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0 for q in logits)
    kpn = [q for name, q in system.named_parameters() if name.startswith("net.kpn.")]
    assert all(q.grad is not None for q in kpn) and sum(float(q.grad.abs().sum()) for q in kpn) > 0
    if variant == "gimbal":
        # at init only the flow net's last (zero) conv receives gradient: it is what moves first
        flow = [q for name, q in system.named_parameters() if name.startswith("net.flow.")]
        assert sum(float(q.grad.abs().sum()) for q in flow) > 0


def test_ground_truth_matches_noise_free_full_exposure() -> None:
    """The ``sensor`` target (eval.target: sensor): the noise-free full-budget exposure in DN, 2.2 power curve."""
    p = tiny_params()
    p["eval"]["target"] = "sensor"
    system = GimbalSystem.from_params(p)
    cam = system.sensor.camera
    static = torch.full((1, 17, 1, 4, 4), 1000.0 / cam.budget_s)  # 1000 e- over the budget
    gt = sensor_ground_truth(static, cam)
    expected = (1000.0 * cam.gain_dn_per_e / cam.max_dn) ** (1 / 2.2)
    assert torch.allclose(gt, torch.full_like(gt, expected), rtol=1e-3)
    # the exposure-normalized noise-free burst of a static scene has the target's brightness (eq. 14)
    system.eval()
    out = system.sensor(static.repeat(1, 1, 1, 8, 8))
    normalized = system.sensor.normalize(out.burst, out.durations_s)
    normalized = normalized.detach()
    assert abs(float(normalized.mean()) - 1000.0 * cam.gain_dn_per_e / cam.max_dn) < 0.02 * float(normalized.mean())


def test_variant_configs() -> None:
    p = tiny_params()
    cfg = parse_config(p)
    assert cfg.variant("kpn")[0].use_flow is False
    assert cfg.variant("gimbal_uniform")[0].learn_exposure is False
    assert cfg.model.learn_exposure is True  # the original is not modified
    with pytest.raises(ParamError, match="unknown model variant 'nope'"):
        cfg.variant("nope")
    p["variants"]["kpn"] = {"model": {"use_flw": False}}
    with pytest.raises(ParamError, match="did you mean 'use_flow'"):
        parse_config(p)


@pytest.mark.parametrize("exposure", [{"idle_slot": True}, {"idle_slot": False, "init_us": [300, 1100, 400]},
                                      {"idle_slot": True, "init_us": [872, 234, 583]}])
def test_fixed_exposure_variants_are_uniform_over_the_whole_budget(exposure: dict) -> None:
    """Whatever the main model's exposure settings, gimbal_uniform and kpn capture n equal exposures
    filling T: n dt + n dt_ro = T, no idle time."""
    p = tiny_params()
    p["exposure"].update(exposure)
    for variant in ("gimbal_uniform", "kpn"):
        sched = GimbalSystem.from_params(p, variant).sensor.schedule_us()
        d = sched["durations_us"]
        assert max(d) - min(d) < 1e-6 and sched["idle_us"] == pytest.approx(0.0, abs=1e-6)
        assert sum(d) + 3 * sched["readout_us"] == pytest.approx(sched["budget_us"], rel=1e-9)


def test_train_config_errors() -> None:
    p = tiny_params()
    p["train"]["loader"] = "fast"
    with pytest.raises(ParamError, match="train.loader"):
        parse_config(p).train
    p = tiny_params()
    p["train"]["setps"] = 3
    with pytest.raises(ParamError, match="did you mean 'steps'"):
        parse_config(p).train


def test_validation_does_not_touch_the_training_noise() -> None:
    """Validation draws its noise from its own generator: the training stream continues as without it
    (a reseed there made every block of val_every steps repeat the same noise)."""
    p = tiny_params()
    irr = _irradiance(b=1)
    runs = []
    for with_validation in (False, True):
        torch.manual_seed(0)
        system = GimbalSystem.from_params(p).train()
        system.sensor.set_seed(p["seed"])
        first = system.sensor(irr).burst
        if with_validation:
            validate(system, [Scenes(irr, torch.rand(1, 1, 16, 16))], p["seed"], torch.device("cpu"))
        runs.append((first, system.sensor(irr).burst))
    assert not torch.equal(runs[1][0], runs[1][1])  # the bursts differ across the validation boundary
    assert torch.equal(runs[0][1], runs[1][1])  # and equal those of a run without validation


def _run(p: dict, variant: str, shards: Path, out: Path) -> dict:
    return train(parse_config(p), variant, shards_dir=shards, model_path=out / "model.pt", metrics_path=out / "metrics.json",
                 exposures_path=out / "exposures.json", schedule_plot=out / "schedule.png",
                 live_dir=out / "live", checkpoint_path=out / "ckpt" / "last.pt")


def test_train_writes_outputs_and_learns_exposures(shards: Path, tmp_path: Path) -> None:
    p = tiny_params()
    p["train"]["lr"] = 1e-2  # visible exposure movement in 6 steps
    metrics = _run(p, "gimbal", shards, tmp_path)
    for name in ("model.pt", "metrics.json", "exposures.json", "schedule.png", "live/metrics.json"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    sched = json.loads((tmp_path / "exposures.json").read_text())
    assert len(sched["durations_us"]) == 3 and sched["learned"] is True
    used = sum(sched["durations_us"]) + 3 * sched["readout_us"] + sched["idle_us"]
    assert used == pytest.approx(sched["budget_us"], rel=1e-9)
    assert sched["durations_us"] != pytest.approx([sched["durations_us"][0]] * 3, abs=1e-6)  # the logits moved
    assert metrics["val_psnr"] > 0 and metrics["steps"] == 6
    tsv = (tmp_path / "live/plots/metrics/exposure_us/dt0.tsv").read_text().splitlines()
    assert len(tsv) == 1 + 6  # header + one row per step
    system = load_system(tmp_path / "model.pt")
    assert system.sensor.schedule_us()["durations_us"] == pytest.approx(sched["durations_us"])


def test_uniform_variant_keeps_exposures_fixed(shards: Path, tmp_path: Path) -> None:
    p = tiny_params()
    before = GimbalSystem.from_params(p, "gimbal_uniform").sensor.schedule_us()["durations_us"]
    _run(p, "gimbal_uniform", shards, tmp_path)
    sched = json.loads((tmp_path / "exposures.json").read_text())
    assert sched["durations_us"] == before and sched["learned"] is False
    state = torch.load(tmp_path / "model.pt", weights_only=False)["system"]
    init = GimbalSystem.from_params(p, "gimbal_uniform").state_dict()
    logit_keys = [k for k in state if k.startswith("sensor.")]
    assert logit_keys and all(torch.equal(state[k], init[k]) for k in logit_keys)


def test_train_is_deterministic(shards: Path, tmp_path: Path) -> None:
    p = tiny_params()
    a = _run(p, "gimbal", shards, tmp_path / "a")
    b = _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "b")
    assert a == b
    assert (tmp_path / "a/model.pt").read_bytes() == (tmp_path / "b/model.pt").read_bytes()  # byte-stable


def _killed_at_step_5(monkeypatch, p: dict, shards: Path, out: Path) -> None:
    """Run ``p`` into ``out`` with a Ctrl-C at training step 5 (the 6th scene batch); restores the data path after."""
    import gimbal.training.burst as train_module

    real, calls = train_module.make_irradiance, {"n": 0}

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(train_module, "make_irradiance", killed)
        _run(copy.deepcopy(p), "gimbal", shards, out)


def test_killed_and_resumed_run_equals_an_uninterrupted_one(shards: Path, tmp_path: Path, monkeypatch) -> None:
    """Kill training at step 5 (after the checkpoint of step 4), rerun: the final weights, schedule and every
    dvclive log equal those of an uninterrupted run."""
    p = tiny_params()
    p["train"].update(steps=8, samples_per_clip=3, val_every=3, checkpoint_every=4)
    _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "a")

    with pytest.raises(KeyboardInterrupt, match=r"interrupted at step 5; `dvc repro` resumes from step 4"):
        _killed_at_step_5(monkeypatch, p, shards, tmp_path / "b")
    assert torch.load(tmp_path / "b/ckpt/last.pt", weights_only=True)["step"] == 4
    _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "b")

    a_state = torch.load(tmp_path / "a/model.pt", weights_only=False)
    b_state = torch.load(tmp_path / "b/model.pt", weights_only=False)
    assert all(torch.equal(x, b_state["system"][k]) for k, x in a_state["system"].items())
    assert (tmp_path / "a/exposures.json").read_text() == (tmp_path / "b/exposures.json").read_text()
    assert (tmp_path / "a/metrics.json").read_text() == (tmp_path / "b/metrics.json").read_text()
    logs_a = sorted((tmp_path / "a/live/plots/metrics").rglob("*.tsv"))
    assert len(logs_a) >= 6
    for f in logs_a:
        other = tmp_path / "b/live/plots/metrics" / f.relative_to(tmp_path / "a/live/plots/metrics")
        assert f.read_text() == other.read_text(), f.name
    rows = (tmp_path / "b/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    col = rows[0].split("\t").index("step")
    assert [r.split("\t")[col] for r in rows[1:]] == [str(i) for i in range(8)]
    # byte-identical, key order included (a resume once moved "step" in it: a diff in git for equal values)
    assert (tmp_path / "a/live/metrics.json").read_bytes() == (tmp_path / "b/live/metrics.json").read_bytes()


def test_corrupt_checkpoint_is_moved_aside(shards: Path, tmp_path: Path, caplog) -> None:
    p = tiny_params()
    p["train"]["steps"] = 2
    ckpt = tmp_path / "ckpt/last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x00" * 100)
    with caplog.at_level("WARNING"):
        metrics = _run(p, "gimbal", shards, tmp_path)
    assert metrics["steps"] == 2
    assert str(ckpt) in caplog.text and "unreadable checkpoint" in caplog.text
    assert (tmp_path / "ckpt/last.pt.corrupt").read_bytes() == b"\x00" * 100


def test_each_corrupt_checkpoint_is_kept_under_its_own_number(tmp_path: Path, caplog) -> None:
    """A second (third) corrupt checkpoint does not overwrite the first: last.pt.corrupt, .corrupt.1, .corrupt.2."""
    from gimbal.checkpoint import load_checkpoint

    ckpt = tmp_path / "last.pt"
    contents = [b"first", b"second", b"third"]
    for data in contents:
        ckpt.write_bytes(data)
        with caplog.at_level("WARNING"):
            assert load_checkpoint(ckpt) is None
        assert not ckpt.exists()
    names = ["last.pt.corrupt", "last.pt.corrupt.1", "last.pt.corrupt.2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert [(tmp_path / n).read_bytes() for n in names] == contents
    assert all(str(tmp_path / n) in caplog.text for n in names)  # the warning names where each went


def test_fixed_irradiance_set_is_deterministic(shards: Path) -> None:
    p = tiny_params()
    aug = parse_config(p).augment
    cam = GimbalSystem.from_params(p).sensor.camera
    a = fixed_irradiance_set(shards, "test", 2, 2, aug, cam, 1, seed=5, backend="torch")
    b = fixed_irradiance_set(shards, "test", 2, 2, aug, cam, 1, seed=5, backend="torch")
    assert len(a) == len(b) and all(torch.equal(x.irradiance, y.irradiance) and torch.equal(x.srgb, y.srgb)
                                    for x, y in zip(a, b, strict=True))
    assert isinstance(a[0], Scenes) and a[0].irradiance.shape == (2, 17, 1, 16, 16)
    assert a[0].srgb.shape == (2, 1, 16, 16) and 0 <= float(a[0].srgb.min()) <= float(a[0].srgb.max()) <= 1
    w = fixed_irradiance_set(shards, "test", 2, 2, aug, cam, 1, seed=5, backend="torch", window_frames=9)
    assert w[0].irradiance.shape == (2, 9, 1, 16, 16)


def test_load_system_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="model file not found"):
        load_system(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a gimbal model"):
        load_system(bad)
    p = tiny_params()
    system = GimbalSystem.from_params(p)
    save_system(tmp_path / "ok.pt", system, p, "gimbal")
    loaded = load_system(tmp_path / "ok.pt")
    assert all(torch.equal(x, y) for x, y in zip(system.state_dict().values(), loaded.state_dict().values()))


def test_reference_exposure_grows_on_a_static_dim_scene() -> None:
    """Exposure learning moves the schedule the physically right way. With a static scene, no blur can be traded
    for noise: with the network at its reference init (the merge is the exposure-normalized middle frame, eq. 14)
    a longer reference exposure only lowers the noise (shot noise variance ~ 1/dt, read noise ~ 1/dt^2 after
    normalization), so gradient descent on the exposure logits alone must lengthen it. The scene is dim
    (~200 e- in the initial 450 us reference: read noise 17.9 e- matters) and uses the ``sensor`` target, whose
    brightness the normalized frame already has (no gain to learn)."""
    torch.manual_seed(0)
    p = tiny_params()
    p["eval"]["target"] = "sensor"
    p["loss"]["anneal"] = False
    system = GimbalSystem.from_params(p, "gimbal")
    for q in system.net.parameters():
        q.requires_grad_(False)
    logits = [q for q in system.sensor.parameters() if q.requires_grad]
    opt = torch.optim.Adam(logits, lr=0.05)
    g = torch.Generator().manual_seed(4)
    scene = 4.4e5 * (0.5 + torch.rand(2, 1, 1, 16, 16, generator=g))  # e-/s, the same at every instant
    irr = scene.repeat(1, 17, 1, 1, 1)
    start = system.sensor.exposure.durations(torch.float64).detach().clone()
    for step in range(40):
        out = system(irr, step=step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    end = system.sensor.exposure.durations(torch.float64).detach()
    assert float(end[1]) > 1.3 * float(start[1]), (start.tolist(), end.tolist())


def test_kpn_baseline_loss_decreases() -> None:
    """The KPN baseline (no flow, uniform exposures) fits a fixed tiny batch: its loss goes down."""
    p = tiny_params()
    p["loss"]["anneal"] = False  # the reconstruction term alone (eq. 16)
    p["eval"]["target"] = "sensor"  # the target follows from the irradiance alone
    system = GimbalSystem.from_params(p, "kpn")
    assert system.net.flow is None and not system.sensor.exposure.learn
    opt = torch.optim.Adam([q for q in system.parameters() if q.requires_grad], lr=1e-2)
    irr = _irradiance(b=2, frames=1, seed=3).repeat(1, 17, 1, 1, 1)  # a static scene: averaging frames denoises
    losses = []
    for step in range(40):
        system.sensor.set_seed(0)  # the same noisy burst every step
        out = system(irr, step=step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


@pytest.mark.slow
def test_torchrun_ddp_two_processes(shards: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 stages/train.py` trains with DistributedDataParallel (gloo on CPU)."""
    import os
    import subprocess
    import sys

    p = tiny_params()
    p["train"].update(steps=3, val_every=3, checkpoint_every=3, device="cpu")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(REPO / "stages/train.py"),
           "--params", str(params), "--variant", "gimbal", "--shards", str(shards)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics/train_gimbal.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 3
    assert (tmp_path / "models/gimbal.pt").is_file() and (tmp_path / "exposures/gimbal.json").is_file()


def test_validation_reports_the_middle_frame_floor() -> None:
    """val/middle_frame_psnr is the PSNR against the sRGB target of the burst's middle frame scaled by T / dt
    (eq. 14) and by the floors' fixed gain, through the released sRGB-like curve, recomputed here from the same
    exact-Poisson burst (same seed) with the curve and the gain written out from the camera's constants."""
    p = tiny_params()
    irr = _irradiance(b=2)
    srgb = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    system = GimbalSystem.from_params(p).eval()
    with torch.no_grad():
        scores = validate(system, [Scenes(irr, srgb)], 5, torch.device("cpu"))
        out = system(irr, step=0, generator=torch.Generator().manual_seed(5), srgb=srgb)
    cam = system.sensor.camera
    lo, hi = p["augment"]["white_level"]
    white_e = 0.5 * (lo + hi) * cam.pixel_area_m2 * cam.quantum_efficiency * cam.wavelength_m / (6.62607015e-34 * 299792458.0)
    gain = cam.max_dn / (cam.gain_dn_per_e * cam.budget_s * white_e)
    dt = system.sensor.exposure.durations(torch.float64)
    x = (out.burst[:, 1].double() * cam.budget_s / float(dt[1]) * gain).clamp(0.0, 1.0)
    mid = torch.where(x > 0.0031308, 1.055 * (x + 0.001) ** (1 / 2.4) - 0.055, 12.92 * x)
    mse = ((mid - srgb.double()) ** 2).mean(dim=(1, 2, 3))
    expected = float((10 * torch.log10(1.0 / mse)).mean())
    assert scores["middle_frame_psnr"] == pytest.approx(expected, abs=1e-3)


# ----------------------------------------------------------------------------- checked model files (issue 19)
def test_model_file_with_flipped_bytes_is_refused(tmp_path: Path) -> None:
    """Four flipped bytes inside a tensor still unpickle; the sha256 of the tensors stored in the file tells."""
    from model_fixtures import flip_tensor_bytes

    p = tiny_params()
    system = GimbalSystem.from_params(p)
    path = tmp_path / "model.pt"
    save_system(path, system, p, "gimbal")
    save_system(tmp_path / "again.pt", system, p, "gimbal")
    assert path.read_bytes() == (tmp_path / "again.pt").read_bytes()  # the checksum keeps model files byte-stable
    flip_tensor_bytes(path)
    with pytest.raises(DataError) as err:
        load_system(path)
    assert str(err.value) == f"{path}: corrupt: tensor checksum mismatch; re-train or restore it"


def test_model_file_without_a_checksum_is_refused(tmp_path: Path) -> None:
    """A model file without its ``tensors_sha256`` entry cannot be checked: refused, naming the file."""
    p = tiny_params()
    system = GimbalSystem.from_params(p)
    old = tmp_path / "old.pt"
    torch.save({"variant": "gimbal", "params": p, "system": system.state_dict()}, old)
    with pytest.raises(DataError, match=f"{old}: no 'tensors_sha256' entry"):
        load_system(old)


def test_training_checkpoint_with_flipped_bytes_is_moved_aside(tmp_path: Path, caplog) -> None:
    """A resume checkpoint whose tensors changed on disk is not resumed from: reported by name and moved aside."""
    from model_fixtures import flip_tensor_bytes

    from gimbal.checkpoint import load_checkpoint, save_checkpoint

    ckpt = tmp_path / "last.pt"
    state = {"step": 3, "fingerprint": "abc", "model": {"w": torch.linspace(0, 1, 4096)}, "history": [[0, {"a": 1.5}]]}
    save_checkpoint(ckpt, state)
    loaded = load_checkpoint(ckpt)
    assert loaded is not None and loaded.keys() == state.keys() and torch.equal(loaded["model"]["w"], state["model"]["w"])
    flip_tensor_bytes(ckpt)
    with caplog.at_level("WARNING"):
        assert load_checkpoint(ckpt) is None
    assert not ckpt.exists() and str(ckpt) in caplog.text and "tensor checksum mismatch" in caplog.text


def _scripted_validation(monkeypatch, psnrs: list[float], kernel_changes: list[float] | None = None) -> None:
    """Make ``gimbal.training.burst.validate`` report the next of ``psnrs`` as the val PSNR at each call (and the next
    of ``kernel_changes`` as the kernels' change between bursts; the rest as measured)."""
    import gimbal.training.burst as train_module

    queue = list(psnrs)
    changes = list(kernel_changes) if kernel_changes is not None else None

    def scripted(*args, **kwargs):
        out = {**validate(*args, **kwargs), "psnr": queue.pop(0)}  # the real one, imported above
        if changes is not None:
            out["kernel_input"] = changes.pop(0)
        return out

    monkeypatch.setattr(train_module, "validate", scripted)


def _system_state(path: Path) -> dict:
    return torch.load(path, weights_only=False)["system"]


def test_keeps_the_weights_of_the_best_validation_also_across_a_resume(shards: Path, tmp_path: Path, monkeypatch) -> None:
    """train.select best_val: with val PSNRs 30, 10, 20 dB at steps 3, 6, 8, the model written is the one of step 3:
    the same weights and schedule as a run of 3 steps that keeps its last. A run killed at step 5 (after the
    checkpoint of step 4) and resumed keeps step 3 as well: the choice travels in the checkpoint."""
    p = tiny_params()
    # every validation eligible (no liveness floor): this checks the choice and its resume
    p["train"].update(steps=8, samples_per_clip=3, val_every=3, checkpoint_every=4, lr=1e-2, min_kernel_change=0.0)
    stopped = copy.deepcopy(p)
    stopped["train"].update(steps=3, select="last")
    _run(stopped, "gimbal", shards, tmp_path / "stopped")
    ref = _system_state(tmp_path / "stopped/model.pt")

    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0])
    metrics = _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "best")
    assert metrics["selected_step"] == 3 and metrics["val_psnr"] == 30.0 and metrics["steps"] == 8
    best = _system_state(tmp_path / "best/model.pt")
    assert all(torch.equal(x, best[k]) for k, x in ref.items())
    assert (tmp_path / "best/exposures.json").read_text() == (tmp_path / "stopped/exposures.json").read_text()

    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0])  # one queue for the killed run and its resume
    with pytest.raises(KeyboardInterrupt):
        _killed_at_step_5(monkeypatch, p, shards, tmp_path / "resumed")
    assert _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "resumed")["selected_step"] == 3
    resumed = _system_state(tmp_path / "resumed/model.pt")
    assert all(torch.equal(x, resumed[k]) for k, x in ref.items())

    last = copy.deepcopy(p)
    last["train"]["select"] = "last"
    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0])
    assert _run(last, "gimbal", shards, tmp_path / "last")["selected_step"] == 8
    final = _system_state(tmp_path / "last/model.pt")
    assert not all(torch.equal(x, final[k]) for k, x in ref.items())


def test_offer_keeps_the_highest_score_and_the_earlier_of_a_tie(tmp_path: Path) -> None:
    from gimbal.checkpoint import Resumable

    run = Resumable(tmp_path / "last.pt", "fp", torch.Generator())
    w = torch.zeros(2)
    for step, score in [(1, 20.0), (2, 25.0), (3, 25.0), (4, float("nan")), (5, 24.0)]:
        w += 1
        run.offer(step, score, {"w": w}, {"psnr": score})
    assert run.best["step"] == 2 and run.best["score"] == 25.0 and torch.equal(run.best["model"]["w"], torch.full((2,), 2.0))


def test_optimizer_groups_and_warm_up() -> None:
    """The KPN output bias learns at train.kernel_bias_lr, the rest of the network at train.lr, both warmed up
    linearly; the exposure logits at train.exposure_lr from the first step."""
    from gimbal.runtime import TrainConfig
    from gimbal.training.burst import make_optimizer, set_learning_rates

    system = build_system(parse_config(tiny_params()), "gimbal")
    tcfg = TrainConfig(lr=1e-3, kernel_bias_lr=1e-2, exposure_lr=5e-2, warmup_steps=4)
    exposure = [p for p in system.sensor.parameters() if p.requires_grad]
    opt = make_optimizer(system.net, tcfg, exposure)
    groups = {g["name"]: g for g in opt.param_groups}
    assert [p is system.net.kpn.head.bias for p in groups["kernel_bias"]["params"]] == [True]
    n_net = sum(1 for p in system.net.parameters() if p.requires_grad)
    assert len(groups["network"]["params"]) == n_net - 1 and groups["exposure"]["params"] == exposure
    expected = {0: (0.25e-3, 0.25e-2), 1: (0.5e-3, 0.5e-2), 3: (1e-3, 1e-2), 10: (1e-3, 1e-2)}
    for step, (net_lr, bias_lr) in expected.items():
        set_learning_rates(opt, tcfg, step)
        assert groups["network"]["lr"] == pytest.approx(net_lr) and groups["kernel_bias"]["lr"] == pytest.approx(bias_lr)
        assert groups["exposure"]["lr"] == 5e-2
    with pytest.raises(ParamError, match="train.kernel_bias_lr"):
        TrainConfig(kernel_bias_lr=0.0)
    with pytest.raises(ParamError, match="train.warmup_steps"):
        TrainConfig(warmup_steps=-1)


def test_training_metrics_record_liveness(shards: Path, tmp_path: Path) -> None:
    """Every validation logs the network's liveness, and the metrics carry that of the selected checkpoint."""
    cfg = parse_config(tiny_params())
    metrics = train(cfg, "gimbal", shards, tmp_path / "m.pt", tmp_path / "m.json", tmp_path / "e.json",
                    tmp_path / "s.png", tmp_path / "live", tmp_path / "ckpt.pt")
    live = metrics["liveness"]
    assert set(live) == {"kpn_dead", "kpn_last_dead", "kernel_spatial", "kernel_input", "flow_dead",
                         "flow_last_dead", "flow_shift_gain", "flow_alignment"}
    assert all(0.0 <= live[k] <= 1.0 for k in ("kpn_dead", "kpn_last_dead", "flow_dead", "flow_last_dead"))
    logged = tmp_path / "live" / "plots" / "metrics" / "val" / "kernel_input.tsv"
    assert logged.is_file() and len(logged.read_text().splitlines()) == 1 + 2  # header + steps 3 and 6


def test_a_validation_whose_kernels_do_not_change_with_the_burst_is_not_selected(shards: Path, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """train.min_kernel_change: the best val PSNR (30 dB at step 3) comes from a merge that applies one fixed filter
    (kernels change by 0.001 between bursts), so the best of the others is kept; with the floor at 0 step 3 is.
    With no eligible validation the last step's weights are kept."""
    p = tiny_params()
    p["train"].update(steps=8, samples_per_clip=3, val_every=3, checkpoint_every=4, min_kernel_change=0.01)
    _scripted_validation(monkeypatch, [30.0, 25.0, 20.0], [0.001, 0.5, 0.2])
    assert _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "floor")["selected_step"] == 6
    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0], [0.001, 0.005, 0.2])
    assert _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "floor2")["selected_step"] == 8
    p["train"]["min_kernel_change"] = 0.0
    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0], [0.001, 0.005, 0.2])
    assert _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "nofloor")["selected_step"] == 3
    p["train"]["min_kernel_change"] = 1.0
    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0], [0.001, 0.005, 0.2])
    assert _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "none")["selected_step"] == 8


def test_a_run_started_from_a_model_file_holds_its_networks_and_its_own_exposures(tmp_path: Path) -> None:
    """``init_model``: before its first step the run's flow and KPN weights are the file's, bit for bit, while the
    exposures are the run's own; a file whose networks differ in architecture is refused, naming the file."""
    from gimbal.pipeline import gimbal_run
    from gimbal.runtime import setup_distributed
    from gimbal.training.burst import GimbalTask

    params = tiny_params()
    cfg = parse_config(params)
    torch.manual_seed(1)
    source = build_system(cfg, "gimbal")
    with torch.no_grad():
        for p in source.net.parameters():
            p.add_(0.1 * torch.randn_like(p))  # not any fresh initialisation
    save_system(tmp_path / "cell.pt", source, params, "gimbal")
    fixed = dict(params, model={**params["model"], "learn_exposure": False},
                 exposure={**params["exposure"], "init_us": [900.0, 500.0, 300.0], "idle_slot": True})
    ctx, dev = setup_distributed("cpu")
    paths = [tmp_path / name for name in ("model.pt", "metrics.json", "exposures.json", "plot.png")]
    task = GimbalTask(gimbal_run(parse_config(fixed), "gimbal", init_model=tmp_path / "cell.pt"), tmp_path, ctx, dev,
                      *paths)
    want = source.net.state_dict()
    got = task.system.net.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert task.system.sensor.schedule_us()["durations_us"] == pytest.approx([900.0, 500.0, 300.0], abs=1e-3)
    assert not task.exposure_params  # fixed: only the networks train
    wider = dict(params, model={**params["model"], "kpn_base_channels": 8})
    with pytest.raises(ParamError, match="cell.pt has other networks"):
        GimbalTask(gimbal_run(parse_config(wider), "gimbal", init_model=tmp_path / "cell.pt"), tmp_path, ctx, dev,
                   *paths)
