"""The end-to-end system: sensor (learnable exposures) + reconstruction network.

``GimbalSystem`` maps a dense irradiance clip ``(B, T_f, C, H, W)`` (photo-electrons per
second) to a reconstructed image ``(B, C, H, W)`` in display (gamma) space, and builds the
matching ground truth: the middle instant of the clip as a noise-free exposure of the whole
budget ``T`` (the brightness that eq. 14 normalizes every frame to), clipped to the ADC
range, then gamma-encoded like the network output (eq. 15).

Model variants (the paper's ablations and the KPN baseline) are ``model`` and ``exposure`` param
overrides under ``variants.<name>`` in ``params.yaml``; :func:`variant_configs` applies them.
"""

from __future__ import annotations

import pickle
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gimbal.errors import DataError, ParamError, ShapeError
from gimbal.io import save_torch_atomic
from gimbal.losses import LossConfig, gimbal_loss
from gimbal.models.gimbal import GimbalNet, GimbalOutput, gamma
from gimbal.models.gimbal import ModelConfig
from gimbal.params import parse_group, seed_from_params, unknown_key_error
from gimbal.sensor.camera import CameraSpec
from gimbal.sensor.exposure import ExposureConfig
from gimbal.sensor.model import Sensor, SensorConfig


VARIANT_GROUPS: tuple[str, ...] = ("model", "exposure")
"""The param groups a model variant may override (``variants.<name>.<group>.<key>``)."""


def variant_configs(params: dict[str, Any], variant: str) -> tuple[ModelConfig, ExposureConfig]:
    """The ``model`` and ``exposure`` configs of ``variant``: the groups with ``variants.<variant>`` merged in.

    ``variants.<name>`` maps ``model`` and/or ``exposure`` to key overrides; ``gimbal: {}`` is the model exactly
    as configured. Unknown variants, groups and keys raise :class:`ParamError` naming them.
    """
    variants = params.get("variants") or {}
    if not isinstance(variants, dict) or variant not in variants:
        known = ", ".join(sorted(variants)) if isinstance(variants, dict) else "none"
        raise ParamError(f"params: unknown model variant '{variant}' (variants: {known}); add it under 'variants'")
    overrides = variants[variant] or {}
    if not isinstance(overrides, dict):
        raise ParamError(f"params: 'variants.{variant}' must map groups {list(VARIANT_GROUPS)} to overrides, "
                         f"got {overrides!r}")
    for group in overrides:
        if group not in VARIANT_GROUPS:
            raise unknown_key_error(str(group), VARIANT_GROUPS, f"'variants.{variant}'")
    merged = {}
    for group, cls in (("model", ModelConfig), ("exposure", ExposureConfig)):
        parse_group(cls, overrides.get(group), f"variants.{variant}.{group}")  # names a bad override key
        merged[group] = parse_group(cls, {**(params.get(group) or {}), **(overrides.get(group) or {})}, group)
    return merged["model"], merged["exposure"]


def to_display(linear: torch.Tensor) -> torch.Tensor:
    """Linear image in exposure-normalized units -> display space: clip to [0, 1], gamma (as eq. 15 output)."""
    return gamma(linear.clamp(0.0, 1.0))


def ground_truth(irradiance: torch.Tensor, camera: CameraSpec) -> torch.Tensor:
    """Ideal target image from a dense clip.

    The middle sample ``T_f // 2`` (the original, not interpolated, frame) integrated as if
    static over the full budget ``T`` without noise: ``K * E_mid * T / (2^m - 1)`` clipped to
    [0, 1] (a linear image in the units of the exposure-normalized burst, eq. 14), then
    gamma-encoded as the network output (eq. 15).

    Args:
        irradiance: ``(B, T_f, C, H, W)`` electrons per second.
        camera: the sensor's :class:`CameraSpec` (gain in DN/e-, bits, budget in s).

    Returns:
        ``(B, C, H, W)`` target in display space [0, 1].
    """
    if irradiance.dim() != 5:
        raise ShapeError(f"ground_truth: expected irradiance (B, T_f, C, H, W), got {tuple(irradiance.shape)}")
    mid = irradiance[:, irradiance.shape[1] // 2]
    return to_display(mid * (camera.budget_s * camera.gain_dn_per_e / camera.max_dn))


def middle_frame_image(sensor: Sensor, burst: torch.Tensor, durations_s: torch.Tensor) -> torch.Tensor:
    """Floor of a burst method: the middle frame ``n // 2`` of ``burst (B, n, C, H, W)`` scaled by ``T / dt`` (eq. 14),
    clipped to [0, 1] and gamma-encoded like the network output -> ``(B, C, H, W)`` display space.
    ``durations_s``: ``(n,)`` exposure durations in seconds."""
    return to_display(sensor.normalize(burst, durations_s)[:, burst.shape[1] // 2])


@dataclass
class StepOutput:
    """Everything one forward pass of :class:`GimbalSystem` produces.

    Attributes:
        loss: scalar eq. (18) loss.
        image: ``(B, C, H, W)`` reconstruction, display space.
        target: ``(B, C, H, W)`` ground truth, display space.
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
    """

    def __init__(self, sensor: Sensor, net: GimbalNet, loss: LossConfig = LossConfig(), normalize: bool = True):
        super().__init__()
        if net.n != sensor.n:
            raise ParamError(f"GimbalSystem: network burst length {net.n} != sensor burst length {sensor.n}")
        self.sensor = sensor
        self.net = net
        self.loss_config = loss
        self.normalize = normalize

    @classmethod
    def from_params(cls, params: dict[str, Any], variant: str = "gimbal") -> GimbalSystem:
        """Build the system for ``variant`` from params groups sensor, exposure, model, loss and ``seed``."""
        model, exposure = variant_configs(params, variant)
        sensor = Sensor.from_config(SensorConfig.from_params(params), exposure, model.learn_exposure,
                                    seed_from_params(params))
        net = GimbalNet.from_config(model, exposure.n)
        steps = (params.get("train") or {}).get("steps", 1)
        loss = LossConfig.from_params(params).for_steps(steps if isinstance(steps, int) else 1)
        return cls(sensor, net, loss, normalize=model.normalize_exposure)

    def reconstruct(self, burst: torch.Tensor, durations_s: torch.Tensor | None = None) -> GimbalOutput:
        """Network on a raw burst ``(B, n, C, H, W)`` in [0, 1] DN with exposures ``durations_s (n,)`` s."""
        x = self.sensor.normalize(burst, durations_s) if self.normalize else burst
        return self.net(x)

    def forward(self, irradiance: torch.Tensor, step: int = 0, generator: torch.Generator | None = None
                ) -> StepOutput:
        """Capture a burst from ``irradiance (B, T_f, C, H, W)`` (e-/s), reconstruct, and compute the loss.

        ``generator``: the sensor noise stream (default: the sensor's own; validation passes its own).
        """
        captured = self.sensor(irradiance, step, generator)
        out = self.reconstruct(captured.burst, captured.durations_s)
        target = ground_truth(irradiance, self.sensor.camera).to(out.image.dtype)
        loss = gimbal_loss(out.image, out.align_estimate, target, step, self.loss_config)
        return StepOutput(loss=loss, image=out.image, target=target, burst=captured.burst, net=out)


def exposure_report(system: GimbalSystem, variant: str) -> dict[str, Any]:
    """The current shutter schedule in microseconds, as a camera driver can read it."""
    sched = system.sensor.schedule_us()
    return {"variant": variant, "camera": system.sensor.camera.name, **sched}


def save_system(path: str | os.PathLike[str], system: GimbalSystem, params: dict[str, Any], variant: str) -> None:
    """Atomically write a trained system (params, variant, weights, schedule in us) for :func:`load_system`."""
    save_torch_atomic(path, {"variant": variant, "params": params, "system": system.state_dict(),
                             "exposures": exposure_report(system, variant)})


def checkpoint_reason(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words: the exception type and the first line of its
    message, without PyTorch's advice to retry with ``weights_only=False`` (that would run code
    from the file)."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if "weights_only" in str(exc) or "Weights only load failed" in first:
        first = "not a PyTorch checkpoint of tensors and plain values"
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def load_system(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> GimbalSystem:
    """Load a trained :class:`GimbalSystem` written by :func:`train` (``models/<variant>.pt``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found; train it first (dvc repro) or pass the right --model path")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        system = GimbalSystem.from_params(state["params"], state["variant"])
        system.load_state_dict(state["system"])
    except (KeyError, TypeError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: not a gimbal model checkpoint or incompatible ({checkpoint_reason(exc)}); "
                        "pass the .pt file written by training (models/<variant>.pt) or re-train it") from exc
    return system.to(device).eval()
