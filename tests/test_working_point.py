"""The working point (gimbal.planning.working_point): e-bar by hand, d-bar against random-walk theory
(tests/test_fig9.py), and the content's motion measured on frames moved along known paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gimbal.errors import ShapeError
from gimbal.planning.working_point import content_motion_px, global_shifts, mean_electrons, path_diameter


def _texture(h: int = 72, w: int = 88, seed: int = 0) -> np.ndarray:
    """A smooth random texture in [0.1, 1] (band-limited noise), periodic, so Fourier shifts move it exactly."""
    rng = np.random.default_rng(seed)
    spec = np.fft.fft2(rng.normal(size=(h, w)))
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    img = np.fft.ifft2(spec * np.exp(-(fx**2 + fy**2) / (2 * 0.08**2))).real
    return 0.1 + 0.9 * (img - img.min()) / (img.max() - img.min())


def _moved(img: np.ndarray, path: list[tuple[float, float]]) -> torch.Tensor:
    """``img`` translated by each ``(dx, dy)`` of ``path`` (sub-pixel, Fourier shift theorem) -> ``(F, 1, H, W)``."""
    h, w = img.shape
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    spec = np.fft.fft2(img)
    frames = [np.fft.ifft2(spec * np.exp(-2j * np.pi * (fx * dx + fy * dy))).real for dx, dy in path]
    return torch.tensor(np.stack(frames))[:, None]


def test_content_motion_recovers_known_paths() -> None:
    """Three clips: a straight drift by (3, -1.5) px, an out-and-back along x to 4 px (diameter 4, yet the first and
    last frames coincide), and no motion. The global path's diameter is known exactly; the dense displacement from the
    first frame to the last is the end-to-end one (3.35 px, 0, 0), chained over 24 steps of Farneback flow."""
    img = _texture()
    frames = 25
    drift = [(3.0 * t / (frames - 1), -1.5 * t / (frames - 1)) for t in range(frames)]
    back = [(4.0 * (1 - abs(2 * t / (frames - 1) - 1)), 0.0) for t in range(frames)]
    still = [(0.0, 0.0)] * frames
    batch = torch.stack([_moved(img, p) for p in (drift, back, still)]) * 5000.0  # e-/s: the scale does not matter
    got = content_motion_px([batch[:2], batch[2:]])  # two batches: one value per clip, in order
    assert len(got["diameter_px"]) == len(got["flow_px"]) == 3
    assert got["diameter_px"] == pytest.approx([math.hypot(3.0, 1.5), 4.0, 0.0], abs=0.1)
    assert got["flow_px"][0] == pytest.approx(math.hypot(3.0, 1.5), rel=0.15)
    assert got["flow_px"][1] < 0.4 and got["flow_px"][2] < 0.05  # back where it started (its path is 8 px long)


def test_global_shifts_of_a_pan_over_a_larger_scene() -> None:
    """Not periodic: the frames are crops of a larger scene moving under a fixed window, so content enters and leaves
    at the borders (as in a video). The shifts must still be found to 0.1 px, with the right signs."""
    scene = _texture(120, 140, seed=2)
    path = [(0.0, 0.0), (0.35, -0.2), (1.3, 0.7), (-2.6, 1.9), (4.2, -3.1)]
    frames = _moved(scene, path)[:, 0, 20:92, 26:114].numpy()  # (F, 72, 88)
    assert global_shifts(frames) == pytest.approx(np.array(path), abs=0.1)


def test_content_motion_scales_with_the_image() -> None:
    """Twice the pixels (the same content at twice the size, moved twice as far): twice the motion."""
    img = _texture(36, 44, seed=1)
    small = _moved(img, [(1.0 * t / 8, 0.5 * t / 8) for t in range(9)])[None]
    big = torch.nn.functional.interpolate(small[0], scale_factor=2, mode="bicubic", align_corners=False)[None]
    d_small = content_motion_px([small])["diameter_px"][0]
    d_big = content_motion_px([big])["diameter_px"][0]
    assert d_small == pytest.approx(math.hypot(1.0, 0.5), abs=0.1)
    assert d_big == pytest.approx(2 * d_small, rel=0.1)


def test_content_motion_refuses_bad_shapes() -> None:
    with pytest.raises(ShapeError, match=r"\(B, F, C, H, W\)"):
        content_motion_px([torch.zeros(2, 1, 1, 8, 8)])
    with pytest.raises(ShapeError, match=r"\(B, F, C, H, W\)"):
        content_motion_px([torch.zeros(2, 3, 8, 8)])


def test_mean_electrons_by_hand() -> None:
    """Two batches: 2 scenes of 1000 e-/s and 1 of 4000 e-/s (constant over the window); T = 3 ms collects 3, 3 and
    12 e- per pixel: e-bar = 6 e- (every pixel weighs the same)."""
    a = torch.full((2, 5, 1, 4, 4), 1000.0)
    b = torch.full((1, 5, 1, 4, 4), 4000.0)
    assert mean_electrons([a, b], 0.003) == pytest.approx(6.0)
    ramp = torch.linspace(0, 2000.0, 5).view(1, 5, 1, 1, 1).expand(1, 5, 1, 4, 4)  # the mean over the window counts
    assert mean_electrons([ramp], 0.003) == pytest.approx(3.0)
    with pytest.raises(ShapeError, match="no scenes"):
        mean_electrons([], 0.003)


def test_path_diameter() -> None:
    square = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 4.0]], dtype=torch.float64)
    assert float(path_diameter(square)) == pytest.approx(5.0)
    assert path_diameter(torch.stack([square, 2 * square])).tolist() == pytest.approx([5.0, 10.0])


def test_default_blur_is_the_authors_training_blur_at_the_same_window() -> None:
    """The default shake has the authors' d-bar in network pixels: their released training crop (512 -> 256 -> 128,
    the intrinsics scaled by the editing crop) at the same window and draws, although the embedded crop is 128;
    the released rule applied to the 128 crop would give a quarter of it."""
    from gimbal.data.augment import AugmentConfig
    from gimbal.planning.working_point import AUTHORS_TRAINING, blur_diameter_px

    for frames in (121, 241):
        authors = blur_diameter_px(AUTHORS_TRAINING[0], frames)
        assert blur_diameter_px(AugmentConfig(), frames) == pytest.approx(authors, rel=2e-3)
        small = AugmentConfig(shake_focal_net_px=None)
        assert blur_diameter_px(small, frames) == pytest.approx(authors / 4, rel=2e-3)
