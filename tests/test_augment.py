"""Tests of the training-time augmentation (Section 6.2)."""

from __future__ import annotations

import math

import kornia
import pytest
import torch

from gimbal.data.augment import (
    AugmentConfig,
    augment_clips,
    augment_full_frames,
    random_rotation_trajectory,
    rotation_homographies,
    shake_rotations,
    to_irradiance,
    window,
)
from gimbal.errors import ParamError, ShapeError
from gimbal.sensor.camera import get_camera
from gimbal.config import parse_config


def inverse_gamma(srgb: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function inverted (IEC 61966-2-1), written out for the tests."""
    return torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


CFG = AugmentConfig(crop=32, center=16, out_size=8, motion="smooth", max_rotation_deg=4.0, focal_px=40.0)


def _clips(seed: int = 0, b: int = 2, t: int = 5, h: int = 40, w: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=g)


def test_shapes_and_gt_is_middle_frame():
    out = augment_clips(_clips(), CFG, torch.Generator().manual_seed(1))
    assert out.linear.shape == (2, 5, 3, 8, 8)
    assert out.gt.shape == (2, 3, 8, 8)
    assert out.rotations.shape == (2, 5, 3, 3) and out.origins.shape == (2, 2)
    assert 0 <= out.gt.min() and out.gt.max() <= 1
    torch.testing.assert_close(out.linear[:, 2], inverse_gamma(out.gt), atol=1e-6, rtol=1e-5)  # gt: sRGB middle
    assert (out.linear[:, 2] <= out.gt + 1e-6).all()  # linear = gamma-decoded, darker


def test_determinism_with_seed():
    clips = _clips()
    a = augment_clips(clips, CFG, torch.Generator().manual_seed(3))
    b = augment_clips(clips, CFG, torch.Generator().manual_seed(3))
    c = augment_clips(clips, CFG, torch.Generator().manual_seed(4))
    assert torch.equal(a.linear, b.linear) and torch.equal(a.gt, b.gt)
    assert not torch.equal(a.linear, c.linear)
    cam = get_camera("jetcam19m")
    ea = to_irradiance(a.linear, cam, (0.018, 0.02), torch.Generator().manual_seed(5))
    eb = to_irradiance(a.linear, cam, (0.018, 0.02), torch.Generator().manual_seed(5))
    assert torch.equal(ea, eb)


def test_zero_rotation_is_pure_crop():
    cfg = AugmentConfig(crop=32, center=16, out_size=8, motion="smooth", max_rotation_deg=0.0)
    clips = _clips()
    out = augment_clips(clips, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(out.rotations, torch.eye(3).expand_as(out.rotations))
    for i in range(2):
        x0, y0 = (int(v) for v in out.origins[i])
        window = clips[i, :, :, y0 + 8 : y0 + 24, x0 + 8 : x0 + 24]  # centre 16 of the 32 crop
        expected = torch.nn.functional.interpolate(window, size=(8, 8), mode="bilinear", antialias=True)
        torch.testing.assert_close(out.linear[i], inverse_gamma(expected), atol=1e-5, rtol=0)
    # no resize when out_size == center: the crop itself
    cfg = AugmentConfig(crop=32, center=16, out_size=16, motion="shake", shake_std_deg=(0.0, 0.0, 0.0))
    out = augment_clips(clips, cfg, torch.Generator().manual_seed(2))
    x0, y0 = (int(v) for v in out.origins[0])
    torch.testing.assert_close(out.gt[0], clips[0, 2, :, y0 + 8 : y0 + 24, x0 + 8 : x0 + 24], atol=1e-5, rtol=0)


def test_rotation_trajectory_smooth_anchored_and_scaled():
    max_angle = torch.tensor([0.01, 0.05, 0.0])
    rot = random_rotation_trajectory(3, 31, max_angle, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(rot[:, 15], torch.zeros(3, 3))  # identity at the middle frame
    torch.testing.assert_close(rot.norm(dim=2).amax(dim=1), max_angle)
    step = (rot[:, 1:] - rot[:, :-1]).norm(dim=2)
    accel = (rot[:, 2:] - 2 * rot[:, 1:-1] + rot[:, :-2]).norm(dim=2)
    assert (accel[:2].mean(1) < 0.5 * step[:2].mean(1)).all()  # velocity changes slowly: smooth


def test_yaw_homography_shifts_by_focal_tan():
    f, size, theta = 50.0, 33, 0.1
    h = rotation_homographies(torch.tensor([[0.0, theta, 0.0]]), f, size)[0]  # rotation about the y axis
    centre = torch.tensor([16.0, 16.0, 1.0])
    p = h @ centre
    p = p[:2] / p[2]
    torch.testing.assert_close(p, torch.tensor([16.0 + f * math.tan(theta), 16.0]))


def test_rotation_moves_content():
    clips = _clips(t=3)
    cfg = AugmentConfig(crop=32, center=16, out_size=16, motion="smooth", min_rotation_deg=5.0,
                        max_rotation_deg=5.0, focal_px=40.0)
    out = augment_clips(clips, cfg, torch.Generator().manual_seed(0))
    angle = kornia.geometry.conversions.rotation_matrix_to_axis_angle(out.rotations.reshape(-1, 3, 3)).norm(dim=1)
    assert angle.amax().item() == pytest.approx(math.radians(5.0), rel=1e-4)
    x0, y0 = (int(v) for v in out.origins[0])
    torch.testing.assert_close(out.gt[0], clips[0, 1, :, y0 + 8 : y0 + 24, x0 + 8 : x0 + 24], atol=1e-5, rtol=0)
    assert (out.linear[:, 0] - out.linear[:, 1]).abs().mean() > 0.05  # other frames see a rotated view


def test_irradiance_is_white_level_times_electron_rate():
    """e-/s = linear x white level (uniform per clip in [lo, hi] W/m^2) x QE A lambda / (h c) (eq. 4)."""
    cam = get_camera("jetcam19m")
    linear = torch.rand(256, 3, 1, 4, 4)
    lo, hi = 0.018, 0.02
    irr = to_irradiance(linear, cam, (lo, hi), torch.Generator().manual_seed(0))
    photons_per_j = 520e-9 / (6.62607015e-34 * 299_792_458.0)
    per_w = 0.528236 * 1e-10 * photons_per_j  # e-/s per W/m^2 on a 10 um pixel
    white = (irr / linear).mean(dim=(1, 2, 3, 4)) / per_w  # the drawn white level of each clip, W/m^2
    assert (white >= lo * (1 - 1e-5)).all() and (white <= hi * (1 + 1e-5)).all()
    assert white.mean().item() == pytest.approx((lo + hi) / 2, rel=0.01)  # uniform: mean at the centre
    assert white.std().item() == pytest.approx((hi - lo) / math.sqrt(12), rel=0.15)
    torch.testing.assert_close(irr[0] / irr[0].mean(), linear[0] / linear[0].mean())  # a per-clip scale
    with pytest.raises(ParamError):
        to_irradiance(linear, cam, (0.0, 0.02))


def test_shake_is_a_random_walk_outward_from_the_middle():
    """Per-frame increments of std (roll, pitch, yaw): the angle's variance grows as |t - middle| std^2."""
    std = (1e-3, 1e-2, 1e-2)
    r = shake_rotations(4000, 9, std, torch.Generator().manual_seed(0)).double()
    assert torch.allclose(r[:, 4], torch.eye(3, dtype=torch.float64).expand(4000, 3, 3))  # the middle is unrotated
    # small angles: yaw (about y) ~ R[0, 2], pitch (about x) ~ R[2, 1], roll (about z) ~ R[1, 0]
    for t in (0, 2, 6, 8):
        k = abs(t - 4)
        yaw, pitch, roll = r[:, t, 0, 2], r[:, t, 2, 1], r[:, t, 1, 0]
        for series, s in ((roll, std[0]), (pitch, std[1]), (yaw, std[2])):
            assert series.std().item() == pytest.approx(math.radians(s) * math.sqrt(k), rel=0.06)


def test_luma_and_window():
    """Mono clips are BT.601 luma of the gamma-encoded RGB; the window keeps the first frames."""
    clips = _clips(t=7)
    cfg = AugmentConfig(crop=32, center=16, out_size=16, motion="shake", shake_std_deg=(0.0, 0.0, 0.0))
    out = augment_clips(window(clips, 5), cfg, torch.Generator().manual_seed(2), channels=1)
    assert out.linear.shape == (2, 5, 1, 16, 16)
    x0, y0 = (int(v) for v in out.origins[0])
    rgb = clips[0, 2, :, y0 + 8 : y0 + 24, x0 + 8 : x0 + 24]
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    torch.testing.assert_close(out.gt[0, 0], luma, atol=1e-5, rtol=0)
    with pytest.raises(ShapeError, match="window_frames"):
        window(clips, 9)


def test_config_from_params_and_errors():
    cfg = parse_config({"augment": {"crop": 128, "center": 64, "out_size": 32, "max_rotation_deg": 2}}).augment
    assert (cfg.crop, cfg.center, cfg.out_size, cfg.max_rotation_deg, cfg.focal) == (128, 64, 32, 2, 128.0)
    assert parse_config({}).augment == AugmentConfig()
    with pytest.raises(ParamError, match="augment.crop"):
        parse_config({"augment": {"crop": 12.5}}).augment
    with pytest.raises(ParamError, match="did you mean 'white_level'"):
        parse_config({"augment": {"whitelevel": [0.1, 0.2]}}).augment
    with pytest.raises(ParamError, match="out_size"):
        AugmentConfig(crop=32, center=16, out_size=32)
    with pytest.raises(ShapeError, match="augment.crop"):
        augment_clips(_clips(h=20), CFG)


def test_uint8_clips_match_float_clips() -> None:
    """8-bit clips (as the loaders yield them for training) give the same result as float clips."""
    g = torch.Generator().manual_seed(0)
    clips8 = torch.randint(0, 256, (2, 5, 3, 40, 44), generator=g, dtype=torch.uint8)
    cfg = AugmentConfig(crop=32, center=16, out_size=8)
    a = augment_clips(clips8, cfg, torch.Generator().manual_seed(3))
    b = augment_clips(clips8.float() / 255.0, cfg, torch.Generator().manual_seed(3))
    assert torch.allclose(a.linear, b.linear, atol=1e-6) and torch.allclose(a.gt, b.gt, atol=1e-6)


@pytest.mark.parametrize("motion", ["shake", "smooth"])
def test_region_warp_equals_warping_the_whole_crop(motion: str) -> None:
    """Reading only the part of the crop that the window samples gives what warping the whole crop gives."""
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (3, 7, 3, 90, 120), generator=g, dtype=torch.uint8)
    cfg = AugmentConfig(crop=64, center=32, out_size=32, motion=motion, shake_std_deg=(0.5, 2.0, 2.0),
                        max_rotation_deg=6.0, min_rotation_deg=6.0)
    out = augment_clips(clips, cfg, torch.Generator().manual_seed(1), channels=1)
    assert out.linear.shape == (3, 7, 1, 32, 32)
    fx, fy, cx, cy = cfg.intrinsics
    for i in range(3):
        x0, y0 = (int(v) for v in out.origins[i])
        crop = clips[i, :, :, y0 : y0 + 64, x0 : x0 + 64].float() / 255.0
        gray = 0.299 * crop[:, 0:1] + 0.587 * crop[:, 1:2] + 0.114 * crop[:, 2:3]
        if motion == "shake":  # the frame's intrinsics (scaled from 1920x1080) in crop coordinates
            k = torch.tensor([[fx * 120 / 1920, 0, cx * 120 / 1920 - x0], [0, fy * 90 / 1080, cy * 90 / 1080 - y0],
                              [0, 0, 1]], dtype=torch.float64)
        else:
            k = torch.tensor([[64.0, 0, 31.5], [0, 64.0, 31.5], [0, 0, 1]], dtype=torch.float64)
        shift = torch.tensor([[1, 0, -16.0], [0, 1, -16.0], [0, 0, 1]], dtype=torch.float64)
        hom = (shift @ k @ out.rotations[i].double() @ torch.linalg.inv(k)).float()
        ref = kornia.geometry.transform.warp_perspective(gray, hom, (32, 32), mode="bilinear",
                                                         padding_mode="border", align_corners=True)
        torch.testing.assert_close(out.linear[i], inverse_gamma(ref.clamp(0, 1)), atol=2e-5, rtol=0)


def test_frames_subset_equals_the_full_augmentation() -> None:
    """Producing only some frames gives exactly those frames of the full augmentation (others 0), same gt."""
    clips = _clips(t=9)
    keep = torch.tensor([True, False, False, True, False, True, True, False, False])
    full = augment_clips(clips, CFG, torch.Generator().manual_seed(4), channels=1)
    part = augment_clips(clips, CFG, torch.Generator().manual_seed(4), channels=1, frames=keep)
    keep = keep.clone()
    keep[4] = True  # the middle frame (ground truth) is always produced
    torch.testing.assert_close(part.linear[:, keep], full.linear[:, keep], atol=1e-6, rtol=0)
    assert torch.equal(part.linear[:, ~keep], torch.zeros_like(part.linear[:, ~keep]))
    torch.testing.assert_close(part.gt, full.gt, atol=1e-6, rtol=0)


def test_full_frames_are_the_training_shake_on_the_whole_frame() -> None:
    """Full-frame evaluation moves the camera exactly as training does: with the same generator state (the same
    rotations), the whole warped frame, cut at a training crop's centre window, equals that crop's augmentation."""
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (2, 7, 3, 90, 120), generator=g, dtype=torch.uint8)
    cfg = AugmentConfig(crop=64, center=32, out_size=32, shake_std_deg=(0.2, 0.3, 0.3))  # stays inside the crop
    full = augment_full_frames(clips, cfg, torch.Generator().manual_seed(1), channels=1)
    crop = augment_clips(clips, cfg, torch.Generator().manual_seed(1), channels=1)
    assert full.linear.shape == (2, 7, 1, 90, 120) and full.gt.shape == (2, 1, 90, 120)
    torch.testing.assert_close(full.rotations, crop.rotations)
    assert crop.rotations[:, 0].sub(torch.eye(3)).abs().amax() > 5e-3  # the camera does move (pixels)
    for i in range(2):
        x0, y0 = (int(v) + 16 for v in crop.origins[i])  # the centre 32 of the 64 crop, in frame coordinates
        torch.testing.assert_close(full.linear[i, :, :, y0 : y0 + 32, x0 : x0 + 32], crop.linear[i],
                                   atol=2e-5, rtol=0)


def test_full_frames_keep_the_training_pixel_scale() -> None:
    """Without shake the full frame is the whole frame resized by out_size / center (antialiased), linearised."""
    clips = _clips(b=1, t=3, h=40, w=52)
    cfg = AugmentConfig(crop=32, center=16, out_size=8, shake_std_deg=(0.0, 0.0, 0.0))
    out = augment_full_frames(clips, cfg, torch.Generator().manual_seed(0))
    assert out.linear.shape == (1, 3, 3, 20, 26)  # 40 x 52 at the training scale 8 / 16
    expected = torch.nn.functional.interpolate(clips[0], size=(20, 26), mode="bilinear", antialias=True)
    torch.testing.assert_close(out.linear[0], inverse_gamma(expected.clamp(0, 1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.gt[0], expected[1].clamp(0, 1), atol=1e-5, rtol=0)
    with pytest.raises(ParamError, match="eval.full_frame"):
        augment_full_frames(clips, AugmentConfig(crop=32, center=16, out_size=8, motion="smooth"))
