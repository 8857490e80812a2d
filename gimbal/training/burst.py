"""Training loop of the end-to-end model (and of the KPN baseline, a model variant).

The loop is the one every model trains through, :func:`gimbal.training.loop.fit`; this module holds the model's task
(:class:`GimbalTask`). Seeded (:class:`gimbal.runtime.Seeds`), resumable from the last checkpoint,
logged with dvclive (loss, PSNR, the current exposure times in microseconds), one GPU / CPU or several GPUs
through ``torchrun`` (DistributedDataParallel; each rank reads its own subset of the shards). Scenes come from
the one data-to-irradiance path, :mod:`gimbal.data.irradiance`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from gimbal.checkpoint import run_fingerprint
from gimbal.data.augment import AugmentConfig
from gimbal.data.irradiance import Scenes, clip_batches, fixed_irradiance_set, make_irradiance
from gimbal.errors import ParamError
from gimbal.io import write_json_atomic
from gimbal.losses import anneal_weight, gradient_l1_loss
from gimbal.metrics import psnr, ssim
from gimbal.model_params import SystemGroups
from gimbal.models.liveness import gimbal_liveness
from gimbal.params import group_dict
from gimbal.runtime import Dist, Seeds, TrainConfig, setup_distributed
from gimbal.sensor.plot import plot_schedule
from gimbal.system import GimbalSystem, StepOutput, exposure_report, load_system, middle_frame_image, save_system
from gimbal.training.flow_pretrain import FlowArch, load_pretrained_flow
from gimbal.training.loop import Divergence, FitResult, fit, networks_in

__all__ = ["LIVENESS_KEYS", "GimbalRun", "GimbalTask", "make_optimizer", "set_learning_rates", "train", "validate"]

LIVENESS_KEYS = ("kpn_dead", "kpn_last_dead", "kernel_spatial", "kernel_input", "flow_dead", "flow_last_dead",
                 "flow_shift_gain", "flow_alignment")
"""The liveness measures :func:`validate` adds (:func:`gimbal.models.liveness.gimbal_liveness`)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GimbalRun:
    """The groups the training of one model variant reads (:func:`gimbal.pipeline.gimbal_run` takes them from a
    parsed params file).

    Attributes:
        variant: the model variant's name (``variants.<name>``).
        system: the groups of its system (:class:`gimbal.model_params.SystemGroups`: ``seed``, ``sensor``, the
            variant's ``model``, ``exposure`` and ``loss``, ``eval.target``, ``augment.white_level``,
            ``train.steps``).
        augment: the ``augment`` group (the scenes).
        train: the ``train`` group (the loop).
        params: the params as read; the model file stores them (:func:`gimbal.system.save_system`).
        flow_weights: the pretrained flow file (:func:`gimbal.training.flow_pretrain.pretrain_flow`) the flow
            network starts from; ``None``: from scratch (the paper).
        flow_lr: the flow network's Adam learning rate (``None``: ``train.lr``; ``flow_pretrain.finetune_lr`` when
            it starts pretrained).
        init_model: a trained model file (:func:`gimbal.system.save_system`) whose networks (flow and KPN) the run
            starts from, e.g. a Fig. 9 cell's merge fine-tuned at another working point; its exposures are not
            taken (the run's ``exposure`` group sets them). ``None``: the networks' own initialisation.
    """

    variant: str
    system: SystemGroups
    augment: AugmentConfig
    train: TrainConfig
    params: dict[str, Any]
    flow_weights: Path | None = None
    flow_lr: float | None = None
    init_model: Path | None = None


@torch.no_grad()
def validate(system: GimbalSystem, batches: list[Scenes], seed: int, device: torch.device) -> dict[str, float]:
    """Mean loss / PSNR / SSIM on fixed batches with exact Poisson noise (eval mode), ``middle_frame_psnr``:
    the PSNR of the exposure-normalized middle frame of the same bursts (the floor the merge must beat), and the
    network's liveness on the first batch's bursts (:func:`gimbal.models.liveness.gimbal_liveness`: dead units,
    how the kernels vary over the frame and with the burst, whether the flow follows a known shift).

    The noise comes from a generator of its own seeded with ``seed``: every validation sees the same
    bursts, and the training noise stream is left untouched.
    """
    was_training = system.training
    system.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    durations = system.sensor.exposure.durations(torch.float64)
    losses, psnrs, ssims, middle = [], [], [], []
    live: dict[str, float] = {}
    for scenes in batches:
        out = system(scenes.irradiance.to(device), step=0, generator=gen, srgb=scenes.srgb.to(device))
        if not live:
            normalized = system.sensor.normalize(out.burst, durations) if system.normalize else out.burst
            live = gimbal_liveness(system.net, normalized.to(out.burst.dtype))
        losses.append(float(out.loss))
        psnrs.extend(psnr(out.image, out.target, reduction="none").tolist())
        ssims.extend(ssim(out.image, out.target, reduction="none").tolist())
        floor = middle_frame_image(system.sensor, out.burst, durations, system.display).to(out.target.dtype)
        middle.extend(psnr(floor, out.target, reduction="none").tolist())
    system.train(was_training)
    n = max(len(psnrs), 1)
    return {"loss": sum(losses) / max(len(losses), 1), "psnr": sum(psnrs) / n, "ssim": sum(ssims) / n,
            "middle_frame_psnr": sum(middle) / n, **live}


def _nonfinite_terms(out: StepOutput, system: GimbalSystem) -> list[str]:
    """The parts of a training step that are not finite, upstream first (for a divergence message)."""
    loss = system.loss_config
    parts = {"exposure times": system.sensor.exposure.durations(torch.float64), "burst": out.burst,
             "network output": out.image, "reconstruction term (eq. 16)": gradient_l1_loss(out.image, out.target, loss.mu)}
    if loss.anneal:
        parts["alignment term (eq. 18)"] = gradient_l1_loss(out.net.align_estimate, out.target, loss.mu)
    return [name for name, value in parts.items() if not bool(torch.isfinite(value.detach()).all())]


def make_optimizer(net: torch.nn.Module, tcfg: TrainConfig, exposure: list[torch.nn.Parameter] | None = None,
                   flow_lr: float | None = None) -> torch.optim.Adam:
    """Adam over a network (a :class:`GimbalNet`, or a part of one) and the exposure logits, in up to four groups:
    the network (``train.lr``), the KPN output layer's bias ``kpn.head.bias`` (``train.kernel_bias_lr``), with
    ``flow_lr`` the flow network (``flow.*``) and the exposures (``train.exposure_lr``). Each group keeps its full
    rate as ``base_lr``; :func:`set_learning_rates` applies the warm-up (to the network's groups)."""
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    def own_flow_group(name: str) -> bool:
        return flow_lr is not None and name.startswith("flow.")

    bias = [p for name, p in named if name.endswith("kpn.head.bias")]
    flow = [p for name, p in named if own_flow_group(name)]
    params = [p for name, p in named if not name.endswith("kpn.head.bias") and not own_flow_group(name)]
    groups = [{"name": "network", "params": params, "base_lr": tcfg.lr, "warmup": True}]
    if flow:
        groups.append({"name": "flow", "params": flow, "base_lr": flow_lr, "warmup": True})
    if bias:
        groups.append({"name": "kernel_bias", "params": bias, "base_lr": tcfg.kernel_bias_lr or tcfg.lr,
                       "warmup": True})
    if exposure:
        groups.append({"name": "exposure", "params": exposure, "base_lr": tcfg.exposure_lr or tcfg.lr,
                       "warmup": False})
    for group in groups:
        group["lr"] = group["base_lr"]
    return torch.optim.Adam(groups)


def set_learning_rates(opt: torch.optim.Optimizer, tcfg: TrainConfig, step: int) -> None:
    """The learning rates of optimisation step ``step`` (0-based): ``base_lr``, warmed up where the group says."""
    scale = tcfg.lr_scale(step)
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * (scale if group["warmup"] else 1.0)


def _fingerprint(run: GimbalRun, shards_dir: Path) -> str:
    """What determines a model-variant run: its groups, the variant's merged model, exposure and loss groups, the
    shard index, and the code. ``train.steps`` may grow on resume (unless the anneal follows the run length),
    and ``checkpoint_every``, ``loader`` and ``device`` do not change what is trained."""
    groups = run.system
    model, exposure, loss = groups.model, groups.exposure, groups.loss
    steps_matter = loss.anneal_crossover is not None  # alpha follows train.steps
    train = {k: v for k, v in group_dict(run.train).items()
             if k not in ("checkpoint_every", "loader", "device") and (k != "steps" or steps_matter)}
    indexes = [shards_dir / split / "index.json" for split in ("train", "val")]
    return run_fingerprint({
        "variant": run.variant, "seed": groups.seed, "target": groups.target, "sensor": group_dict(groups.sensor),
        "exposure": group_dict(exposure), "model": group_dict(model), "loss": group_dict(loss),
        "augment": group_dict(run.augment), "train": train,
        "shards": [index.read_bytes().hex() if index.is_file() else None for index in indexes],
        "flow_weights": hashlib.sha256(run.flow_weights.read_bytes()).hexdigest() if run.flow_weights else None,
        "flow_lr": run.flow_lr,
        "init_model": hashlib.sha256(run.init_model.read_bytes()).hexdigest() if run.init_model else None,
    })


def start_from_model(system: GimbalSystem, path: Path, variant: str) -> None:
    """Copy the networks (flow and KPN) of the trained model file ``path`` into ``system.net``; the exposures
    stay ``system``'s own. Raises :class:`ParamError` naming the file when its networks differ in architecture."""
    source = load_system(path)
    try:
        system.net.load_state_dict(source.net.state_dict())
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ParamError(f"train {variant}: {path} has other networks than this run's params build ({first}); "
                         "start from a model trained with the same `model` group") from None


class GimbalTask:
    """The :class:`gimbal.training.loop.Task` of a model variant (ours, an ablation, the KPN): a :class:`GimbalSystem`
    with its Adam (:func:`make_optimizer`), the sensor's noise stream, the data generator and the fixed val batches.

    A step augments a clip batch (no autograd), captures the burst, reconstructs (the networks in
    ``train.precision``) and takes the eq. 18 loss; :meth:`optimize` applies the warm-up and steps Adam. The
    metrics' ``train_loss`` / ``train_psnr`` are those of the last step (not a mean: the single-image baselines
    report the mean of the last 10 steps instead; each keeps its own).
    """

    score_key = "psnr"

    def __init__(self, run: GimbalRun, shards_dir: Path, ctx: Dist, device: torch.device,
                 model_path: Path, metrics_path: Path, exposures_path: Path, schedule_plot: Path) -> None:
        tcfg = self.tcfg = run.train
        self.run, self.variant, self.name, self.steps = run, run.variant, run.variant, tcfg.steps
        self.ctx, self.device, self.shards_dir = ctx, device, shards_dir
        self.paths = (model_path, metrics_path, exposures_path, schedule_plot)
        self.seeds = seeds = Seeds.for_rank(run.system.seed, ctx.rank)
        torch.manual_seed(seeds.torch)
        system = self.system = GimbalSystem.from_groups(run.system).to(device)
        system.sensor.set_seed(seeds.noise)
        if run.flow_weights is not None:
            if system.net.flow is None:
                raise ParamError(f"train {run.variant}: pretrained flow weights given ({run.flow_weights}), but the "
                                 "variant has no flow network (model.use_flow: false)")
            flow = system.net.flow
            load_pretrained_flow(flow, run.flow_weights, FlowArch.for_model(flow.n, run.system.model))
        if run.init_model is not None:
            start_from_model(system, run.init_model, run.variant)
        self.exposure_params = [p for p in system.sensor.parameters() if p.requires_grad]
        self.opt = make_optimizer(system.net, tcfg, self.exposure_params, run.flow_lr)
        self.generator = torch.Generator().manual_seed(seeds.data)
        self.rngs = {"sensor": (system.sensor.rng_state, system.sensor.set_rng_state)}
        self.model: torch.nn.Module = system
        self.val_batches: list[Scenes] = []
        self.done = tcfg.steps  # optimisation steps taken before the next validation (set by each step)
        self.unlive_warning = (f"no validation had kernels that change with the burst by >= "
                               f"train.min_kernel_change = {tcfg.min_kernel_change:g} (the KPN applies one fixed "
                               "filter)")

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"system": self.system.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.system.load_state_dict(state["system"])
        self.opt.load_state_dict(state["optimizer"])

    def weights(self) -> dict[str, Any]:
        return self.system.state_dict()

    def load_weights(self, weights: dict[str, Any]) -> None:
        self.system.load_state_dict(weights)

    def start(self, ctx: Dist) -> None:
        """Wrap the system for several ranks (after resume) and build the fixed val batches (main rank) unless
        :attr:`val_batches` was set."""
        if ctx.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.system, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if ctx.main and not self.val_batches:  # unless given (in-memory clips)
            tcfg, sensor = self.tcfg, self.system.sensor
            self.val_batches = fixed_irradiance_set(
                self.shards_dir, "val", tcfg.val_clips, tcfg.batch_size, self.run.augment, sensor.camera,
                self.system.net.channels, self.seeds.validation, tcfg.loader, self.device)
        self.system.train()

    # -- a step -------------------------------------------------------------------------------------
    def train_step(self, step: int, clips: torch.Tensor) -> StepOutput:
        system, tcfg = self.system, self.tcfg
        self.done = step + 1
        with torch.inference_mode():  # data preparation: no autograd
            scenes = make_irradiance(clips, self.run.augment, system.sensor.camera, system.net.channels,
                                     self.generator, exposure=system.sensor.exposure)
        with networks_in(tcfg.precision, self.device, [system.net]):
            return self.model(scenes.irradiance.clone(), step=tcfg.clock_time(step, self.ctx.world),
                              srgb=scenes.srgb.clone())

    def loss(self, out: StepOutput) -> float:
        return float(out.loss.detach())

    def divergence(self, out: StepOutput) -> Divergence:
        tcfg = self.tcfg
        return Divergence(_nonfinite_terms(out, self.system),
                          {"train.lr": tcfg.lr,
                           "train.exposure_lr": (tcfg.exposure_lr or tcfg.lr) if self.exposure_params else None},
                          "lower train.lr or train.exposure_lr (changed params start over), or check loss.mu")

    def optimize(self, step: int, out: StepOutput) -> None:
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        set_learning_rates(self.opt, self.tcfg, step)
        self.opt.step()

    def logged(self, out: StepOutput) -> tuple[dict[str, float], dict[str, str]]:
        loss_value = float(out.loss.detach())
        train_psnr = float(psnr(out.image.detach(), out.target).mean())
        sched = self.system.sensor.schedule_us()
        logged = {"train/loss": loss_value, "train/psnr": train_psnr}
        for i, dt_us in enumerate(sched["durations_us"]):
            logged[f"exposure_us/dt{i}"] = float(dt_us)
        return logged, {"dt_us": "/".join(f"{d:.0f}" for d in sched["durations_us"]), "loss": f"{loss_value:.4f}",
                        "psnr": f"{train_psnr:.2f}"}

    def validate(self) -> dict[str, float]:
        return validate(self.system, self.val_batches, self.seeds.validation, self.device)

    def eligible(self, val: dict[str, float]) -> bool:
        return self.tcfg.eligible(val) and self.annealed()

    def annealed(self) -> bool:
        """Whether the annealed term (eq. 18) has decayed to the reconstruction term's weight after :attr:`done`
        steps (``beta alpha^t <= 1``), or ``train.select_after_anneal`` is off, or the loss has no annealed term."""
        loss = self.system.loss_config
        if not (loss.anneal and self.tcfg.select_after_anneal):
            return True
        t = self.tcfg.clock_time(self.done, self.ctx.world)
        return anneal_weight(t, loss.anneal_alpha, loss.anneal_beta) <= 1.0 + 1e-9

    # -- the outputs --------------------------------------------------------------------------------
    def finish(self, result: FitResult) -> dict[str, Any]:
        model_path, metrics_path, exposures_path, schedule_plot = self.paths
        system, variant, last_val = self.system, self.variant, result.val
        last = result.history[-1][1] if result.history else {}  # the last step's, a resumed one too
        sched = exposure_report(system, variant)
        metrics = {
            "variant": variant,
            "steps": self.steps,
            "selected_step": result.selected,
            "train_loss": last.get("train/loss"),
            "train_psnr": last.get("train/psnr"),
            "val_loss": last_val["loss"],
            "val_psnr": last_val["psnr"],
            "val_ssim": last_val["ssim"],
            "val_middle_frame_psnr": last_val["middle_frame_psnr"],
            "exposures_us": sched["durations_us"],
            "liveness": {k: last_val[k] for k in LIVENESS_KEYS if k in last_val},
            "world_size": self.ctx.world,
        }
        save_system(model_path, system, self.run.params, variant)
        write_json_atomic(exposures_path, sched)
        plot_schedule(system.sensor.exposure, schedule_plot, title=f"{variant}: shutter schedule")
        write_json_atomic(metrics_path, metrics)
        return metrics


def train(
    run: GimbalRun,
    shards_dir: Path,
    model_path: Path,
    metrics_path: Path,
    exposures_path: Path,
    schedule_plot: Path,
    live_dir: Path,
    checkpoint_path: Path,
) -> dict[str, Any]:
    """Train the model variant of ``run`` and write the model, metrics, exposure schedule (JSON + plot) and dvclive
    logs.

    Reads the groups of ``run`` (:class:`GimbalRun`: ``seed``, ``sensor``, the variant's ``model``, ``exposure`` and
    ``loss``, ``augment``, ``train`` and ``eval.target``). Resumes from ``checkpoint_path`` when it holds an unfinished run of
    the same params and code; the resumed run equals an uninterrupted one (weights, schedule and dvclive logs).
    The loop is :func:`gimbal.training.loop.fit`; the model is a :class:`GimbalTask`. Returns the final metrics dict.
    """
    tcfg = run.train
    ctx, device = setup_distributed(tcfg.device)
    task = GimbalTask(run, shards_dir, ctx, device, model_path, metrics_path, exposures_path, schedule_plot)
    batches = clip_batches(shards_dir, "train", tcfg.batch_size, tcfg.loader, task.seeds.loader, ctx, device)
    metrics = fit(task, tcfg, ctx, device, batches, _fingerprint(run, shards_dir), checkpoint_path, live_dir,
                  resume_device=device, unlive_warning=task.unlive_warning)
    if ctx.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics
