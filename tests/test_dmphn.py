"""DMPHN-1-2-4 baseline: shapes, identity start, patch-wise level 3, learning a tiny deblurring task, seeds,
checkpoints, params."""

from __future__ import annotations

import math
import re

import kornia
import pytest
import torch
import torch.nn.functional as F

from gimbal.baselines.dmphn import DMPHN, DMPHNConfig, DMPHNNet
from gimbal.errors import DataError, ParamError, ShapeError

pytestmark = pytest.mark.usefixtures("one_thread")


def _rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10.0 * math.log10(float(F.mse_loss(a, b)))


def test_shapes_and_size_checks():
    net = DMPHNNet(channels=1, base_channels=4, res_blocks=1, identity_init=False)
    y = net(_rand(2, 1, 32, 48))
    assert y.shape == (2, 1, 32, 48)
    for bad in ((1, 1, 36, 48), (1, 1, 32, 44)):
        with pytest.raises(ShapeError, match=re.escape(str(bad))):
            net(_rand(*bad))
    model = DMPHN(DMPHNConfig(identity_init=False))
    x = _rand(1, 1, 37, 45)
    out = model.enhance(x)
    assert out.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert model.enhance(x[0]).shape == x[0].shape  # (C, H, W) in, (C, H, W) out
    with pytest.raises(ShapeError):  # training needs multiples of 8: no silent padding of the loss
        model.training_step(_rand(1, 1, 36, 40), _rand(1, 1, 36, 40))
    with pytest.raises(ShapeError):
        model.training_step(_rand(1, 1, 32, 32), _rand(1, 1, 32, 40))


def test_identity_init_starts_from_the_input():
    x = _rand(2, 1, 37, 45)
    fresh = DMPHN()
    assert torch.equal(fresh.enhance(x), x.clamp(0, 1))
    assert fresh.network.training  # enhance restores the mode
    paper = DMPHN(DMPHNConfig(identity_init=False))
    assert not torch.allclose(paper.enhance(x), x, atol=1e-3)


def test_level3_is_patch_wise():
    net = DMPHNNet(channels=1, base_channels=4, res_blocks=2, identity_init=False)
    x = _rand(1, 1, 32, 48)
    h, w = 32, 48
    y = x.clone()
    y[..., h // 2 - 1, w // 2 - 1] += 0.5  # last pixel of the top-left quadrant, touching all three others
    with torch.no_grad():
        fx, rx = net.level3(x)
        fy, ry = net.level3(y)
    assert fx.shape == (1, 16, h // 4, w // 4) and rx.shape == (1, 1, h, w)
    df = (fy - fx).abs().amax(dim=1)[0]  # (H/4, W/4)
    assert float(df[: h // 8, : w // 8].max()) > 0  # the perturbation is seen by its own quadrant ...
    outside = df.clone()
    outside[: h // 8, : w // 8] = 0
    assert float(outside.max()) == 0.0  # ... and by no other quadrant's features
    dr = (ry - rx).abs()[0, 0]
    assert float(dr[: h // 2].max()) > 0  # the top half's residual changes ...
    assert float(dr[h // 2:].max()) == 0.0  # ... the bottom half's cannot


def test_every_level_feeds_the_output():
    net = DMPHNNet(channels=1, base_channels=4, res_blocks=1, identity_init=False)
    x = _rand(1, 1, 16, 24)
    with torch.no_grad():
        ref = net(x)
        for level in range(3):
            enc = net.encoders[level].body[0]
            enc.weight.add_(0.1)
            assert not torch.allclose(net(x), ref), f"level {level + 1} does not reach the output"
            enc.weight.sub_(0.1)


def test_training_reduces_the_loss():
    gen = torch.Generator().manual_seed(0)
    sharp = F.interpolate(torch.rand(4, 1, 6, 6, generator=gen), size=(32, 32), mode="bicubic").clamp(0, 1)
    blurred = kornia.filters.box_blur(sharp, (5, 5), border_type="replicate")
    model = DMPHN(DMPHNConfig(lr=3e-4))
    losses = [model.training_step(blurred, sharp) for _ in range(60)]
    assert set(losses[0]) == {"loss", "mse"}
    assert model.step == 60
    assert losses[-1]["loss"] < 0.5 * losses[0]["loss"]
    assert _psnr(model.enhance(blurred), sharp) > _psnr(blurred, sharp) + 3.0


def test_seeded_init_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a, b, c = DMPHN(seed=3), DMPHN(seed=3), DMPHN(seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.network.state_dict(), b.network.state_dict(), c.network.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = DMPHN(DMPHNConfig(base_channels=4), seed=2)
    x = _rand(2, 1, 16, 16)
    model.training_step(x, x.flip(-1))
    model.training_step(x, x.flip(-1))
    path = tmp_path / "dmphn.pt"
    model.save(path)
    back = DMPHN.from_checkpoint(path)
    assert back.step == 2 and back.config == model.config and back.seed == 2
    mine, theirs = model.network.state_dict(), back.network.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # the optimiser state came back too: one more identical step keeps them identical
    model.training_step(x, x.flip(-1))
    back.training_step(x, x.flip(-1))
    assert all(torch.equal(model.network.state_dict()[k], back.network.state_dict()[k]) for k in mine)

    other = DMPHN(DMPHNConfig(base_channels=8))
    with pytest.raises(DataError, match=re.escape(str(path))) as err:
        other.load_state(torch.load(path, weights_only=True), path)
    assert "base_channels" in str(err.value)

    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match="dvc repro train_dmphn"):
        DMPHN.from_checkpoint(missing)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        DMPHN.from_checkpoint(tmp_path / "junk.pt")


def test_bad_params_name_the_key():
    with pytest.raises(ParamError, match=re.escape("baselines.dmphn.base_channels")):
        DMPHNConfig(base_channels=0)
    with pytest.raises(ParamError, match=re.escape("baselines.dmphn.lr")):
        DMPHNConfig(lr=0.0)
