"""Tests of the losses (eqs. 16, 18) and metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gimbal.config import parse_config
from gimbal.errors import ParamError, ShapeError
from gimbal.losses import LossConfig, anneal_weight, gimbal_loss, gradient_l1_loss
from gimbal.metrics import psnr, ssim


def _sobel_by_hand(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized (1/8) Sobel x and y derivatives of a 2D image with edge-replicated borders."""
    p = np.pad(img, 1, mode="edge")
    h, w = img.shape
    gx = np.zeros_like(img)
    gy = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            win = p[y : y + 3, x : x + 3]
            gx[y, x] = ((win[:, 2] - win[:, 0]) * [1, 2, 1]).sum() / 8
            gy[y, x] = ((win[2, :] - win[0, :]) * [1, 2, 1]).sum() / 8
    return gx, gy


def test_loss_matches_hand_computation():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 3))
    b = rng.random((2, 3, 3))
    mu = 0.7
    l1 = np.abs(a - b).mean()
    grads = []
    for ch in range(2):
        ga, gb = _sobel_by_hand(a[ch]), _sobel_by_hand(b[ch])
        grads += [np.abs(ga[0] - gb[0]), np.abs(ga[1] - gb[1])]
    expected = l1 + mu * np.mean(grads)
    got = gradient_l1_loss(torch.tensor(a[None]), torch.tensor(b[None]), mu=mu)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_gradient_term_sees_structure_l1_misses():
    target = torch.zeros(1, 1, 8, 8)
    flat = torch.full_like(target, 0.1)
    stripes = torch.zeros_like(target)
    stripes[..., 0::4] = stripes[..., 1::4] = 0.2  # same mean absolute error as `flat`, but full of edges
    assert gradient_l1_loss(flat, target, mu=0).item() == pytest.approx(gradient_l1_loss(stripes, target, mu=0).item())
    assert gradient_l1_loss(stripes, target).item() > gradient_l1_loss(flat, target).item() + 0.03
    assert gradient_l1_loss(target, target).item() == 0.0


def test_annealing_weight_decays():
    assert anneal_weight(0) == pytest.approx(100.0)
    assert anneal_weight(1) == pytest.approx(100.0 * 0.9999886)
    steps = [0, 10, 1_000, 100_000, 1_000_000]
    weights = [anneal_weight(s) for s in steps]
    assert all(w1 > w2 for w1, w2 in zip(weights, weights[1:], strict=False))
    assert weights[-1] == pytest.approx(100.0 * math.exp(1_000_000 * math.log(0.9999886)))
    assert weights[-1] < 2e-3  # ~e^-11.4: the term is gone after 1M steps


def test_total_loss_eq18_and_anneal_switch():
    g = torch.Generator().manual_seed(0)
    image, align, gt = (torch.rand(2, 3, 8, 8, generator=g) for _ in range(3))
    cfg = LossConfig(mu=1.0, anneal=True, anneal_alpha=0.99, anneal_beta=10.0)
    for step in (0, 50):
        expected = gradient_l1_loss(image, gt) + 10.0 * 0.99**step * gradient_l1_loss(align, gt)
        torch.testing.assert_close(gimbal_loss(image, align, gt, step, cfg), expected)
    off = LossConfig(anneal=False)
    torch.testing.assert_close(gimbal_loss(image, align, gt, 0, off), gradient_l1_loss(image, gt))
    # the annealed term gives gradient to the alignment estimate only when enabled
    align.requires_grad_(True)
    gimbal_loss(image, align, gt, 0, cfg).backward()
    assert align.grad.abs().sum() > 0


def test_loss_config_from_params():
    assert parse_config({}).loss == LossConfig()
    cfg = parse_config({"loss": {"mu": 0.5, "anneal": False, "anneal_alpha": 0.9, "anneal_beta": 3}}).loss
    assert cfg == LossConfig(mu=0.5, anneal=False, anneal_alpha=0.9, anneal_beta=3.0)
    with pytest.raises(ParamError, match="did you mean 'anneal_alpha'"):
        parse_config({"loss": {"aneal_alpha": 0.9}}).loss
    with pytest.raises(ParamError, match="anneal_alpha"):
        parse_config({"loss": {"anneal_alpha": 1.5}}).loss
    with pytest.raises(ParamError, match="loss.anneal"):
        parse_config({"loss": {"anneal": 1}}).loss


def test_psnr_and_ssim():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 16, 16, generator=g) * 0.8 + 0.1
    pred = target + torch.tensor([0.1, 0.01])[:, None, None, None]  # MSE 1e-2 and 1e-4
    per_image = psnr(pred, target, reduction="none")
    torch.testing.assert_close(per_image, torch.tensor([20.0, 40.0]))
    assert psnr(pred, target).item() == pytest.approx(30.0, rel=1e-5)
    torch.testing.assert_close(ssim(target, target, reduction="none"), torch.ones(2))
    s = ssim(pred, target, reduction="none")
    assert s[0] < s[1] < 1.0
    noisy = (target + 0.2 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    assert ssim(noisy, target).item() < 0.9
    with pytest.raises(ShapeError):
        psnr(pred, target[:, :1])
