"""The Digital Gimbal reconstruction network (Section 5): flow alignment + KPN merge.

``GimbalNet`` takes the exposure-normalized burst (eq. (14)) in linear units, aligns the
non-reference frames to the middle frame with :class:`~gimbal.models.flow.FlowNet`, predicts
per-pixel kernels for the ``2n-1`` frames (burst + aligned) with :class:`~gimbal.models.kpn.KPN`,
merges them by eq. (15) (mean over frames of the kernel-filtered frames) and applies the display
curve of the run's target (:mod:`gimbal.display`: the released sRGB-like curve, or a 2.2 power). It also
returns the annealed alignment estimate of eq. (17): each kernel collapsed to 1x1 (the sum of its
weights), applied to the normalized reference frame and the n-1 *aligned* frames only, rescaled by
kappa / kappa_a (the sum of all collapsed kernels over the sum over those n frames), so it can only be
sharp if the flow aligned the frames.

Sizes: inputs of any ``H, W`` are accepted; they are replicate-padded up to a multiple of
``max(2**kpn_depth, 2**(flow_levels-1))`` and every output is cropped back to ``H x W``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gimbal.display import TARGETS, power_gamma, srgb_encode
from gimbal.errors import ParamError, ShapeError
from gimbal.models.flow import FlowNet, split_reference, warp
from gimbal.models.kpn import KPN, apply_kernels

__all__ = ["GimbalNet", "GimbalOutput", "ModelConfig", "align_estimate"]

@dataclass(frozen=True)
class ModelConfig:
    """Params group ``model`` (Section 5); the embedded default, paper scale in comments.

    Attributes:
        learn_exposure: learn the exposure times end to end (``False``: frozen at ``exposure.init_us``).
        use_flow: align the burst with the flow network (``False``: the paper's no-flow ablation / KPN).
        normalize_exposure: eq. (14) before the network (``False``: the supplement's ablation).
        channels: 1 (monochrome, as the paper and its released code) or 3 (RGB).
        flow_levels: pyramid levels of the flow network (paper scale: 4).
        flow_channels: hidden widths of the flow sub-CNN (paper: 100, 50, 25).
        kernel_size: per-pixel kernel size k (paper: 5).
        kpn_base_channels: KPN U-Net width (paper scale: 64).
        kpn_depth: KPN down-samplings (paper scale: 4).
        kpn_init: the merge starts as the middle frame (``reference``, ours) or the mean of all frames (``mean``);
            ``released``: PyTorch's default init of the KPN's output layer (the authors' released code: kernels
            near 0, so the merge starts near 0; the paper does not say).
        flow_norm: the flow network sees the burst divided by twice the mean of its reference frame
            (:meth:`GimbalNet.input_scale`; values of order 1, mean 0.5, whatever the light); flows are in pixels,
            so what they mean does not change. ``False``: the burst as is (the paper and the released code do not
            scale it). Measured: the exposure-normalized bursts here have a mean near 0.1 of full scale, and at
            that scale a flow network trained on known shifts does not learn in 1000 steps (end-point error 0.99
            of no flow, against 0.70 at mean 0.5; docs/results.md).
        kpn_trunk_init: the KPN trunk's initial weights: ``pytorch`` (PyTorch's default, the released code; the paper
            does not say) or ``he`` (He et al. 2015 for ReLU, zero biases). Measured with ``kpn_norm`` on
            (docs/results.md): under PyTorch's default the untrained kernels change between two bursts by 1e-4 and
            30-50 % of the trunk's units are dead after 400 steps; under He's, 0.005 and 3-15 %. The val PSNR of the
            eight burst models was the same within noise (He 0.07 dB lower on average, one seed), so the default
            stays the released one.
        kpn_norm: the KPN sees its frames divided by the same scale, minus 0.5 (:meth:`GimbalNet.kpn_input`: zero
            mean, contrast of order 1, whatever the light); the kernels it predicts filter the frames as they are,
            so the merge stays linear in the burst. ``False``: the frames as is (the paper and the released code).
            Not in the paper. Measured (docs/results.md): at the frames' own scale (mean near 0.1, local contrast
            near 0.03) the trunk's features hardly vary with the input, and two of the eight embedded burst models kept
            one fixed filter for all 400 steps; centred, every model's kernels vary with the burst.
    """

    learn_exposure: bool = True
    use_flow: bool = True
    normalize_exposure: bool = True
    channels: int = 1
    flow_levels: int = 3
    flow_channels: tuple[int, ...] = (100, 50, 25)
    kernel_size: int = 5
    kpn_base_channels: int = 8
    kpn_depth: int = 2
    kpn_init: Literal["reference", "mean", "released"] = "reference"
    kpn_trunk_init: Literal["he", "pytorch"] = "pytorch"
    flow_norm: bool = True
    kpn_norm: bool = True

    def __post_init__(self) -> None:
        for key in ("channels", "flow_levels", "kernel_size", "kpn_base_channels"):
            if getattr(self, key) < 1:
                raise ParamError(f"params: 'model.{key}' must be >= 1, got {getattr(self, key)}")
        if self.channels not in (1, 3):
            raise ParamError(f"params: 'model.channels' must be 1 (mono) or 3 (RGB), got {self.channels}")
        if self.kpn_depth < 0:
            raise ParamError(f"params: 'model.kpn_depth' must be >= 0, got {self.kpn_depth}")
        if self.kernel_size % 2 == 0:
            raise ParamError(f"params: 'model.kernel_size' must be odd, got {self.kernel_size}")
        if not self.flow_channels or min(self.flow_channels) < 1:
            raise ParamError(f"params: 'model.flow_channels' must be positive ints, got {list(self.flow_channels)}")



def align_estimate(frames: torch.Tensor, kernels: torch.Tensor, n: int, aligned: bool,
                   eps: float = 1e-8) -> torch.Tensor:
    """Eq. (17): the annealed alignment estimate in linear units, ``(B, C, H, W)``.

    ``kbar_i = sum_q kernels_i[q]`` is each kernel collapsed to 1x1. With flow (``aligned``), the frames
    are ``(normalized burst, aligned frames)`` and the estimate uses the normalized reference ``n // 2``
    and the ``n - 1`` aligned frames ``A`` only, rescaled by ``kappa / kappa_a``::

        I_align = (kappa / kappa_a) * (1 / F) * sum_{i in A} kbar_i Y_i,
        kappa = sum_{all i} kbar_i,   kappa_a = sum_{i in A} kbar_i,

    so it has the brightness of the eq. (15) merge and is sharp only if the frames in ``A`` are aligned.
    Without flow there are no aligned frames and all ``n`` frames are used (kappa = kappa_a).

    Args:
        frames: ``(B, F, C, H, W)`` the KPN's input frames (``F = 2n - 1`` with flow, ``n`` without).
        kernels: ``(B, F, C, k*k, H, W)`` the KPN's per-pixel kernels.
        n: burst length.
        aligned: whether ``frames[:, n:]`` are the flow-aligned frames.
    """
    kbar = kernels.sum(dim=3)  # (B, F, C, H, W)
    f = frames.shape[1]
    if not aligned:
        return (kbar * frames).mean(dim=1)
    idx = [n // 2, *range(n, f)]
    kappa = kbar.sum(dim=1)
    kbar_a = kbar[:, idx]
    kappa_a = kbar_a.sum(dim=1)
    kappa_a = torch.where(kappa_a.abs() < eps, torch.full_like(kappa_a, eps), kappa_a)
    return (kappa / kappa_a) * (kbar_a * frames[:, idx]).sum(dim=1) / f


@dataclass
class GimbalOutput:
    """Outputs of :class:`GimbalNet` for a burst ``(B, n, C, H, W)``.

    Attributes:
        image: ``(B, C, H, W)`` reconstruction after the display curve (display space, compare to the target).
        align_estimate: ``(B, C, H, W)`` eq. (17) estimate from 1x1 summed kernels, after the display curve.
        linear: ``(B, C, H, W)`` the eq. (15) merge before the curve (linear units of the input).
        flows: ``(B, n-1, 2, H, W)`` flows in pixels aligning each non-reference frame to the
            middle one, or ``None`` when the model has no flow network.
    """

    image: torch.Tensor
    align_estimate: torch.Tensor
    linear: torch.Tensor
    flows: torch.Tensor | None


class GimbalNet(nn.Module):
    """Flow + KPN reconstruction network (Figs. 4-5, eqs. (15)-(17)) on the eq. (14) normalized burst.

    Args:
        n: burst length (reference frame ``n // 2``).
        channels: colour channels ``C`` (3 for RGB, 1 for mono).
        flow_levels: pyramid levels of the flow network.
        kernel_size: per-pixel kernel size ``k`` of the KPN.
        kpn_base_channels, kpn_depth: KPN U-Net width and number of down-samplings.
        use_flow: ``False`` drops the flow network (KPN on the ``n`` burst frames only; the
            paper's "KPN" baseline).
        flow_channels: hidden widths of the flow sub-CNN (paper: 100, 50, 25).
        kpn_init: ``"mean"`` (the merge starts as the mean of all frames), ``"reference"``
            (it starts as the exposure-normalized middle frame; see :class:`KPN`) or ``"released"``
            (PyTorch's default init of the output layer, as the authors' released KPN).
        target: ``eval.target`` (:data:`gimbal.display.TARGETS`): picks the display curve of the outputs.
        flow_norm: divide the flow network's input by :meth:`input_scale` (see :class:`ModelConfig`).
        kpn_norm: the KPN sees its frames divided by :meth:`input_scale`, minus 0.5 (see :class:`ModelConfig`).
        kpn_trunk_init: ``"he"`` or ``"pytorch"``, the KPN trunk's initial weights (see :class:`~gimbal.models.kpn.KPN`).
    """

    FLOW_EPS = 1e-3
    """Smallest divisor of :meth:`input_scale` (full-scale units): a black burst is not blown up."""

    def __init__(self, n: int, channels: int = 3, flow_levels: int = 3, kernel_size: int = 5,
                 kpn_base_channels: int = 64, kpn_depth: int = 4, use_flow: bool = True,
                 flow_channels: tuple[int, ...] = (100, 50, 25), kpn_init: str = "mean",
                 target: str = "srgb", flow_norm: bool = False, kpn_norm: bool = False,
                 kpn_trunk_init: str = "pytorch"):
        super().__init__()
        self.flow_norm = flow_norm
        self.kpn_norm = kpn_norm
        self.scales_input = flow_norm or kpn_norm
        """Whether either network's input is divided by :meth:`input_scale` (else it is ones and never read)."""
        if n < 1 or (use_flow and n < 2):
            raise ParamError(f"GimbalNet: burst length n={n} too small (need n >= 2 with flow, n >= 1 without)")
        if channels < 1:
            raise ParamError(f"GimbalNet: channels must be >= 1, got {channels}")
        self.n = n
        self.channels = channels
        self.use_flow = use_flow
        self.flow = FlowNet(n, levels=flow_levels, channels=flow_channels) if use_flow else None
        if kpn_init not in ("mean", "reference", "released"):
            raise ParamError(f"GimbalNet: kpn_init must be 'mean', 'reference' or 'released', got {kpn_init!r}")
        if kpn_trunk_init not in ("he", "pytorch"):
            raise ParamError(f"GimbalNet: kpn_trunk_init must be 'he' or 'pytorch', got {kpn_trunk_init!r}")
        if target not in TARGETS:
            raise ParamError(f"GimbalNet: target must be one of {list(TARGETS)}, got {target!r}")
        self.target = target
        self.encode = srgb_encode if target == "srgb" else power_gamma
        """Display curve of the outputs (linear -> display space)."""
        self.kpn = KPN(2 * n - 1 if use_flow else n, kernel_size=kernel_size, base_channels=kpn_base_channels,
                       depth=kpn_depth, init_reference=n // 2 if kpn_init == "reference" else None,
                       identity_init=kpn_init != "released", trunk_init=kpn_trunk_init)

    @classmethod
    def from_config(cls, cfg: ModelConfig, n: int, target: str = "srgb") -> GimbalNet:
        """Build from params group ``model`` for bursts of ``n`` frames (``exposure.n``) scored against
        ``target`` (``eval.target``)."""
        return cls(n=n, channels=cfg.channels, flow_levels=cfg.flow_levels, kernel_size=cfg.kernel_size,
                   kpn_base_channels=cfg.kpn_base_channels, kpn_depth=cfg.kpn_depth, use_flow=cfg.use_flow,
                   flow_channels=tuple(cfg.flow_channels), kpn_init=cfg.kpn_init, target=target,
                   flow_norm=cfg.flow_norm, kpn_norm=cfg.kpn_norm, kpn_trunk_init=cfg.kpn_trunk_init)

    def input_scale(self, burst: torch.Tensor) -> torch.Tensor:
        """The divisor ``(B, 1, 1, 1, 1)`` of the flow network's and the KPN's inputs for ``burst (B, n, C, H, W)``:
        twice the mean of the reference frame ``n // 2`` over ``C, H, W`` (at least :attr:`FLOW_EPS`), detached (a
        fixed scaling of the input, not a path for gradients); ones without ``flow_norm`` and ``kpn_norm``. A tiled
        reconstruction passes the whole image's (:func:`gimbal.inference.tiling.reconstruct_tiled`), so every tile
        sees the same scaling."""
        return self.reference_scale(burst[:, self.n // 2])

    def reference_scale(self, reference: torch.Tensor) -> torch.Tensor:
        """:meth:`input_scale` from the exposure-normalized reference frame ``(B, C, H, W)`` alone."""
        if not self.scales_input:
            return torch.ones(reference.shape[0], 1, 1, 1, 1, dtype=reference.dtype, device=reference.device)
        return (2.0 * reference.detach().mean(dim=(1, 2, 3))).clamp_min(self.FLOW_EPS).view(-1, 1, 1, 1, 1)

    def flow_input(self, burst: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """What the flow network sees of ``burst (B, n, C, H, W)``: ``burst / scale`` with ``flow_norm``, else the
        burst as is; ``scale`` is :meth:`input_scale`'s ``(B, 1, 1, 1, 1)``."""
        return burst / scale if self.flow_norm else burst

    def kpn_input(self, frames: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """What the KPN sees of its frames ``(B, F, C, H, W)``: ``frames / scale - 0.5`` with ``kpn_norm`` (zero mean
        for a reference frame of uniform brightness, whatever the light), else the frames as is."""
        return frames / scale - 0.5 if self.kpn_norm else frames

    @property
    def multiple(self) -> int:
        """Inputs are padded internally to a multiple of this."""
        m = self.kpn.multiple
        return math.lcm(m, self.flow.multiple) if self.flow is not None else m

    def pad(self, burst: torch.Tensor) -> torch.Tensor:
        """``burst (B, n, C, H, W)`` replicate-padded at the bottom and right to multiples of :attr:`multiple`."""
        b, n, c, h, w = burst.shape
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if not (ph or pw):
            return burst
        return F.pad(burst.reshape(b, n * c, h, w), (0, pw, 0, ph), mode="replicate").reshape(b, n, c, h + ph, w + pw)

    def forward(self, normalized_burst: torch.Tensor, input_scale: torch.Tensor | None = None) -> GimbalOutput:
        """Eq. (15): reconstruct the middle frame, the mean over the KPN's input frames of each frame filtered by
        its per-pixel kernels, through the display curve (:attr:`encode`); also the eq. (17) estimate.

        Args:
            normalized_burst: ``(B, n, C, H, W)`` exposure-normalized burst (eq. (14)), linear
                units (each frame scaled to a common exposure), any ``H, W >= 1``.
            input_scale: ``(B,)`` or ``(B, 1, 1, 1, 1)`` divisor of the flow network's and the KPN's inputs
                (:meth:`input_scale`); ``None``: this burst's. Ignored without ``flow_norm`` and ``kpn_norm``.

        Returns:
            :class:`GimbalOutput` with ``(B, C, H, W)`` images and ``(B, n-1, 2, H, W)`` flows.
        """
        x = normalized_burst
        if x.dim() != 5 or x.shape[1] != self.n or x.shape[2] != self.channels:
            raise ShapeError(f"GimbalNet: expected a burst (B, n={self.n}, C={self.channels}, H, W), "
                             f"got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        given = input_scale is not None and self.scales_input  # else input_scale(x) is ones
        scale = input_scale.to(x.dtype).view(-1, 1, 1, 1, 1) if given else self.input_scale(x)
        x = self.pad(x)  # to a multiple of 2**depth / 2**(levels-1); cropped back below
        flows = None
        frames = x
        if self.flow is not None:
            flows = self.flow(self.flow_input(x, scale))  # flows are in pixels: the scaling does not change them
            _, others = split_reference(x)
            frames = torch.cat([x, warp(others, flows)], dim=1)  # (B, 2n-1, C, H, W)
        kernels = self.kpn(self.kpn_input(frames, scale))  # (B, F, C, k*k, H, W): they filter the frames as is
        linear = apply_kernels(frames, kernels).mean(dim=1)  # eq. (15)
        align_linear = align_estimate(frames, kernels, self.n, aligned=self.flow is not None)  # eq. (17)
        linear, align_linear = linear[..., :h, :w], align_linear[..., :h, :w]
        if flows is not None:
            flows = flows[..., :h, :w]
        return GimbalOutput(image=self.encode(linear), align_estimate=self.encode(align_linear), linear=linear,
                            flows=flows)
