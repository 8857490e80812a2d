"""Noise (eqs. 6-8) and response (eqs. 9-11) building blocks."""

from __future__ import annotations

import math

import pytest
import torch

from gimbal.errors import ParamError
from gimbal.sensor import gengs_poisson, gengs_temperature, min_bins, quantize, shot_noise, soft_saturation, ste_round
from gimbal.sensor.noise import check_gengs_params, gengs_chunk_pixels


def test_temperature_schedule() -> None:
    assert gengs_temperature(0) == 1.0
    assert gengs_temperature(100_000) == pytest.approx(math.exp(-1.0))
    assert gengs_temperature(10**7) == 0.1
    assert gengs_temperature(50, decay=0.1, tau_min=0.2) == 0.2
    with pytest.raises(ParamError):
        gengs_temperature(-1)


def test_min_bins_and_validation() -> None:
    assert min_bins(1000) == 1200  # the paper's n_bins for gengs_max_electrons = 1000
    check_gengs_params(1000, 1200)
    with pytest.raises(ParamError, match="n_bins >= 1200"):
        check_gengs_params(1000, 1000)
    assert gengs_chunk_pixels(1200, 64 * 2**20) * 2 * 1200 * 4 <= 64 * 2**20


@pytest.mark.parametrize("hard", [False, True])
def test_gengs_mean_and_gradient(hard: bool) -> None:
    """E[y] = lam and E[dy/dlam] = 1 (d/dlam of the Poisson mean), for the relaxed and the hard sample."""
    g = torch.Generator().manual_seed(0)
    lam = torch.full((8000,), 40.0, requires_grad=True)
    y = gengs_poisson(lam, 0.1, min_bins(40), g, hard=hard)
    y.sum().backward()
    assert y.mean().item() == pytest.approx(40.0, rel=0.01)
    assert lam.grad.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.isfinite(lam.grad).all()
    var = y.var().item()
    if hard:  # Gumbel-max: exact Poisson values
        assert torch.equal(y, y.round()) and var == pytest.approx(40.0, rel=0.06)
    else:  # soft relaxation at the paper's tau floor slightly under-disperses
        assert 0.8 * 40 < var < 0.97 * 40


def test_gengs_variance_grows_as_temperature_anneals() -> None:
    g = torch.Generator().manual_seed(1)
    lam = torch.full((4000,), 60.0)
    v_hot = gengs_poisson(lam, 1.0, min_bins(60), g).var().item()
    v_cold = gengs_poisson(lam, 0.1, min_bins(60), g).var().item()
    assert v_hot < 0.5 * v_cold


def test_gengs_chunking_keeps_statistics() -> None:
    g = torch.Generator().manual_seed(2)
    lam = torch.linspace(0, 30, 3000)
    y = gengs_poisson(lam, 0.1, min_bins(30), g, chunk_bytes=4096, hard=True)  # ~3 pixels per chunk
    assert y.shape == lam.shape
    assert (y[:100] <= 2).float().mean() > 0.9  # lam ~ 0 -> almost always 0 or 1
    assert (y - lam).mean().abs().item() < 0.3


def test_shot_noise_paths() -> None:
    g = torch.Generator().manual_seed(3)
    lam = torch.tensor([0.0, 5.0, 999.0, 1001.0, 1e5]).repeat(2000).requires_grad_()
    y = shot_noise(lam, training=True, tau=0.1, max_electrons=1000, n_bins=1200, generator=g)
    (y * torch.linspace(1, 2, y.numel())).sum().backward()
    assert torch.isfinite(lam.grad).all()
    y5 = y.detach().view(2000, 5)
    assert y5[:, 0].abs().max() < 0.5  # no signal -> no electrons
    assert y5[:, 4].std().item() == pytest.approx(math.sqrt(1e5), rel=0.1)  # Gaussian path
    assert y5[:, 2].std().item() == pytest.approx(math.sqrt(999) * 0.95, rel=0.1)  # GenGS path
    with torch.no_grad():
        ye = shot_noise(lam, training=False, generator=g).view(2000, 5)
    assert torch.equal(ye, ye.round())  # exact Poisson counts
    assert ye[:, 1].mean().item() == pytest.approx(5.0, rel=0.1) and ye[:, 1].var().item() == pytest.approx(5, rel=0.15)


def test_soft_saturation() -> None:
    fwc, tau1 = 10_000.0, 9_000.0
    x = torch.linspace(-100, 1e6, 200_001, dtype=torch.float64, requires_grad=True)
    y = soft_saturation(x, tau1, fwc)
    assert (y <= fwc).all()
    lin = x < tau1
    torch.testing.assert_close(y[lin], x[lin])  # linear range
    assert y[-1].item() == pytest.approx(fwc, rel=1e-9)  # saturates at the full well
    assert (y.diff() >= 0).all()  # monotone
    y.sum().backward()
    slope = x.grad
    assert slope[lin].eq(1).all() and (slope > -1e-12).all() and (slope <= 1).all()
    # C^1 at tau1: slope just above is ~1
    x1 = torch.tensor([tau1 + 1e-3], dtype=torch.float64, requires_grad=True)
    soft_saturation(x1, tau1, fwc).backward()
    assert x1.grad.item() == pytest.approx(1.0, abs=1e-6)


def test_quantization_straight_through() -> None:
    x = torch.tensor([-5.0, 0.4, 10.6, 1e6], requires_grad=True)
    y = quantize(x, 0.5, 4)  # 4 bits: DN in [0, 15]
    assert y.tolist() == [0.0, 0.0, 5.0, 15.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.5, 0.0]  # STE inside the ADC range, 0 where clipped
    z = torch.tensor([1.2, 2.7], requires_grad=True)
    ste_round(z).sum().backward()
    assert z.grad.tolist() == [1.0, 1.0]
