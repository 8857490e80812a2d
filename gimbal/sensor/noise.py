"""Shot, dark and read noise with a differentiable Poisson sampler (paper eqs. (6)-(8)).

Photo-electrons plus dark electrons are Poisson, ``n_e ~ Poisson(mu_e + I0 dt)`` (dark signal eq. (6),
Poisson eq. (7)); read noise adds ``N(0, sigma_ro^2)`` electrons (eq. (8)). Poisson sampling is not
differentiable, so during training the paper uses a hybrid reparametrization:

* below ``max_electrons`` (1000): the Generalized Gumbel-Softmax (GenGS, Joo et al. 2020)
  over the truncated support ``{0, ..., n_bins - 1}`` with temperature tau,
  ``y = sum_k k * softmax((k log(lam) - log(k!) + g_k) / tau)_k``, g_k ~ Gumbel(0, 1);
* above it: the Gaussian with the same mean and variance, ``y = lam + sqrt(lam) * eps``.

At evaluation time samples are exact (``torch.poisson``).

The relaxed GenGS sample is a soft average over neighbouring counts, so its variance is
below Poisson's: measured ~20-30 % of lam at tau = 1 and ~89-91 % at tau = 0.1 (the paper's
floor). ``hard=True`` (straight-through GenGS) returns the exact Gumbel-max Poisson sample
in the forward pass and keeps the GenGS gradient; it is an option, off by default to stay
with the paper.

GenGS is a custom autograd function because a naive implementation keeps an
``(pixels, n_bins)`` softmax alive for backward (~14 kB per pixel at 1200 bins). Its
gradient has the closed form ``dy/dlam = Var_s[k] / (tau * lam)`` (the variance of k under
the relaxed one-hot ``s``), so the forward pass runs in pixel chunks of bounded memory and
only one number per pixel is saved for backward.
"""

from __future__ import annotations

import math

import torch

from gimbal.errors import ParamError

_LAM_FLOOR = 1e-6  # log(lam) needs lam > 0; a pixel with no signal gets this mean


def gengs_temperature(step: int, decay: float = 1e-5, tau_min: float = 0.1) -> float:
    """Annealed GenGS temperature tau = max(exp(-decay * step), tau_min) (paper Section 4)."""
    if step < 0:
        raise ParamError(f"training step must be >= 0, got {step}")
    return max(math.exp(-decay * step), tau_min)


def min_bins(max_electrons: float) -> int:
    """Smallest ``n_bins`` whose truncated support covers Poisson(max_electrons) to > 6 sigma.

    ``ceil(g + 6 sqrt(g) + 10)``; 1200 for the paper's g = 1000.
    """
    return int(math.ceil(max_electrons + 6.0 * math.sqrt(max(max_electrons, 0.0)) + 10.0))


def check_gengs_params(max_electrons: float, n_bins: int) -> None:
    """Raise :class:`ParamError` if ``n_bins`` truncates Poisson(max_electrons) noticeably."""
    if max_electrons < 0:
        raise ParamError(f"sensor.gengs_max_electrons must be >= 0, got {max_electrons}")
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 2:
        raise ParamError(f"sensor.n_bins must be an int >= 2, got {n_bins!r}")
    if max_electrons > 0 and n_bins < min_bins(max_electrons):
        raise ParamError(
            f"sensor.n_bins={n_bins} is too small for sensor.gengs_max_electrons={max_electrons}: the GenGS support "
            f"{{0..n_bins-1}} must cover Poisson(max) to 6 sigma; use n_bins >= {min_bins(max_electrons)} "
            f"or lower gengs_max_electrons"
        )


def gengs_chunk_pixels(n_bins: int, chunk_bytes: int, element_size: int = 4) -> int:
    """Pixels per GenGS chunk so that the two live ``(pixels, n_bins)`` buffers fit in ``chunk_bytes``."""
    return max(1, int(chunk_bytes // (2 * n_bins * element_size)))


@torch.no_grad()
def _gengs_forward(
    lam: torch.Tensor, tau: float, n_bins: int, generator: torch.Generator | None, chunk_pixels: int, hard: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """GenGS sample (soft, or hard = Gumbel-max) and d(soft sample)/d lam for a flat ``(P,)`` tensor of means."""
    dtype, device = lam.dtype, lam.device
    k = torch.arange(n_bins, dtype=dtype, device=device)
    log_fact = torch.lgamma(k + 1)
    y = torch.empty_like(lam)
    dy = torch.empty_like(lam)
    tiny = torch.finfo(dtype).tiny
    for lo in range(0, lam.numel(), chunk_pixels):
        lc = lam[lo : lo + chunk_pixels].clamp_min(_LAM_FLOOR)
        z = torch.rand((lc.numel(), n_bins), generator=generator, dtype=dtype, device=device)
        z.clamp_(min=tiny).log_().neg_().log_().neg_()  # Gumbel(0, 1) noise
        z.addcmul_(lc.log()[:, None], k[None, :]).sub_(log_fact[None, :])  # + log p_k (up to a constant)
        z.div_(tau)
        zmax, kmax = z.max(dim=1, keepdim=True)
        z.sub_(zmax).exp_()
        z.div_(z.sum(dim=1, keepdim=True))  # s = softmax(...), the relaxed one-hot
        yc = z @ k  # relaxed Poisson sample (eq. (7)) via GenGS
        d = k[None, :] - yc[:, None]
        var = (d.square_().mul_(z)).sum(dim=1)
        y[lo : lo + chunk_pixels] = k[kmax[:, 0]] if hard else yc
        dy[lo : lo + chunk_pixels] = var / (tau * lc)
        del z, d
    return y, dy


class _GenGSPoisson(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lam, tau, n_bins, generator, chunk_pixels, hard):  # type: ignore[override]
        y, dy = _gengs_forward(lam, tau, n_bins, generator, chunk_pixels, hard)
        ctx.save_for_backward(dy)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        (dy,) = ctx.saved_tensors
        return grad * dy, None, None, None, None, None


def gengs_poisson(
    lam: torch.Tensor,
    tau: float,
    n_bins: int,
    generator: torch.Generator | None = None,
    chunk_bytes: int = 64 * 2**20,
    hard: bool = False,
) -> torch.Tensor:
    """Relaxed Poisson(lam) sample by the Generalized Gumbel-Softmax; any shape, differentiable in ``lam``.

    ``lam`` in electrons (>= 0). ``hard=True``: straight-through variant (forward value is the
    exact Gumbel-max sample, gradient is the relaxed one). Memory: two ``(chunk, n_bins)``
    buffers of at most ``chunk_bytes`` together, plus one saved value per pixel.
    """
    if tau <= 0:
        raise ParamError(f"GenGS temperature must be > 0, got {tau}")
    chunk = gengs_chunk_pixels(n_bins, chunk_bytes, lam.element_size())
    flat = lam.reshape(-1)
    return _GenGSPoisson.apply(flat, float(tau), int(n_bins), generator, chunk, bool(hard)).reshape(lam.shape)


def gaussian_poisson(lam: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Gaussian reparametrization of Poisson(lam): ``lam + sqrt(lam) * eps``, eps ~ N(0, 1)."""
    return lam + torch.sqrt(lam) * eps


def shot_noise(
    lam: torch.Tensor,
    *,
    training: bool,
    tau: float = 1.0,
    max_electrons: float = 1000.0,
    n_bins: int = 1200,
    generator: torch.Generator | None = None,
    chunk_bytes: int = 64 * 2**20,
    hard: bool = False,
) -> torch.Tensor:
    """Eq. (7): Poisson electron counts with mean ``lam``, same shape as ``lam``.

    ``training=True``: hybrid reparametrization (GenGS where ``lam < max_electrons``,
    Gaussian elsewhere), differentiable in ``lam``; ``hard`` selects straight-through GenGS.
    ``training=False``: exact ``torch.poisson`` samples (no gradient). Negative means are clamped to 0.
    """
    lam = lam.clamp_min(0)
    if not training:
        return torch.poisson(lam.detach(), generator=generator)
    eps = torch.randn(lam.shape, generator=generator, dtype=lam.dtype, device=lam.device)
    low = lam < max_electrons
    # double-where keeps sqrt's infinite slope at 0 out of the masked-out gradient
    std = torch.sqrt(torch.where(low, torch.ones_like(lam), lam))
    out = lam + std * eps
    if bool(low.any()):
        out = out.masked_scatter(low, gengs_poisson(lam[low], tau, n_bins, generator, chunk_bytes, hard))
    return out


def read_noise(electrons: torch.Tensor, sigma_e: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. (8): add read noise N(0, sigma_e^2) in electrons."""
    if sigma_e == 0:
        return electrons
    return electrons + sigma_e * torch.randn(
        electrons.shape, generator=generator, dtype=electrons.dtype, device=electrons.device
    )
