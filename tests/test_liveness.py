"""The liveness measures (gimbal/models/liveness.py) on networks whose answer is known by construction."""

from __future__ import annotations

import kornia
import pytest
import torch
from torch import nn

from gimbal.models.flow import warp
from gimbal.models.liveness import (
    dead_units,
    flow_alignment,
    flow_shift_gain,
    gimbal_liveness,
    kernel_variation,
    shift_frames,
)
from gimbal.models.net import GimbalNet


def test_dead_units_counts_channels_silent_for_every_input():
    conv = nn.Conv2d(1, 4, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.copy_(torch.tensor([0.0, -1e3, 0.0, -1e3]))  # channels 1 and 3 can never fire on inputs in [0, 1]
    net = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(4, 2, 1), nn.ReLU6())
    with torch.no_grad():
        net[2].weight.fill_(-1.0)
        net[2].bias.fill_(-1.0)  # every input of layer 2 is >= 0: both of its channels are dead
    x = torch.rand(3, 1, 8, 8) + 0.01
    out = dead_units(net, lambda: net(x))
    assert out["1"] == 0.5 and out["3"] == 1.0
    assert abs(out["all"] - 4 / 6) < 1e-12
    assert not net[1]._forward_hooks  # hooks removed


def test_dead_units_pools_a_layer_over_its_calls():
    relu = nn.ReLU()
    seen = []
    # channel 0 fires only in the first call, channel 1 only in the second: neither is dead
    dead = dead_units(relu, lambda: seen.extend([relu(torch.tensor([[[[1.0]], [[-1.0]]]])),
                                                relu(torch.tensor([[[[-1.0]], [[1.0]]]]))]))
    assert dead["all"] == 0.0


def test_kernel_variation_known_values():
    b, f, c, kk, h, w = 2, 3, 1, 9, 4, 4
    fixed = torch.zeros(b, f, c, kk, h, w)
    fixed[:, 1, :, 4] = 3.0  # the same delta everywhere, for both bursts
    assert kernel_variation(fixed) == {"spatial": 0.0, "input": 0.0}
    varied = fixed.clone()
    varied[1] *= 2.0  # the second burst's kernels are twice the first's: ||K1 - K0|| / ||K0|| = 1
    assert abs(kernel_variation(varied)["input"] - 1.0) < 1e-12
    checker = fixed.clone()
    # half the rows zero: the tap is 3 or 0 around a mean of 1.5, so over the m pixels of that tap
    # ||K - mean|| / ||K|| = 1.5 sqrt(m) / (3 sqrt(m / 2)) = 1 / sqrt(2)
    checker[..., ::2, :] = 0.0
    assert abs(kernel_variation(checker)["spatial"] - 2**-0.5) < 1e-12


def test_shift_frames_matches_the_warp_convention():
    img = torch.rand(1, 1, 1, 20, 20)
    burst = img.repeat(1, 3, 1, 1, 1)
    moved = shift_frames(burst, (2, -1), keep=1)
    assert torch.equal(moved[:, 1], burst[:, 1])
    # aligning a moved frame back onto the reference needs a flow of (+2, -1): warp samples frame(x + dx, y + dy)
    flow = torch.tensor([2.0, -1.0]).view(1, 1, 2, 1, 1).expand(1, 2, 2, 20, 20)
    back = warp(moved[:, [0, 2]], flow)
    assert torch.allclose(back[..., 3:-3, 3:-3], burst[:, [0, 2]][..., 3:-3, 3:-3], atol=1e-5)


class _OracleFlow(nn.Module):
    """Brute force: the integer global shift of each non-reference frame that best matches the reference."""

    def forward(self, burst: torch.Tensor) -> torch.Tensor:
        b, n, _, h, w = burst.shape
        ref = burst[:, n // 2]
        others = [i for i in range(n) if i != n // 2]
        flows = torch.zeros(b, n - 1, 2, h, w)
        for j, i in enumerate(others):
            for bi in range(b):
                best = min(((dx, dy) for dx in range(-4, 5) for dy in range(-4, 5)),
                           key=lambda s: float((warp(burst[bi : bi + 1, i : i + 1],
                                                     torch.tensor([float(s[0]), float(s[1])]).view(1, 1, 2, 1, 1)
                                                     .expand(1, 1, 2, h, w))[0, 0] - ref[bi])[..., 5:-5, 5:-5]
                                               .abs().mean()))
                flows[bi, j, 0], flows[bi, j, 1] = best
        return flows


class _ZeroFlow(nn.Module):
    def forward(self, burst: torch.Tensor) -> torch.Tensor:
        b, n, _, h, w = burst.shape
        return torch.zeros(b, n - 1, 2, h, w)


def test_flow_shift_gain_is_one_for_an_exact_flow_and_zero_for_a_constant_one():
    torch.manual_seed(0)
    burst = torch.rand(2, 1, 1, 24, 24).repeat(1, 3, 1, 1, 1)
    assert abs(flow_shift_gain(_OracleFlow(), burst) - 1.0) < 1e-9
    assert flow_shift_gain(_ZeroFlow(), burst) == 0.0


def test_flow_alignment_is_near_zero_for_the_oracle_one_for_none_and_above_one_for_a_wrong_flow():
    """On a burst whose other frames are the reference moved by whole pixels, the brute-force oracle's warp leaves
    (almost) no misalignment, no flow leaves all of it, and the opposite flow doubles the distance."""
    torch.manual_seed(0)
    ref = kornia.filters.gaussian_blur2d(torch.rand(2, 1, 24, 24), (7, 7), (1.5, 1.5)).unsqueeze(1)
    burst = torch.cat([shift_frames(ref.repeat(1, 3, 1, 1, 1), (2, -1), keep=1)[:, :1], ref,
                       shift_frames(ref.repeat(1, 3, 1, 1, 1), (-1, 2), keep=1)[:, 2:]], dim=1)
    assert flow_alignment(_OracleFlow(), burst) < 0.05
    assert flow_alignment(_ZeroFlow(), burst) == pytest.approx(1.0, abs=1e-5)

    class _Opposite(nn.Module):
        def forward(self, b: torch.Tensor) -> torch.Tensor:
            return -_OracleFlow()(b)

    assert flow_alignment(_Opposite(), burst) > 1.3


def test_gimbal_liveness_tells_a_dead_kpn_from_a_live_one():
    torch.manual_seed(0)
    net = GimbalNet(3, channels=1, kpn_base_channels=8, kpn_depth=2, kpn_init="released")
    x = torch.rand(4, 3, 1, 16, 16)
    live = gimbal_liveness(net, x)
    assert live["kernel_input"] > 1e-3 and live["kernel_spatial"] > 1e-3 and live["kpn_last_dead"] < 1.0
    with torch.no_grad():  # the committed models' state: every hidden unit of the KPN silent
        for m in net.kpn.modules():
            if isinstance(m, nn.Conv2d) and m is not net.kpn.head:
                m.bias.fill_(-1e3)
    dead = gimbal_liveness(net, x)
    assert dead["kpn_dead"] == 1.0 and dead["kernel_input"] == 0.0 and dead["kernel_spatial"] == 0.0
    assert net.training  # the mode is restored
