"""Tiled inference (gimbal.inference.tiling): tiles blended with margins >= the receptive field equal the
untiled merge; the receptive-field bound holds for the real network; plans respect the budget."""

from __future__ import annotations

import math

import pytest
import torch

from gimbal.inference.tiling import (
    bytes_per_pixel,
    plan_tiles,
    receptive_radius,
    reconstruct_tiled,
    tile_margin,
    tile_starts,
)
from gimbal.system import GimbalSystem

DURATIONS_S = torch.tensor([872.0, 234.0, 583.0], dtype=torch.float64) * 1e-6
MAX_FLOW = 4.0


def tiny_system(channels: int, seed: int = 0) -> GimbalSystem:
    """A small random-init system whose flow network outputs non-zero flows (the last layer is random)."""
    torch.manual_seed(seed)
    params = {"seed": 0, "exposure": {"n": 3, "idle_slot": True, "init_us": [872.0, 234.0, 583.0]},
              "model": {"channels": channels, "kpn_base_channels": 4, "kpn_depth": 1, "flow_levels": 2,
                        "flow_channels": [8, 8, 8]}, "variants": {"gimbal": {}}}
    system = GimbalSystem.from_params(params).eval()
    with torch.no_grad():
        system.net.flow.sub_cnn[-1].weight.normal_(0.0, 0.05)
    return system


def scene(channels: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """``(1, 3, C, H, W)`` burst in [0, 1]: a smooth pattern plus noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    base = 0.3 * (torch.sin(xx / 5.0) * torch.cos(yy / 7.0) + 1) / 2
    return base + 0.3 * torch.rand(1, 3, channels, h, w, generator=g)


@pytest.mark.parametrize("channels", [1, 3])
def test_tiled_equals_untiled(channels):
    system = tiny_system(channels)
    h, w = 150, 171  # not multiples of the padding multiple: the last tiles are padded like the whole image
    burst = scene(channels, h, w)
    with torch.inference_mode():
        ref = system.reconstruct(burst, DURATIONS_S)
    flow = float(ref.flows.norm(dim=2).max())
    assert 0.05 < flow < MAX_FLOW  # the warps really move pixels, within the margin's allowance
    margin = tile_margin(system.net, MAX_FLOW)
    overlap = 2 * margin + 8  # 8 px of cosine feathering
    tile = overlap + 16
    out = reconstruct_tiled(system, burst, DURATIONS_S, tile, overlap, margin, batch=2, max_flow_px=MAX_FLOW)
    assert out.tiles == len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap)) >= 4
    assert out.linear.shape == ref.linear.shape == (1, channels, h, w)
    assert (out.linear - ref.linear).abs().max() < 1e-3
    assert (out.image - ref.image).abs().max() < 1e-3
    assert out.max_flow_px == pytest.approx(flow, rel=0.05)
    # the margin is what makes it exact: without one the seams differ
    cut = reconstruct_tiled(system, burst, DURATIONS_S, 32, 8, 0)
    assert (cut.linear - ref.linear).abs().max() > 1e-3


def test_receptive_radius_bounds_the_real_dependence():
    """Autograd: the input pixels that change one output pixel all lie within receptive_radius."""
    system = tiny_system(1, seed=1).double()
    h = w = 160
    burst = scene(1, h, w, seed=1).double().requires_grad_(True)
    out = system.reconstruct(burst, DURATIONS_S)
    flow = float(out.flows.detach().norm(dim=2).max())
    cy, cx = 81, 78
    out.linear[0, 0, cy, cx].backward()
    nz = torch.nonzero(burst.grad[0].abs().sum(dim=(0, 1)) > 0)
    reach = int(torch.maximum((nz[:, 0] - cy).abs(), (nz[:, 1] - cx).abs()).max())
    bound = receptive_radius(system.net, flow)
    assert 10 < reach <= bound < h // 2  # a real, non-trivial reach, inside the bound and the image


def test_plan_tiles_respects_budget():
    net = tiny_system(3).net
    m, bpp = net.multiple, bytes_per_pixel(net)
    whole = plan_tiles(net, (150, 171), 1e9)
    assert whole.tile == (150, 172) and whole.batch == 1  # fits: one tile (padded to the multiple)
    budget = 1000 * 1000 * bpp
    plan = plan_tiles(net, (4000, 3000), budget)
    th, tw = plan.tile
    assert th % m == 0 and tw % m == 0 and plan.overlap % m == 0
    assert plan.overlap >= 2 * plan.margin >= 2 * receptive_radius(net)
    assert th >= 2 * plan.overlap and tw >= 2 * plan.overlap
    assert plan.estimated_bytes == pytest.approx(plan.batch * th * tw * bpp)
    assert plan.estimated_bytes <= budget and th * tw > 0.9 * 1000 * 1000  # uses most of the budget
    wide = plan_tiles(net, (200, 30000), budget)  # a short image: wide tiles, the whole height
    assert wide.tile[0] == 200 and wide.tile[1] * 200 <= budget / bpp
    with pytest.raises(ValueError, match="max-memory-gb"):
        plan_tiles(net, (100, 100), -1.0)


def test_tile_starts_cover():
    for size, tile, overlap in ((150, 136, 120), (1000, 96, 32), (96, 96, 32), (10, 96, 32)):
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile >= size
        assert all(b - a == tile - overlap for a, b in zip(starts, starts[1:]))
        assert len(starts) == 1 or starts[-2] + tile < size  # no redundant last tile
    assert math.isclose(len(tile_starts(1000, 96, 32)), math.ceil((1000 - 96) / 64) + 1)
