"""DeblurGAN-v2 double-scale RaGAN-LS discriminator (the authors' ``models/networks.py`` NLayerDiscriminator /
DoubleGAN, ``models/losses.py`` RelativisticDiscLossLS, ``util/image_pool.py``).

:class:`DoubleScaleDiscriminator` takes ``(B, C, H, W)`` images in ``[0, 1]`` (mapped to ``[-1, 1]`` inside) and
returns two PatchGAN score maps ``(B, 1, h, w)``: a *local* :class:`NLayerDiscriminator` with a 70 px receptive
field (3 layers) and a *global* one with a 286 px receptive field (5 layers) that sees the whole
(embedded-size) image, trained with :func:`ragan_ls_d_loss` / :func:`ragan_ls_g_loss` ("double-scale
RaGAN-LS"); the relativistic means come from a :class:`PredictionPool` of the last 50 detached per-sample mean
predictions per discriminator and kind (the original's ``ImagePool(50)``), so they are constants and the
generator's adversarial gradient flows through ``D(G(x))`` only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gimbal.baselines.deblurgan.generator import _norm_layer

__all__ = [
    "DoubleScaleDiscriminator",
    "NLayerDiscriminator",
    "PredictionPool",
    "ragan_ls_d_loss",
    "ragan_ls_g_loss",
]


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 4x4 convs, then two stride-1 4x4 convs -> one logit per patch.

    ``(B, C, H, W)`` in [-1, 1] -> ``(B, 1, H', W')`` unbounded scores. Receptive field
    ``1 + 3 (2**n_layers - 1) + 6 * 2**n_layers`` px: 70 for ``n_layers=3``, 286 for 5.
    """

    def __init__(self, channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        use_bias = norm == "instance"  # as the original: no bias before batch norm
        seq: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 2), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 2, bias=use_bias), _norm_layer(norm, ndf * mult),
                    nn.LeakyReLU(0.2, inplace=True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 2, bias=use_bias), _norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ndf * mult, 1, 4, 1, 2)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DoubleScaleDiscriminator(nn.Module):
    """Local (patch) + global PatchGANs of DeblurGAN-v2.

    ``forward(x (B, C, H, W) in [0, 1]) -> (local (B, 1, h1, w1), global (B, 1, h2, w2))`` scores. The local
    branch (``local_layers=3``: 70 px receptive field) judges patches, the global one (``global_layers=5``:
    286 px) sees the whole embedded-size image.
    """

    def __init__(
        self, channels: int = 3, ndf: int = 64, local_layers: int = 3, global_layers: int = 5, norm: str = "instance"
    ) -> None:
        super().__init__()
        self.channels = channels
        self.patch = NLayerDiscriminator(channels, ndf, local_layers, norm)
        self.full = NLayerDiscriminator(channels, ndf, global_layers, norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_pm = 2.0 * x - 1.0
        return self.patch(x_pm), self.full(x_pm)


class PredictionPool:
    """The original's ``ImagePool(50)`` of one discriminator's predictions (util/image_pool.py), as RaGAN-LS uses it.

    :meth:`add` keeps the per-sample mean score of the last ``size`` samples, *detached*; :meth:`mean` is the
    relativistic reference ``mean D(.)`` of both losses. The original stores whole score maps and averages their
    concatenation; for equal-size maps (fixed training crops) that equals the mean of per-sample means used here.
    Because the reference is a constant, the generator's adversarial gradient flows only through ``D(G(x))``.
    """

    def __init__(self, size: int = 50) -> None:
        if size < 1:
            raise ValueError(f"PredictionPool size must be >= 1, got {size}")
        self.size = size
        self.scores = torch.empty(0)

    def __len__(self) -> int:
        return int(self.scores.numel())

    def add(self, pred: torch.Tensor) -> None:
        """Append the per-sample means of ``pred (B, 1, h, w)`` (detached), dropping the oldest beyond ``size``."""
        per_sample = pred.detach().flatten(1).mean(dim=1).float()
        self.scores = torch.cat([self.scores.to(per_sample.device), per_sample])[-self.size:]

    def mean(self) -> torch.Tensor:
        """Mean pooled score (a constant scalar tensor); raises if nothing was added yet."""
        if not len(self):
            raise RuntimeError("PredictionPool.mean: the pool is empty (update the discriminator first)")
        return self.scores.mean()

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "scores": self.scores.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self.scores = torch.as_tensor(state["scores"], dtype=torch.float32).flatten()[-self.size:]


def ragan_ls_d_loss(
    pred_real: torch.Tensor,
    pred_fake: torch.Tensor,
    real_mean: torch.Tensor | None = None,
    fake_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relativistic average least-squares discriminator loss (losses.RelativisticDiscLossLS.get_loss).

    ``((D(r) - mean D(f) - 1)^2 + (D(f) - mean D(r) + 1)^2) / 2``, each term averaged over batch and patches.
    The means are constants (the original takes them from a :class:`PredictionPool`; default: the detached
    batch means).
    """
    real_mean = pred_real.detach().mean() if real_mean is None else real_mean.detach()
    fake_mean = pred_fake.detach().mean() if fake_mean is None else fake_mean.detach()
    return (torch.mean((pred_real - fake_mean - 1.0) ** 2) + torch.mean((pred_fake - real_mean + 1.0) ** 2)) / 2


def ragan_ls_g_loss(
    pred_real: torch.Tensor,
    pred_fake: torch.Tensor,
    real_mean: torch.Tensor | None = None,
    fake_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relativistic average least-squares generator loss (losses.RelativisticDiscLossLS.get_g_loss).

    ``((D(r) - mean D(f) + 1)^2 + (D(f) - mean D(r) - 1)^2) / 2`` with constant means (as
    :func:`ragan_ls_d_loss`): the generator's gradient comes from the second term only, as in the original.
    """
    real_mean = pred_real.detach().mean() if real_mean is None else real_mean.detach()
    fake_mean = pred_fake.detach().mean() if fake_mean is None else fake_mean.detach()
    return (torch.mean((pred_real - fake_mean + 1.0) ** 2) + torch.mean((pred_fake - real_mean - 1.0) ** 2)) / 2
