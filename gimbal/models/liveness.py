"""Is a trained network alive? Dead ReLU units, input-dependent kernels and flow that tracks motion.

A network can score well and still not be the paper's method: a KPN whose every hidden unit is dead
(ReLU output 0 for every input) predicts the same kernels -- its output layer's bias -- for every pixel
of every burst, i.e. one fixed linear filter over the frames; a flow network whose last hidden layer is
dead outputs one constant flow. These measures make that visible; the training loops log them at every
validation and write them next to the model's PSNR.

All measures are computed in eval mode, without gradients, on bursts the caller passes (the val split).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gimbal.models.flow import split_reference, warp

__all__ = ["dead_units", "flow_alignment", "flow_shift_gain", "gimbal_liveness", "kernel_variation", "restorer_liveness",
           "shift_frames"]

_DYING = (nn.ReLU, nn.ReLU6)
"""Activation modules whose units can die (output 0 for every input): ReLU and ReLU6 (DeblurGAN-v2's MobileNet)."""


@torch.no_grad()
def dead_units(module: nn.Module, run: Callable[[], Any]) -> dict[str, float]:
    """Fraction of dead units of every ``nn.ReLU`` / ``nn.ReLU6`` inside ``module`` while ``run()`` executes.

    A unit (channel) of a ReLU layer is *dead* when its output is exactly 0 at every position of every
    input seen during ``run`` (a layer called several times, e.g. one sub-CNN shared by the levels of a
    pyramid, is pooled over its calls). Only ReLU modules count (a leaky or parametric unit cannot die, and a
    functional ``F.relu`` cannot be hooked).

    Args:
        module: the network to inspect.
        run: a closure that runs ``module`` (or a model containing it) on some inputs.

    Returns:
        ``{layer name: dead fraction in [0, 1]}`` in module order, plus ``"all"``: the fraction of dead
        units over all layers together (0.0 when the module has no ReLU).
    """
    alive: dict[str, torch.Tensor] = {}
    hooks = []

    def hook(name: str) -> Callable[..., None]:
        def fn(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            # channels that are > 0 somewhere in this call, (C,)
            fired = (out.detach() > 0).transpose(0, 1).reshape(out.shape[1], -1).any(dim=1)
            alive[name] = fired if name not in alive else alive[name] | fired

        return fn

    for name, sub in module.named_modules():
        if isinstance(sub, _DYING):
            hooks.append(sub.register_forward_hook(hook(name)))
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    out = {name: 1.0 - float(fired.float().mean()) for name, fired in alive.items()}
    total = sum(int(f.numel()) for f in alive.values())
    out["all"] = (sum(int((~f).sum()) for f in alive.values()) / total) if total else 0.0
    return out


def kernel_variation(kernels: torch.Tensor) -> dict[str, float]:
    """How much predicted per-pixel kernels vary over the frame and with the input burst.

    Args:
        kernels: ``(B, F, C, k*k, H, W)`` kernels of ``B >= 2`` *different* bursts (a KPN's output).

    Returns:
        ``spatial``: ``||K - mean_{H,W} K|| / ||K||`` averaged over bursts (0: one kernel for every pixel);
        ``input``: ``||K_b - K_{b+1}|| / ||K_b||`` averaged over consecutive pairs of bursts (0: the kernels do
        not depend on the burst). Both are dimensionless; a dead KPN gives exactly 0 for both.
    """
    b = kernels.shape[0]
    k = kernels.double().reshape(b, -1, kernels.shape[-2] * kernels.shape[-1])  # (B, F*C*kk, H*W)
    norm = k.flatten(1).norm(dim=1).clamp_min(1e-30)
    spatial = ((k - k.mean(dim=2, keepdim=True)).flatten(1).norm(dim=1) / norm).mean()
    if b < 2:
        return {"spatial": float(spatial), "input": float("nan")}
    flat = k.flatten(1)
    inp = ((flat[1:] - flat[:-1]).norm(dim=1) / norm[:-1]).mean()
    return {"spatial": float(spatial), "input": float(inp)}


def shift_frames(burst: torch.Tensor, shift_px: tuple[int, int], keep: int) -> torch.Tensor:
    """Translate every frame of ``burst (B, n, C, H, W)`` but frame ``keep`` by whole pixels.

    ``shift_px = (sx, sy)``: content moves ``sx`` px right and ``sy`` px down (replicate border), so a flow
    that aligns the moved frame back onto frame ``keep`` (backward warping, :func:`gimbal.models.flow.warp`)
    must grow by ``(+sx, +sy)``.
    """
    sx, sy = shift_px
    b, n, c, h, w = burst.shape
    pad = (max(sx, 0), max(-sx, 0), max(sy, 0), max(-sy, 0))
    moved = F.pad(burst.reshape(b, n * c, h, w), pad, mode="replicate")
    top, left = max(-sy, 0), max(-sx, 0)
    moved = moved[..., top : top + h, left : left + w].reshape(b, n, c, h, w)
    out = moved.clone()
    out[:, keep] = burst[:, keep]
    return out


@torch.no_grad()
def flow_shift_gain(flow: nn.Module, burst: torch.Tensor, shift: int = 2) -> float:
    """How well a flow network follows a known displacement: the mean change of its predicted flow when the
    non-reference frames of ``burst (B, n, C, H, W)`` are moved by ``shift`` px, divided by ``shift``.

    The burst is shifted by ``(+shift, 0)``, ``(-shift, 0)``, ``(0, +shift)`` and ``(0, -shift)``; for each, the
    change of the matching flow component is averaged over the frame interior (``2 * shift`` px border left
    out) and all non-reference frames. 1.0: the flow tracks the shift exactly; 0.0: it ignores its input.
    """
    n = burst.shape[1]
    base = flow(burst)  # (B, n-1, 2, H, W)
    m = 2 * shift
    gains = []
    for axis in (0, 1):
        for sign in (1, -1):
            s = (sign * shift, 0) if axis == 0 else (0, sign * shift)
            moved = flow(shift_frames(burst, s, keep=n // 2))
            delta = (moved - base)[:, :, axis, m:-m, m:-m]
            gains.append(float(delta.double().mean()) / (sign * shift))
    return sum(gains) / len(gains)


@torch.no_grad()
def flow_alignment(flow: nn.Module, burst: torch.Tensor, border: int = 4) -> float:
    """How much a flow network aligns the motion a burst ``(B, n, C, H, W)`` already has: the mean absolute
    difference of the non-reference frames, warped by its flow, to the reference frame, over that of the frames
    as they are (the frame without ``border`` px). Below 1: its warp brings the frames closer to the reference;
    1: no change; above 1: its warp moves them apart. Noise keeps it above 0."""
    ref, others = split_reference(burst)
    still = (others - ref.unsqueeze(1))[..., border:-border, border:-border].abs().mean()
    warped = (warp(others, flow(burst)) - ref.unsqueeze(1))[..., border:-border, border:-border].abs().mean()
    return float(warped / still.clamp_min(1e-12))


@torch.no_grad()
def gimbal_liveness(net: nn.Module, normalized_burst: torch.Tensor) -> dict[str, float]:
    """Liveness of a :class:`~gimbal.models.net.GimbalNet` on exposure-normalized bursts ``(B, n, C, H, W)``.

    Returns (flat, for logging): ``kpn_dead`` (fraction of dead ReLU units of the KPN), ``kpn_last_dead`` (of its
    last hidden layer, the features the kernels are read from), ``kernel_spatial`` and ``kernel_input``
    (:func:`kernel_variation`), and with a flow network ``flow_dead``, ``flow_last_dead``, ``flow_shift_gain``
    (:func:`flow_shift_gain`) and ``flow_alignment`` (:func:`flow_alignment`).
    """
    was_training = net.training
    net.eval()
    try:
        captured: dict[str, torch.Tensor] = {}
        handle = net.kpn.register_forward_hook(lambda _m, _i, out: captured.__setitem__("kernels", out))
        try:
            kpn_dead = dead_units(net.kpn, lambda: net(normalized_burst))
        finally:
            handle.remove()
        last_kpn = [k for k in kpn_dead if k != "all"][-1]
        out = {"kpn_dead": kpn_dead["all"], "kpn_last_dead": kpn_dead[last_kpn]}
        out.update({f"kernel_{k}": v for k, v in kernel_variation(captured["kernels"]).items()})
        if getattr(net, "flow", None) is not None:
            x = net.pad(net.flow_input(normalized_burst, net.input_scale(normalized_burst)))  # what the flow network sees
            flow_dead = dead_units(net.flow, lambda: net.flow(x))
            last_flow = [k for k in flow_dead if k != "all"][-1]
            out.update({"flow_dead": flow_dead["all"], "flow_last_dead": flow_dead[last_flow],
                        "flow_shift_gain": flow_shift_gain(net.flow, x), "flow_alignment": flow_alignment(net.flow, x)})
        return out
    finally:
        net.train(was_training)


@torch.no_grad()
def restorer_liveness(network: nn.Module, enhance: Callable[[torch.Tensor], torch.Tensor], blurred: torch.Tensor,
                      sigma: float = 0.01, seed: int = 0) -> dict[str, float]:
    """Liveness of a single-image restorer (DeblurGAN-v2, DMPHN) on input images ``blurred (B, C, H, W)`` in [0, 1].

    Returns ``dead`` (fraction of dead ReLU units of ``network``, :func:`dead_units`), ``residual`` (``||R(x) - x||
    / ||x||``: how much the restorer changes its input) and ``residual_sensitivity`` (``||r(x + d) - r(x)|| / ||d||``
    for the residual ``r(x) = R(x) - x`` and a small Gaussian perturbation ``d`` of std ``sigma``: 0 when the
    residual does not depend on the input, as with a dead network behind an identity skip).
    ``enhance``: the restorer's eval-mode inference (``Restorer.enhance``).
    """
    gen = torch.Generator(device=blurred.device).manual_seed(seed)
    dead = dead_units(network, lambda: enhance(blurred))["all"]
    restored = enhance(blurred)
    d = sigma * torch.randn(blurred.shape, generator=gen, device=blurred.device, dtype=blurred.dtype)
    moved = (blurred + d).clamp(0, 1)
    d = moved - blurred
    r0, r1 = (restored - blurred).double(), (enhance(moved) - moved).double()
    return {"dead": dead, "residual": float(r0.norm() / blurred.double().norm().clamp_min(1e-30)),
            "residual_sensitivity": float((r1 - r0).norm() / d.double().norm().clamp_min(1e-30))}
