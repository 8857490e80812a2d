"""Tests of the training-time augmentation (Section 6.2)."""

from __future__ import annotations

import math

import kornia
import pytest
import torch

from gimbal.config import parse_config
from gimbal.data.augment import (
    AugmentConfig,
    augment_clips,
    augment_full_frames,
    frame_intrinsics,
    random_rotation_trajectory,
    rotation_homographies,
    shake_intrinsics,
    shake_rotations,
    to_irradiance,
    window,
)
from gimbal.errors import ParamError, ShapeError
from gimbal.sensor.camera import get_camera


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
    cfg = AugmentConfig(crop=32, center=16, out_size=8, motion="smooth", max_rotation_deg=0.0, flips=False)
    clips = _clips()
    out = augment_clips(clips, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(out.rotations, torch.eye(3).expand_as(out.rotations))
    for i in range(2):
        x0, y0 = (int(v) for v in out.origins[i])
        window = clips[i, :, :, y0 + 8 : y0 + 24, x0 + 8 : x0 + 24]  # centre 16 of the 32 crop
        expected = torch.nn.functional.interpolate(window, size=(8, 8), mode="bilinear", antialias=True)
        torch.testing.assert_close(out.linear[i], inverse_gamma(expected), atol=1e-5, rtol=0)
    # no resize when out_size == center: the crop itself
    cfg = AugmentConfig(crop=32, center=16, out_size=16, motion="shake", shake_std_deg=(0.0, 0.0, 0.0), flips=False)
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
                        max_rotation_deg=5.0, focal_px=40.0, flips=False)
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
    cfg = AugmentConfig(crop=32, center=16, out_size=16, motion="shake", shake_std_deg=(0.0, 0.0, 0.0), flips=False)
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
        parse_config({"augment": {"crop": 12.5}})
    with pytest.raises(ParamError, match="did you mean 'white_level'"):
        parse_config({"augment": {"whitelevel": [0.1, 0.2]}})
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


@pytest.mark.parametrize("motion,scale", [("shake", "frame"), ("shake", "crop"), ("smooth", "crop")])
def test_region_warp_equals_warping_the_whole_crop(motion: str, scale: str) -> None:
    """Reading only the part of the crop that the window samples gives what warping the whole crop gives."""
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (3, 7, 3, 90, 120), generator=g, dtype=torch.uint8)
    cfg = AugmentConfig(crop=64, center=32, out_size=32, motion=motion, shake_std_deg=(0.5, 2.0, 2.0),
                        max_rotation_deg=6.0, min_rotation_deg=6.0, intrinsics_scale=scale, flips=False,
                        shake_focal_net_px=None)
    out = augment_clips(clips, cfg, torch.Generator().manual_seed(1), channels=1)
    assert out.linear.shape == (3, 7, 1, 32, 32)
    fx, fy, cx, cy = cfg.intrinsics
    for i in range(3):
        x0, y0 = (int(v) for v in out.origins[i])
        crop = clips[i, :, :, y0 : y0 + 64, x0 : x0 + 64].float() / 255.0
        gray = 0.299 * crop[:, 0:1] + 0.587 * crop[:, 1:2] + 0.114 * crop[:, 2:3]
        if motion == "shake" and scale == "frame":  # the frame's intrinsics (from 1920x1080) in crop coordinates
            k = torch.tensor([[fx * 120 / 1920, 0, cx * 120 / 1920 - x0], [0, fy * 90 / 1080, cy * 90 / 1080 - y0],
                              [0, 0, 1]], dtype=torch.float64)
        elif motion == "shake":  # the released code: the intrinsics scaled to the 64 x 64 crop, its own coordinates
            k = torch.tensor([[fx * 64 / 1920, 0, cx * 64 / 1920], [0, fy * 64 / 1080, cy * 64 / 1080], [0, 0, 1]],
                             dtype=torch.float64)
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
    rotations), the whole warped frame, cut at a training crop's centre window, equals that crop's augmentation
    when both use the frame's intrinsics (``intrinsics_scale: frame``, no flips)."""
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (2, 7, 3, 90, 120), generator=g, dtype=torch.uint8)
    cfg = AugmentConfig(crop=64, center=32, out_size=32, shake_std_deg=(0.2, 0.3, 0.3),  # stays inside the crop
                        intrinsics_scale="frame", flips=False, shake_focal_net_px=None)
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


def test_shake_intrinsics_crop_is_the_released_scaling() -> None:
    """``intrinsics_scale: crop`` (the released ``RandomRotate._adapt_intrinsics``): f scaled per axis by the
    512 x 512 editing crop whatever the frame, fx = 5480.68 x 512 / 1920, fy = 5494.67 x 512 / 1080 px;
    ``frame``: by the frame, as before. The principal point is scaled by the image in both."""
    cfg = AugmentConfig(crop=512, center=256, out_size=128, shake_focal_net_px=None)
    assert cfg.intrinsics_scale == "crop" and cfg.intrinsics == (5480.68, 5494.67, 1020.30, 516.23)
    for w, h in ((1280, 720), (1920, 1080), (512, 512)):
        k = shake_intrinsics(cfg, w, h)
        assert k[0, 0].item() == pytest.approx(1461.5, abs=0.1) and k[1, 1].item() == pytest.approx(2604.9, abs=0.1)
    k = shake_intrinsics(cfg, 1280, 720)
    assert (k[0, 2].item(), k[1, 2].item()) == pytest.approx((680.20, 344.15), abs=0.01)  # the frame's
    k = shake_intrinsics(cfg, 512, 512)  # the training crop, in its own coordinates
    assert (k[0, 2].item(), k[1, 2].item()) == pytest.approx((272.08, 244.73), abs=0.01)
    frame = AugmentConfig(crop=512, center=256, out_size=128, intrinsics_scale="frame", shake_focal_net_px=None)
    for k in (shake_intrinsics(frame, 1280, 720), frame_intrinsics(cfg, 1280, 720)):
        assert k[0, 0].item() == pytest.approx(5480.68 * 1280 / 1920)
        assert k[0, 0].item() == pytest.approx(3653.79, abs=0.01)
        assert k[1, 1].item() == pytest.approx(3663.11, abs=0.01)
        assert (k[0, 2].item(), k[1, 2].item()) == pytest.approx((680.20, 344.15), abs=0.01)


def _dot_clips(t: int, h: int, w: int, x: int, y: int) -> torch.Tensor:
    """``(1, t, 1, h, w)`` black frames with a Gaussian dot (sigma 1.5 px) at pixel ``(x, y)`` in every frame."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dot = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    return dot.expand(1, t, 1, h, w).clone()


def _centroids(img: torch.Tensor) -> torch.Tensor:
    """``(..., 1, h, w)`` -> ``(..., 2)`` intensity centroids ``(x, y)`` in pixels."""
    h, w = img.shape[-2:]
    m = img[..., 0, :, :].double()
    total = m.sum(dim=(-2, -1))
    cx = (m.sum(dim=-2) * torch.arange(w, dtype=torch.float64)).sum(dim=-1) / total
    cy = (m.sum(dim=-1) * torch.arange(h, dtype=torch.float64)).sum(dim=-1) / total
    return torch.stack([cx, cy], dim=-1)


def test_crop_intrinsics_move_a_dot_by_the_released_focal_lengths() -> None:
    """End to end, 720p frames with a 512 crop: a camera rotation R moves the pixel at the principal point to
    pp + (fx d_x / d_z, fy d_y / d_z), d = R e_z (a yaw a: fx tan a), with the crop's focal lengths
    fx = 1461.5, fy = 2604.9 px, both in training crops and on whole frames (the same pixel motion)."""
    fx, fy = 1461.5, 2604.9  # 5480.68 x 512 / 1920, 5494.67 x 512 / 1080
    cfg = AugmentConfig(crop=512, center=512, out_size=512, shake_std_deg=(0.0, 1.0, 1.0), flips=False,
                        shake_focal_net_px=None)
    t, seed = 5, 3
    # training crops: the crop's principal point (1020.30 x 512 / 1920, 516.23 x 512 / 1080) = (272.08, 244.73)
    # in crop coordinates; the draws do not depend on the content, so a blank run gives the crop origin first
    origin = augment_clips(torch.zeros(1, t, 1, 720, 1280), cfg, torch.Generator().manual_seed(seed), 1).origins[0]
    x0, y0 = (int(v) for v in origin)
    crop = augment_clips(_dot_clips(t, 720, 1280, x0 + 272, y0 + 245), cfg, torch.Generator().manual_seed(seed), 1)
    assert torch.equal(crop.origins[0], origin)
    # whole frames: the training focal lengths, the principal point (680.20, 344.15) of the 1280 x 720 frame
    full = augment_full_frames(_dot_clips(t, 720, 1280, 680, 344), cfg, torch.Generator().manual_seed(seed), 1)
    torch.testing.assert_close(full.rotations, crop.rotations)
    d = crop.rotations[0, :, :, 2].double()  # (T, 3): the rotated optical axis
    expected = torch.stack([fx * d[:, 0] / d[:, 2], fy * d[:, 1] / d[:, 2]], dim=1)  # (T, 2) px
    assert expected[t // 2].abs().max() < 1e-9  # the middle frame (the gt) is not rotated
    assert expected[[0, 1, 3, 4]].abs().min() > 2.0  # the others move by pixels in x and in y
    moved_crop = _centroids(crop.linear[0]) - torch.tensor([272.0, 245.0], dtype=torch.float64)
    moved_full = _centroids(full.linear[0]) - torch.tensor([680.0, 344.0], dtype=torch.float64)
    torch.testing.assert_close(moved_crop, expected, atol=0.1, rtol=0)
    torch.testing.assert_close(moved_full, expected, atol=0.1, rtol=0)


def test_focal_in_network_pixels_moves_a_dot_by_that_focal_length() -> None:
    """``shake_focal_net_px`` F: in the *network's* pixels (a 128 crop resized to 64), a rotation R moves the pixel
    at the principal point by (F d_x / d_z, F (fy / fx) d_y / d_z), d = R e_z, fy / fx the released crop rule's
    (5494.67 / 1080) / (5480.68 / 1920), whatever the crop size; on whole frames too. The default F is the
    authors' training crop's, 5480.68 x 512 / 1920 x 128 / 256 = 730.76 px."""
    assert AugmentConfig().shake_focal_net_px == pytest.approx(5480.68 * 512 / 1920 * 128 / 256, abs=0.01)
    f_net = 150.0
    ratio = (5494.67 / 1080) / (5480.68 / 1920)
    cfg = AugmentConfig(crop=128, center=128, out_size=64, shake_std_deg=(0.0, 0.5, 0.5), flips=False,
                        shake_focal_net_px=f_net)
    t, seed = 5, 2
    origin = augment_clips(torch.zeros(1, t, 1, 360, 640), cfg, torch.Generator().manual_seed(seed), 1).origins[0]
    x0, y0 = (int(v) for v in origin)
    px, py = 1020.30 * 128 / 1920, 516.23 * 128 / 1080  # the crop's principal point, crop pixels
    crop = augment_clips(_dot_clips(t, 360, 640, x0 + round(px), y0 + round(py)), cfg,
                         torch.Generator().manual_seed(seed), 1)
    d = crop.rotations[0, :, :, 2].double()
    expected = torch.stack([f_net * d[:, 0] / d[:, 2], f_net * ratio * d[:, 1] / d[:, 2]], dim=1)
    assert expected[[0, 1, 3, 4]].abs().max() > 1.0  # it moves by network pixels
    start = torch.tensor([round(px), round(py)], dtype=torch.float64) * 64 / 128 + (64 / 128 - 1) / 2
    torch.testing.assert_close(_centroids(crop.linear[0]) - start, expected, atol=0.1, rtol=0)
    full = augment_full_frames(_dot_clips(t, 360, 640, 340, 172), cfg, torch.Generator().manual_seed(seed), 1)
    pp_full = torch.tensor([1020.30 * 640 / 1920, 516.23 * 360 / 1080], dtype=torch.float64)
    # the dot sits at (340, 172), 0.1 px from the frame's principal point: the motion there is the same to 1e-3 px
    start = torch.tensor([340.0, 172.0], dtype=torch.float64) * 64 / 128 + (64 / 128 - 1) / 2
    assert (pp_full - torch.tensor([340.0, 172.0])).abs().max() < 0.2
    torch.testing.assert_close(_centroids(full.linear[0]) - start, expected, atol=0.1, rtol=0)


def test_flips_are_drawn_per_clip_about_half_the_time() -> None:
    """Horizontal and vertical flips each with probability 0.5, independently, per clip."""
    cfg = AugmentConfig(crop=8, center=8, out_size=8, shake_std_deg=(0.0, 0.0, 0.0))
    assert cfg.flips
    out = augment_clips(torch.rand(1000, 3, 1, 8, 8), cfg, torch.Generator().manual_seed(0), channels=1)
    assert out.flips.shape == (1000, 2) and out.flips.dtype == torch.bool
    n_h, n_v = out.flips.sum(dim=0).tolist()
    assert 430 < n_h < 570 and 430 < n_v < 570  # 500 +- 4.4 sigma
    assert 180 < int(out.flips.all(dim=1).sum()) < 320  # independent: both in a quarter of the clips


def test_a_flipped_clip_is_the_unflipped_clip_flipped() -> None:
    """Flips come after all other draws: the same seed gives the same rotations and crops, and each clip's frames
    and gt are those of ``flips: false`` flipped (left-right, up-down) as recorded; unflipped clips are identical."""
    clips = _clips(b=16, t=5, h=40, w=52)
    on = AugmentConfig(crop=32, center=16, out_size=8, shake_std_deg=(0.5, 2.0, 2.0))
    off = AugmentConfig(crop=32, center=16, out_size=8, shake_std_deg=(0.5, 2.0, 2.0), flips=False)
    keep = torch.tensor([True, False, True, False, True])
    a = augment_clips(clips, on, torch.Generator().manual_seed(1), frames=keep)
    b = augment_clips(clips, off, torch.Generator().manual_seed(1), frames=keep)
    assert torch.equal(a.rotations, b.rotations) and torch.equal(a.origins, b.origins)
    assert not b.flips.any() and a.flips.any(dim=0).all() and (~a.flips).any(dim=0).all()  # each way, both
    for i, (fh, fv) in enumerate(a.flips.tolist()):
        dims = [d for d, f in ((-1, fh), (-2, fv)) if f]
        want, want_gt = (b.linear[i].flip(dims), b.gt[i].flip(dims)) if dims else (b.linear[i], b.gt[i])
        assert torch.equal(a.linear[i], want) and torch.equal(a.gt[i], want_gt)
        assert torch.equal(a.linear[i], b.linear[i]) == (not dims)  # random content: a flip changes it
    torch.testing.assert_close(a.linear[:, 2], inverse_gamma(a.gt), atol=1e-6, rtol=1e-5)  # gt flipped with them


def test_without_flips_the_draws_are_the_rotations_and_origins_only() -> None:
    """``flips: false`` draws nothing more than before (the rotations, then the crop origins): the generator
    continues where those draws leave it, so everything downstream (e.g. the white level) is unchanged."""
    clips = _clips(b=3, t=5)
    cfg = AugmentConfig(crop=32, center=16, out_size=8, flips=False)
    g = torch.Generator().manual_seed(5)
    out = augment_clips(clips, cfg, g)
    ref = torch.Generator().manual_seed(5)
    rot = shake_rotations(3, 5, cfg.shake_std_deg, ref)
    y0, x0 = torch.randint(0, 40 - 32 + 1, (3,), generator=ref), torch.randint(0, 48 - 32 + 1, (3,), generator=ref)
    assert torch.equal(out.rotations, rot) and torch.equal(out.origins, torch.stack([x0, y0], dim=1))
    assert torch.equal(torch.rand(8, generator=g), torch.rand(8, generator=ref))


def test_full_frames_never_flip() -> None:
    """Evaluation on whole frames ignores ``flips``: the same output and the same draws either way."""
    clips = _clips(b=8, t=3, h=24, w=30)
    out, gens = [], []
    for flips in (True, False):
        g = torch.Generator().manual_seed(2)
        cfg = AugmentConfig(crop=16, center=16, out_size=16, shake_std_deg=(0.5, 2.0, 2.0), flips=flips)
        out.append(augment_full_frames(clips, cfg, g))
        gens.append(torch.rand(4, generator=g))
    assert not out[0].flips.any()
    assert torch.equal(out[0].linear, out[1].linear) and torch.equal(out[0].gt, out[1].gt)
    assert torch.equal(gens[0], gens[1])


def test_new_keys_parse_and_errors_name_the_key() -> None:
    cfg = parse_config({"augment": {"intrinsics_scale": "frame", "flips": False}}).augment
    assert (cfg.intrinsics_scale, cfg.flips) == ("frame", False)
    assert (AugmentConfig().intrinsics_scale, AugmentConfig().flips) == ("crop", True)
    with pytest.raises(ParamError, match="augment.intrinsics_scale"):
        parse_config({"augment": {"intrinsics_scale": "full"}})
    with pytest.raises(ParamError, match="augment.flips"):
        parse_config({"augment": {"flips": "yes"}})
    for kwargs, key in (({"intrinsics_scale": "full"}, "intrinsics_scale"), ({"smoothness": -1.0}, "smoothness"),
                        ({"shake_std_deg": (0.0, -1.0, 0.0)}, "shake_std_deg"),
                        ({"white_level": (0.2, 0.1)}, "white_level"), ({"window_frames": 1}, "window_frames"),
                        ({"focal_px": 0.0}, "focal_px")):
        with pytest.raises(ParamError, match=rf"params: 'augment\.{key}'"):
            AugmentConfig(**kwargs)
