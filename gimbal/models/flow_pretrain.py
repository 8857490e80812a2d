"""Pretraining task of the flow network: bursts of one texture moved by known translations (not in the paper).

The paper trains the flow network end to end from scratch, over ~1e6 steps with the annealed loss (eq. 18) teaching
it to align. In a run of a few hundred steps it never learns to follow motion (docs/results.md, "Does the flow
network align?"), so the pipeline first teaches it alignment on a synthetic task, as optical-flow networks are
commonly pretrained on synthetic data, then trains it end to end with everything else
(:func:`gimbal.training.flow_pretrain.pretrain_flow`; ``flow_pretrain.use: false`` trains from scratch, as the
paper does).

A burst here is ``n`` frames of one smooth random texture (white noise blurred by a Gaussian of random width, scaled
to [0, 1], the flow network's input range under ``model.flow_norm``): the reference frame ``n // 2`` as drawn, every
other frame the texture moved by its own random sub-pixel translation, plus Gaussian noise of a random level. The
flow network sees the noisy burst; the loss compares the *noise-free* frames, warped by its flow, with the
noise-free reference, so smoothing the noise by sub-pixel warps (which lowers a noisy photometric loss without
aligning anything) earns nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import kornia
import torch

from gimbal.errors import ParamError
from gimbal.models.flow import reference_index, split_reference, warp

__all__ = ["FlowPretrainConfig", "Translations", "end_point_error", "photometric_loss", "random_texture",
           "synthetic_translations"]


@dataclass(frozen=True)
class FlowPretrainConfig:
    """Params group ``flow_pretrain``: the flow network's pretraining on synthetic translations.

    Attributes:
        use: the pipeline's flow models start from the pretrained flow network (``false``: from scratch, the
            paper; measured at the embedded size, 400 end-to-end steps from scratch leave a flow that does not
            follow a known shift, docs/results.md).
        steps: optimisation steps.
        batch_size: bursts per step.
        lr: Adam learning rate (at 1e-3 the flow network diverged on this task; 3e-4 and 5e-4 learned it).
        size: burst height and width in px; ``None``: ``augment.out_size`` (the end-to-end training's crop).
        max_shift_px: each non-reference frame moves by a translation uniform in ``[-max, max]^2`` px (the authors'
            shake moves the image by about 5.5 px over the whole budget, so by about 3 px between frames of 3).
        noise_std: the noise level of a burst is uniform in ``[0, noise_std]`` (Gaussian, input units: mean 0.5).
        blur_sigma: ``[min, max]`` width (px) of the Gaussian that smooths the texture, uniform per burst.
        val_bursts: held-out bursts the checkpoint is chosen on (drawn with their own seed).
        val_every: steps between validations (and checkpoints).
        seed: seed of the weights' initialisation, the training bursts and (``seed + 1``) the held-out bursts.
        finetune_lr: the pretrained flow network's Adam learning rate in the end-to-end training (``None``:
            ``train.lr``, as the rest of the networks). Measured on val (one seed, 400 steps): at ``train.lr``
            (1e-3) the end-to-end loss undid the alignment within 150 steps (the flow's gain on a known shift went
            from 0.39 to -0.11); at 3e-4 the warps of `gimbal` and `gimbal_uniform` moved the frames apart
            (misalignment 1.50 / 1.14); at 1e-4 they followed a known shift by 0.32 / 0.31; at 1e-5 both `gimbal` and `gimbal_uniform` kept their alignment
            (gain 0.56 / 0.47, misalignment 0.85 / 0.79) at the same val PSNR (29.86 / 28.26 dB, against
            29.92 / 28.22 at 3e-4; docs/results.md).
    """

    use: bool = True
    steps: int = 1000
    batch_size: int = 8
    lr: float = 5e-4
    size: int | None = None
    max_shift_px: float = 3.0
    noise_std: float = 0.05
    blur_sigma: tuple[float, float] = (0.7, 3.0)
    val_bursts: int = 64
    val_every: int = 200
    seed: int = 0
    finetune_lr: float | None = 1e-5

    def __post_init__(self) -> None:
        for key in ("batch_size", "val_bursts", "val_every"):
            if getattr(self, key) < 1:
                raise ParamError(f"params: 'flow_pretrain.{key}' must be >= 1, got {getattr(self, key)}")
        if self.steps < 0:
            raise ParamError(f"params: 'flow_pretrain.steps' must be >= 0, got {self.steps}")
        for key in ("lr", "finetune_lr"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ParamError(f"params: 'flow_pretrain.{key}' must be > 0, got {value}")
        if self.size is not None and self.size < 8:
            raise ParamError(f"params: 'flow_pretrain.size' must be >= 8 px or null, got {self.size}")
        if not 0 < self.max_shift_px < 32:
            raise ParamError(f"params: 'flow_pretrain.max_shift_px' must be in (0, 32) px, got {self.max_shift_px}")
        if self.noise_std < 0:
            raise ParamError(f"params: 'flow_pretrain.noise_std' must be >= 0, got {self.noise_std}")
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise ParamError(f"params: 'flow_pretrain.blur_sigma' must be [min, max] with 0 < min <= max, got "
                             f"{list(self.blur_sigma)}")


class Translations(NamedTuple):
    """A batch of :func:`synthetic_translations`."""

    noisy: torch.Tensor  # (B, n, 1, S, S): what the flow network sees
    clean: torch.Tensor  # (B, n, 1, S, S): the same frames without noise (the loss's)
    shifts: torch.Tensor  # (B, n-1, 2): (dx, dy) px that align each non-reference frame (flow convention of warp)


def random_texture(generator: torch.Generator, batch: int, size: int, blur_sigma: tuple[float, float]
                   ) -> torch.Tensor:
    """``(batch, 1, size, size)`` smooth random textures in [0, 1]: white noise blurred by a Gaussian of width
    uniform in ``blur_sigma`` (px, one per texture), each scaled to span [0, 1]. Drawn from ``generator``."""
    noise = torch.rand(batch, 1, size, size, generator=generator)
    lo, hi = blur_sigma
    sigma = lo + (hi - lo) * torch.rand(batch, generator=generator)
    ks = 2 * int(math.ceil(3 * hi)) + 1
    tex = kornia.filters.gaussian_blur2d(noise, (ks, ks), torch.stack([sigma, sigma], dim=1), border_type="reflect")
    tmin, tmax = tex.amin((2, 3), keepdim=True), tex.amax((2, 3), keepdim=True)
    return (tex - tmin) / (tmax - tmin).clamp_min(1e-8)


def synthetic_translations(generator: torch.Generator, batch: int, n: int, size: int, max_shift_px: float,
                           noise_std: float, blur_sigma: tuple[float, float]) -> Translations:
    """``batch`` bursts of ``n`` frames ``size x size`` px (see the module docstring).

    Frame ``j`` (not the reference) is the texture moved by ``-shifts[j]``: the true flow that aligns it back onto
    the reference, in the convention of :func:`gimbal.models.flow.warp` (``aligned(x, y) = frame(x + dx, y + dy)``),
    is the constant ``shifts[:, j]``. The frames are cut from a texture larger by a margin beyond ``max_shift_px``,
    so no frame shows a border. Everything is drawn from ``generator`` (CPU).
    """
    pad = int(math.ceil(max_shift_px)) + 2
    big = size + 2 * pad
    tex = random_texture(generator, batch, big, blur_sigma)
    shifts = (2 * torch.rand(batch, n - 1, 2, generator=generator) - 1) * max_shift_px
    # frame_j(x, y) = tex(x - s_x, y - s_y): warping the texture with the flow -s moves its content by +... so that
    # warping frame_j with +s gives the texture back
    moved = warp(tex.unsqueeze(1).expand(batch, n - 1, 1, big, big).contiguous(),
                 (-shifts).view(batch, n - 1, 2, 1, 1).expand(batch, n - 1, 2, big, big))
    crop = (..., slice(pad, pad + size), slice(pad, pad + size))
    ref, others = tex[crop].unsqueeze(1), moved[crop]
    r = reference_index(n)
    clean = torch.cat([others[:, :r], ref, others[:, r:]], dim=1)
    level = noise_std * torch.rand(batch, 1, 1, 1, 1, generator=generator)
    noisy = clean + level * torch.randn(clean.shape, generator=generator)
    return Translations(noisy, clean, shifts)


def photometric_loss(flows: torch.Tensor, clean: torch.Tensor, border: int = 2) -> torch.Tensor:
    """Mean absolute difference between the noise-free non-reference frames warped by ``flows (B, n-1, 2, S, S)``
    and the noise-free reference, over the frame without ``border`` px (``clean (B, n, 1, S, S)``). Scalar."""
    ref, others = split_reference(clean)
    diff = warp(others, flows) - ref.unsqueeze(1)
    return diff[..., border:-border, border:-border].abs().mean()


def end_point_error(flows: torch.Tensor, shifts: torch.Tensor, border: int = 4) -> torch.Tensor:
    """Mean end-point error (px) of ``flows (B, n-1, 2, S, S)`` against the constant true ``shifts (B, n-1, 2)``,
    over the frame without ``border`` px. Scalar."""
    inner = flows[..., border:-border, border:-border]
    return (inner - shifts[..., None, None]).norm(dim=2).mean()
