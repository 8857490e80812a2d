"""Training losses (Section 6.1); the image-quality metrics are in :mod:`gimbal.metrics`.

Images compared here are in display (gamma) space, ``(B, C, H, W)`` with values in [0, 1]: the
network's outputs after the gamma of eq. (15) against the sRGB ground-truth middle frame.

- eq. (16): ``L(x, y) = mean|x - y| + mu * mean|sobel(x) - sobel(y)|`` with kornia's normalized
  Sobel operator (kernel / 8, replicate borders; both the x and y derivatives).
- eq. (18): ``L_total = L(image, gt) + beta * alpha**t * L(align_estimate, gt)`` at training step
  ``t``; the second (annealed) term pushes the flow to align, then fades away.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import kornia
import torch

from gimbal.errors import ParamError
from gimbal.metrics import check_image_pair

__all__ = ["LossConfig", "anneal_weight", "gimbal_loss", "gradient_l1_loss"]


def gradient_l1_loss(pred: torch.Tensor, target: torch.Tensor, mu: float = 1.0) -> torch.Tensor:
    """Eq. (16): L1 + ``mu`` x L1 of Sobel gradients, both averaged over all elements.

    Args:
        pred, target: ``(B, C, H, W)`` images (display space).
        mu: weight of the gradient term.

    Returns:
        Scalar loss.
    """
    check_image_pair(pred, target, "gradient_l1_loss")
    l1 = (pred - target).abs().mean()
    if mu == 0:
        return l1
    grad = kornia.filters.spatial_gradient(pred - target, mode="sobel", order=1, normalized=True)  # linear op
    return l1 + mu * grad.abs().mean()


def anneal_weight(step: int | torch.Tensor, alpha: float = 0.9999886, beta: float = 100.0) -> float:
    """Weight ``beta * alpha**step`` of the alignment term of eq. (18) at training ``step`` (dimensionless)."""
    return float(beta * alpha ** float(step))


@dataclass(frozen=True)
class LossConfig:
    """Params group ``loss`` (eqs. (16), (18)).

    Attributes:
        mu: weight of the Sobel-gradient term of eq. (16) (paper: 1).
        anneal: include the annealed alignment term of eq. (18) (paper: on). Off in the embedded default:
            measured on the embedded data (README, "What kept the merge from learning"), its weight
            ``beta alpha^t`` >> 1 holds the kernels at their reference-frame init for the whole of a
            few-hundred-step run (the net stays at the middle frame), while without it the merge beats the
            middle frame by 1.3 dB after 500 steps. Paper scale (~1e6 steps): ``true``.
        anneal_alpha: per-step decay of the alignment weight (paper: 0.9999886 over ~1e6 steps; the
            embedded default decays faster for short runs).
        anneal_beta: initial alignment weight (paper: 100).
        anneal_crossover: when set, ``anneal_alpha`` is derived from the run length instead: the weight
            ``beta alpha^t`` falls to 1 at this fraction of ``train.steps`` (the paper's alpha and beta put it
            at ln(100) / -ln(0.9999886) = 404k of ~1M steps, 0.40); ``None``: use ``anneal_alpha``.
    """

    mu: float = 1.0
    anneal: bool = False
    anneal_alpha: float = 0.999
    anneal_beta: float = 100.0
    anneal_crossover: float | None = None

    def __post_init__(self) -> None:
        if self.mu < 0 or self.anneal_beta < 0:
            raise ParamError(f"params: 'loss.mu' and 'loss.anneal_beta' must be >= 0, got {self.mu}, "
                             f"{self.anneal_beta}")
        if not 0 < self.anneal_alpha <= 1:
            raise ParamError(f"params: 'loss.anneal_alpha' must be in (0, 1], got {self.anneal_alpha}")
        if self.anneal_crossover is not None and not 0 < self.anneal_crossover <= 1:
            raise ParamError(f"params: 'loss.anneal_crossover' must be in (0, 1] or null, got {self.anneal_crossover}")

    def for_steps(self, steps: int) -> LossConfig:
        """This config with ``anneal_alpha`` derived from ``anneal_crossover`` for a run of ``steps`` steps:
        ``beta alpha^(crossover steps) = 1``, i.e. ``alpha = beta^(-1 / (crossover steps))``."""
        if self.anneal_crossover is None or self.anneal_beta <= 1:
            return self
        alpha = math.exp(-math.log(self.anneal_beta) / (self.anneal_crossover * max(steps, 1)))
        return dataclasses.replace(self, anneal_alpha=alpha)



def gimbal_loss(image: torch.Tensor, align_estimate: torch.Tensor, gt: torch.Tensor, step: int,
                config: LossConfig = LossConfig()) -> torch.Tensor:
    """Eq. (18): ``L(image, gt) + beta * alpha**step * L(align_estimate, gt)``.

    Args:
        image, align_estimate: ``(B, C, H, W)`` network outputs after gamma
            (:class:`~gimbal.models.net.GimbalOutput`).
        gt: ``(B, C, H, W)`` sRGB ground-truth middle frame in [0, 1].
        step: training iteration ``t`` (0-based).
        config: :class:`LossConfig`; with ``anneal=False`` only the first term.

    Returns:
        Scalar loss.
    """
    loss = gradient_l1_loss(image, gt, config.mu)
    if config.anneal:
        loss = loss + anneal_weight(step, config.anneal_alpha, config.anneal_beta) * gradient_l1_loss(align_estimate, gt, config.mu)
    return loss
