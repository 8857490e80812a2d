"""The end-to-end system: sensor (learnable exposures) + reconstruction network.

``GimbalSystem`` maps a dense irradiance clip ``(B, T_f, C, H, W)`` (photo-electrons per
second) to a reconstructed image ``(B, C, H, W)`` in display space, and picks the matching
ground truth (:class:`gimbal.display.Display`: by default the clip's sRGB middle frame, the
authors' target; ``eval.target: sensor`` the noise-free full-budget exposure of the middle instant).

Model variants (the paper's ablations and the KPN baseline) are ``model`` and ``exposure`` param
overrides under ``variants.<name>`` in ``params.yaml``; :func:`gimbal.model_params.apply_variant` applies them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from gimbal.checkpoint import load_weights, read_torch_file, save_checkpoint
from gimbal.display import Display
from gimbal.errors import ModelFileIncompatible, ModelFileWrongKind, ParamError
from gimbal.losses import LossConfig, gimbal_loss
from gimbal.model_params import SystemGroups, check_stored_params, model_file_params, system_groups
from gimbal.models.net import GimbalNet, GimbalOutput
from gimbal.sensor.exposure import ExposureConfig
from gimbal.sensor.model import Sensor, SensorConfig


class SensorGroups(Protocol):
    """The groups :func:`build_sensor` reads: ``sensor``, ``exposure`` and ``seed`` (a parsed config has them, and so
    does a single-image baseline's :class:`gimbal.baselines.single.RestorerRun`)."""

    @property
    def seed(self) -> int: ...
    @property
    def sensor(self) -> SensorConfig: ...
    @property
    def exposure(self) -> ExposureConfig: ...


def build_sensor(groups: SensorGroups, learn_exposure: bool = True, seed: int | None = None) -> Sensor:
    """The run's camera from the groups ``sensor``, ``exposure`` and ``seed`` (``seed`` overrides the noise seed);
    ``learn_exposure=False`` for a fixed schedule (evaluation, the single-image baselines' full exposure)."""
    return Sensor.from_config(groups.sensor, groups.exposure, learn_exposure, groups.seed if seed is None else seed)


def full_exposure_image(sensor: Sensor, irradiance: torch.Tensor, display: Display, step: int = 0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """The single-image baselines' input: one exposure of the whole budget ``T`` through ``sensor``.

    ``irradiance (B, T_f, C, H, W)`` e-/s -> ``(B, C, H, W)`` display space: the raw image in [0, 1] DN (at the
    brightness eq. 14 normalizes bursts to, ``T / T = 1``) through :meth:`Display.floor` (the fixed gain of the
    ``srgb`` target, clipped, the display curve). The noise model follows ``sensor``'s mode (eval: exact Poisson)
    and ``generator`` (default: its own stream).
    """
    return display.floor(sensor.full_exposure(irradiance, step, generator))


def middle_frame_image(sensor: Sensor, burst: torch.Tensor, durations_s: torch.Tensor, display: Display
                       ) -> torch.Tensor:
    """Floor of a burst method: the middle frame ``n // 2`` of ``burst (B, n, C, H, W)`` scaled by ``T / dt``
    (eq. 14), through :meth:`Display.floor` -> ``(B, C, H, W)`` display space.
    ``durations_s``: ``(n,)`` exposure durations in seconds."""
    return display.floor(sensor.normalize(burst, durations_s)[:, burst.shape[1] // 2])


@dataclass
class StepOutput:
    """Everything one forward pass of :class:`GimbalSystem` produces.

    Attributes:
        loss: scalar eq. (18) loss.
        image: ``(B, C, H, W)`` reconstruction, display space.
        target: ``(B, C, H, W)`` ground truth, display space (:meth:`Display.ground_truth`).
        burst: ``(B, n, C, H, W)`` raw burst in [0, 1] DN.
        net: the network's full :class:`GimbalOutput`.
    """

    loss: torch.Tensor
    image: torch.Tensor
    target: torch.Tensor
    burst: torch.Tensor
    net: GimbalOutput


class GimbalSystem(nn.Module):
    """Sensor with learnable exposures + flow/KPN network, trained end to end.

    Args:
        sensor: the differentiable camera (its exposure logits are trainable unless frozen).
        net: the reconstruction network.
        loss: eq. (16)/(18) hyper-parameters.
        normalize: apply the exposure normalization of eq. (14) before the network
            (``False`` is the supplement's ablation).
        display: the target and the floors' display (:class:`Display`; its target must be the network's).
    """

    def __init__(self, sensor: Sensor, net: GimbalNet, loss: LossConfig = LossConfig(), normalize: bool = True,
                 display: Display | None = None):
        super().__init__()
        if net.n != sensor.n:
            raise ParamError(f"GimbalSystem: network burst length {net.n} != sensor burst length {sensor.n}")
        self.sensor = sensor
        self.net = net
        self.loss_config = loss
        self.normalize = normalize
        self.display = display if display is not None else Display(net.target)  # type: ignore[arg-type]
        if self.display.target != net.target:
            raise ParamError(f"GimbalSystem: display target {self.display.target!r} != network target {net.target!r}")

    @classmethod
    def from_groups(cls, groups: SystemGroups) -> GimbalSystem:
        """Build the system from its groups (:class:`gimbal.model_params.SystemGroups`): ``sensor``, the variant's
        ``model``, ``exposure`` and ``loss``, ``seed``, ``eval.target``, ``augment.white_level`` (the floors' gain)
        and ``train.steps`` (which the anneal follows when ``loss.anneal_crossover`` is set)."""
        model, exposure, loss = groups.model, groups.exposure, groups.loss
        sensor = Sensor.from_config(groups.sensor, exposure, model.learn_exposure, groups.seed)
        display = Display.for_camera(groups.target, sensor.camera, groups.white_level)
        net = GimbalNet.from_config(model, exposure.n, display.target)
        loss = loss.for_steps(groups.steps) if loss.anneal_crossover is not None else loss
        return cls(sensor, net, loss, normalize=model.normalize_exposure, display=display)

    @classmethod
    def from_params(cls, params: dict[str, Any], variant: str = "gimbal") -> GimbalSystem:
        """Build the system for ``variant`` from a params mapping (a model file's stored params; see
        :func:`load_system`): :func:`gimbal.model_params.system_groups` parses the groups it reads."""
        return cls.from_groups(system_groups(params, variant))

    def reconstruct(self, burst: torch.Tensor, durations_s: torch.Tensor | None = None,
                    input_scale: torch.Tensor | None = None) -> GimbalOutput:
        """Network on a raw burst ``(B, n, C, H, W)`` in [0, 1] DN with exposures ``durations_s (n,)`` s;
        ``input_scale`` ``(B,)``: the divisor of the flow network's and the KPN's inputs (:meth:`input_scale`; ``None``:
        this burst's)."""
        x = self.sensor.normalize(burst, durations_s) if self.normalize else burst
        return self.net(x, input_scale)

    def input_scale(self, burst: torch.Tensor, durations_s: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)``: the divisor of the flow network's and the KPN's inputs (:meth:`GimbalNet.input_scale`) for a whole
        raw burst, so the tiles of a tiled reconstruction all use the whole image's."""
        d = self.sensor.exposure.durations(torch.float64) if durations_s is None else durations_s
        return whole_input_scale(self.net, self.sensor.camera.budget_s, self.normalize, burst, d)

    def forward(self, irradiance: torch.Tensor, step: int = 0, generator: torch.Generator | None = None,
                srgb: torch.Tensor | None = None) -> StepOutput:
        """Capture a burst from ``irradiance (B, T_f, C, H, W)`` (e-/s), reconstruct, and compute the loss against
        the target (``srgb (B, C, H, W)``: the scene's sRGB middle frame, needed by the ``srgb`` target).

        ``step``: the clock of the annealed loss and of GenGS. ``generator``: the sensor noise stream (default: the
        sensor's own; validation passes its own).
        """
        captured = self.sensor(irradiance, step, generator)
        out = self.reconstruct(captured.burst, captured.durations_s)
        target = self.display.ground_truth(irradiance, srgb, self.sensor.camera).to(out.image.dtype)
        loss = gimbal_loss(out.image, out.align_estimate, target, step, self.loss_config)
        return StepOutput(loss=loss, image=out.image, target=target, burst=captured.burst, net=out)


def whole_input_scale(net: GimbalNet, budget_s: float, normalize: bool, burst: torch.Tensor,
                     durations_s: torch.Tensor) -> torch.Tensor:
    """``(B,)``: :meth:`GimbalNet.reference_scale` of the reference frame of a whole raw burst ``(B, n, C, H, W)``
    (exposure-normalized by eq. (14) with ``durations_s (n,)`` s and budget ``budget_s`` when ``normalize``); what
    every tile of a tiled merge, PyTorch or ONNX, divides the flow network's and the KPN's inputs by."""
    r = burst.shape[1] // 2
    ref = burst[:, r]
    if normalize:  # eq. (14) on the reference frame
        ref = ref * float(budget_s / durations_s[r])
    return net.reference_scale(ref).view(-1)


def exposure_report(system: GimbalSystem, variant: str) -> dict[str, Any]:
    """The current shutter schedule in microseconds, as a camera driver can read it."""
    sched = system.sensor.schedule_us()
    return {"variant": variant, "camera": system.sensor.camera.name, **sched}


def save_system(path: str | os.PathLike[str], system: GimbalSystem, params: dict[str, Any], variant: str) -> None:
    """Atomically write a trained system (params, variant, weights, schedule in us) for :func:`load_system`,
    with the sha256 of its tensors (:func:`gimbal.checkpoint.save_checkpoint`).

    A model file is data only: a camera preset file (``sensor.camera``) is stored as its values (``sensor.camera``
    null, every camera field in ``sensor.overrides``), so loading the model never opens the path it was trained
    with."""
    save_checkpoint(path, {"variant": variant, "params": model_file_params(params), "system": system.state_dict(),
                           "exposures": exposure_report(system, variant)})


SYSTEM_FILE = "gimbal model file"
"""What errors call a model file of :func:`save_system`."""


def _system_problem(state: Any) -> str | None:
    """What makes ``state`` (as read from a file) not a model file of :func:`save_system`; ``None`` if nothing."""
    if not isinstance(state, dict):
        return f"top level is {type(state).__name__}"
    if not isinstance(state.get("variant"), str):
        return f"the stored variant is {state.get('variant')!r}, not a name"
    if not isinstance(state.get("system"), dict):
        return "no 'system' weights"
    return None


def read_system_file(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                     fix: str = "pass the .pt file written by training (models/<variant>.pt) or re-train it",
                     missing_fix: str = "train it first (dvc repro) or pass the right --model path") -> dict[str, Any]:
    """The state of a model file written by :func:`save_system` (``variant``, ``params``, ``system`` weights,
    ``exposures``), checksum verified, through :func:`gimbal.checkpoint.read_torch_file`: every failure is a
    :class:`~gimbal.errors.ModelFileError` naming the file and ``fix``."""
    return read_torch_file(path, SYSTEM_FILE, fix, missing_fix=missing_fix, device=device, kind=_system_problem)


def load_system(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> GimbalSystem:
    """Load a trained :class:`GimbalSystem` written by :func:`train` (``models/<variant>.pt``).

    The file is data only (:func:`read_system_file`): its tensors are checked against its checksum (a file without
    one is refused), and nothing stored in it makes the loader open another file (a stored camera preset *path*,
    which older files hold instead of the camera's values, is refused). Every failure is a
    :class:`~gimbal.errors.ModelFileError` naming the file.
    """
    fix = "pass the .pt file written by training (models/<variant>.pt) or re-train it"
    state = read_system_file(path, device, fix)
    try:
        params = check_stored_params(state.get("params"))
    except ParamError as exc:
        raise ModelFileWrongKind(f"{path}: {exc}: re-train the model (training stores the params as data)") from exc
    try:
        system = GimbalSystem.from_params(params, state["variant"])
    except (ParamError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelFileIncompatible(f"{path}: the stored params do not build a model ({exc}); {fix}") from exc
    load_weights(system, state["system"], path, "the model its stored params build", fix)
    return system.to(device).eval()
