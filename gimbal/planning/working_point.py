"""The working point of a result, as the paper's Fig. 9 describes it: (e-bar, d-bar), and the blur of the content.

- e-bar (:func:`mean_electrons`): the mean photo-electrons a pixel collects at full exposure (one exposure of the
  whole budget T), ``mean(irradiance) x T`` over the scenes, in e-.
- d-bar (:func:`blur_diameter_px`): the blur diameter of the camera shake at full exposure, in the *network's*
  pixels: the mean, over shake draws, of the largest distance between two positions of the principal point over
  the frames spanning T.
- the content's own motion over the same window (:func:`content_motion_px`), in network pixels: the other blur
  the exposure schedule trades against. The diameter of the path of the content's global translation (phase
  correlation of consecutive frames, summed; the same definition as d-bar, applied to the image instead of the
  principal point), and the mean length of the content's dense displacement from the window's first frame to its
  last (Farneback optical flow, chained), which also counts objects that move against the background. Neither is
  exact on real footage: the global path follows the dominant motion, and the dense one reads occlusions (a person
  walking out of the frame) as motion and misses motion on flat, textureless areas.

The evaluation reports all three for the test scenes and every trained model (:mod:`gimbal.evaluation.evaluate`); the
Fig. 9 sweep reports e-bar and d-bar per cell (:mod:`gimbal.planning.fig9`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gimbal.data.augment import AugmentConfig, shake_intrinsics, shake_rotations
from gimbal.errors import DataError, ShapeError
from gimbal.sensor.camera import CameraSpec

__all__ = ["AUTHORS_TRAINING", "blur_diameter_px", "clipped_fraction", "content_motion_px", "global_shifts",
           "mean_electrons", "path_diameter"]

AUTHORS_TRAINING: tuple[AugmentConfig, int] = (AugmentConfig(crop=512, center=256, out_size=128,
                                                             shake_focal_net_px=None), 121)
"""The authors' released training crop (512 -> 256 -> 128, with their shake and intrinsics: the defaults) and its
window (T spans the first 121 of the 241 frames), to state d-bar beside theirs (the paper's text: all 241)."""


def blur_diameter_px(augment: AugmentConfig, frames: int, draws: int = 256, seed: int = 0) -> float:
    """d-bar: the mean over ``draws`` shake trajectories of ``frames`` frames (the released random walk,
    :func:`gimbal.data.augment.shake_rotations`) of the largest distance between two positions of the principal
    point, projected with the shake's intrinsics (:func:`gimbal.data.augment.shake_intrinsics` of a crop) and
    scaled to the network's pixels by ``out_size / center``. Roll does not move the principal point; pitch and
    yaw move it by about ``f tan(angle)``.
    """
    gen = torch.Generator().manual_seed(seed)
    r = shake_rotations(draws, frames, augment.shake_std_deg, gen).double()  # (D, F, 3, 3)
    k = shake_intrinsics(augment, augment.crop, augment.crop)
    p0 = torch.tensor([k[0, 2], k[1, 2], 1.0], dtype=torch.float64)
    rays = torch.linalg.inv(k) @ p0
    q = (k @ r @ rays)  # (D, F, 3)
    xy = q[..., :2] / q[..., 2:]
    return float(path_diameter(xy).mean()) * augment.out_size / augment.center


def path_diameter(xy: torch.Tensor) -> torch.Tensor:
    """The largest distance between two points of each path ``xy (..., F, 2)`` -> ``(...)``."""
    return torch.cdist(xy, xy).amax(dim=(-2, -1))


def mean_electrons(irradiance: Sequence[torch.Tensor], budget_s: float) -> float:
    """e-bar: the mean over every pixel of every scene of ``irradiance`` (batches ``(B, F, C, H, W)`` in e-/s over
    the frames spanning T) of the photo-electrons one exposure of the whole budget ``budget_s`` collects (e-)."""
    electrons, pixels = 0.0, 0
    for irr in irradiance:
        electrons += float(irr.double().mean(dim=1).sum()) * budget_s
        pixels += irr[:, 0].numel()
    if not pixels:
        raise ShapeError("mean_electrons: no scenes given")
    return electrons / pixels


def _to_gray(frames: torch.Tensor) -> np.ndarray:
    """``(F, C, H, W)`` -> ``(F, H, W)`` float64, the mean over channels scaled to [0, 1] by the clip's maximum."""
    gray = frames.double().mean(dim=1).cpu().numpy()
    peak = float(gray.max())
    return gray / peak if peak > 0 else gray


def _periodic(u: np.ndarray) -> np.ndarray:
    """The periodic component of images ``u (..., H, W)`` (Moisan's periodic plus smooth decomposition, 2011): ``u``
    less the smooth image whose Laplacian cancels the jumps across the borders. Its spectrum has no cross of
    border artefacts, so phase correlation needs no window (a window biases the shift towards 0)."""
    h, w = u.shape[-2:]
    v = np.zeros_like(u)
    v[..., 0, :] = u[..., -1, :] - u[..., 0, :]
    v[..., -1, :] = -v[..., 0, :]
    v[..., :, 0] += u[..., :, -1] - u[..., :, 0]
    v[..., :, -1] += u[..., :, 0] - u[..., :, -1]
    q, r = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    denom = 2 * np.cos(2 * np.pi * q / h) + 2 * np.cos(2 * np.pi * r / w) - 4
    denom[0, 0] = 1.0
    spec = np.fft.fft2(v) / denom
    spec[..., 0, 0] = 0.0
    return u - np.fft.ifft2(spec).real


def global_shifts(frames: np.ndarray, upsample: int = 20) -> np.ndarray:
    """The path ``(F, 2)`` of the global translation ``(dx, dy)`` in pixels of ``frames (F, H, W)``, relative to the
    first frame; a frame whose content moved by ``+d`` gives ``+d``.

    Each frame is registered to the one before it (small steps, where content that moves against the background or
    leaves the frame changes little) and the steps are summed. A step: phase correlation of the periodic components
    (:func:`_periodic`; the cross-power spectrum whitened except where it holds no signal), its integer peak refined
    on a ``1 / upsample`` px grid by evaluating the inverse DFT around it (Guizar-Sicairos, Thurman & Fienup 2008),
    then by the vertex of a parabola through the grid's maximum and its neighbours (summed steps would otherwise
    add up the grid's rounding).
    """
    f, h, w = frames.shape
    spec = np.fft.fft2(_periodic(np.asarray(frames, dtype=np.float64)))
    cross = spec[1:] * np.conj(spec[:-1])  # (F - 1, H, W): each frame against the one before
    mag = np.abs(cross)
    cross /= mag + 1e-3 * mag.max(axis=(-2, -1), keepdims=True)  # whiten, but not the frequencies without signal
    corr = np.fft.ifft2(cross).real.reshape(f - 1, -1)
    peak = np.stack(np.unravel_index(corr.argmax(axis=1), (h, w)), axis=1).astype(np.float64)  # (F - 1, 2): y, x
    peak = np.where(peak > np.array([h, w]) / 2, peak - np.array([h, w]), peak)
    offsets = (np.arange(3 * upsample) - 1.5 * upsample) / upsample  # +-1.5 px around the integer peak
    ys = peak[:, 0:1] + offsets[None]  # (F - 1, G)
    xs = peak[:, 1:2] + offsets[None]
    ey = np.exp(2j * np.pi * ys[..., None] * np.fft.fftfreq(h))  # (F - 1, G, H)
    ex = np.exp(2j * np.pi * xs[..., None] * np.fft.fftfreq(w))  # (F - 1, G, W)
    fine = (ey @ cross @ ex.transpose(0, 2, 1)).real  # (F - 1, G, G): the correlation near the peak
    iy, ix = np.unravel_index(fine.reshape(f - 1, -1).argmax(axis=1), fine.shape[1:])
    k = np.arange(f - 1)
    steps = np.stack([xs[k, ix] + _vertex(fine, k, iy, ix, axis=2) / upsample,
                      ys[k, iy] + _vertex(fine, k, iy, ix, axis=1) / upsample], axis=1)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])


def _vertex(c: np.ndarray, k: np.ndarray, iy: np.ndarray, ix: np.ndarray, axis: int) -> np.ndarray:
    """The offset in grid steps, in [-0.5, 0.5], of the vertex of the parabola through the maximum ``c[k, iy, ix]`` of
    each ``c[k]`` and its two neighbours along ``axis`` (1: y, 2: x); 0 at the grid's edge or on a flat top."""
    n = c.shape[axis]
    i = iy if axis == 1 else ix
    lo, hi = np.clip(i - 1, 0, n - 1), np.clip(i + 1, 0, n - 1)
    pick = (lambda j: c[k, j, ix]) if axis == 1 else (lambda j: c[k, iy, j])
    cm, c0, cp = pick(lo), pick(i), pick(hi)
    denom = cm - 2 * c0 + cp
    inside = (i > 0) & (i < n - 1) & (denom < 0)
    return np.where(inside, np.clip(0.5 * (cm - cp) / np.where(inside, denom, -1.0), -0.5, 0.5), 0.0)


def dense_displacement(frames: np.ndarray) -> np.ndarray:
    """The displacement ``(H, W, 2)`` (dx, dy) in pixels of the content at each pixel of the first of ``frames
    (F, H, W)`` (in [0, 1]) by the last: OpenCV's Farneback optical flow between consecutive frames (8 bits through
    a 1/2.2 power curve), chained along each pixel's path (each flow read where the path has arrived; paths that
    leave the frame read its border). Moving objects count; so does any occlusion or change of the scene."""
    import cv2  # a declared dependency; imported here as the rest of the module does not need it

    to8 = np.clip(np.rint(255.0 * np.clip(frames, 0.0, 1.0) ** (1 / 2.2)), 0, 255).astype(np.uint8)
    h, w = frames.shape[1:]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    total = np.zeros((h, w, 2), np.float32)
    for prev, nxt in zip(to8[:-1], to8[1:]):
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                            poly_n=5, poly_sigma=1.2, flags=0)
        total += cv2.remap(flow, gx + total[..., 0], gy + total[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return total


def _clip_motion(frames: torch.Tensor) -> tuple[float, float]:
    """``(F, C, H, W)`` frames of one clip -> (path diameter of its global translation, mean length of the dense
    displacement from the first frame to the last), both in pixels of these frames."""
    gray = _to_gray(frames)
    diameter = float(path_diameter(torch.from_numpy(global_shifts(gray))))
    return diameter, float(np.linalg.norm(dense_displacement(gray), axis=-1).mean())


def content_motion_px(irradiance: Sequence[torch.Tensor], steps: int | None = 30) -> dict[str, list[float]]:
    """The content's own motion over the window, per clip, in the pixels of the frames given (the network's for
    the evaluation's scenes): ``irradiance`` batches ``(B, F, C, H, W)`` of the scenes *without* camera shake.
    ``steps``: the motion is followed over ``steps + 1`` evenly spaced frames of the window, its first and last
    included (default 30: of 241 frames interpolated 8x from 31, exactly the original video frames; ``None``: all).

    Returns ``{"diameter_px": [...], "flow_px": [...]}``, one value per clip in batch order: the diameter of the
    path of the content's global translation (:func:`global_shifts`; the largest distance between two of its
    positions, as d-bar's) and the mean over pixels of the length of the content's displacement from the first
    frame to the last (:func:`dense_displacement`; local motion counts too).

    Raises:
        ShapeError: a batch that is not ``(B, F, C, H, W)`` with ``F >= 2``, or ``steps < 1``.
    """
    if steps is not None and steps < 1:
        raise ShapeError(f"content_motion_px: steps must be >= 1 or None, got {steps}")
    out: dict[str, list[float]] = {"diameter_px": [], "flow_px": []}
    for irr in irradiance:
        if irr.ndim != 5 or irr.shape[1] < 2:
            raise ShapeError(f"content_motion_px: expected (B, F, C, H, W) frames with F >= 2, got "
                             f"{tuple(irr.shape)}")
        f = irr.shape[1]
        idx = torch.arange(f) if steps is None else torch.from_numpy(np.unique(np.linspace(0, f - 1, steps + 1).round()
                                                                                 .astype(np.int64)))
        for clip in irr[:, idx]:
            diameter, flow = _clip_motion(clip)
            out["diameter_px"].append(diameter)
            out["flow_px"].append(flow)
    return out


def clipped_fraction(irradiance: Sequence[torch.Tensor], camera: CameraSpec) -> float:
    """The fraction of pixels of ``irradiance`` (batches ``(B, F, C, H, W)`` e-/s over the frames spanning T)
    whose mean signal at full exposure (photo-electrons plus dark current over the whole budget, noise-free)
    leaves the linear range of the response (beyond ``tau1``, eq. 9: 0.9 FWC by default) or reaches the ADC's
    largest number after the gain: such pixels clip in the full exposure, and their e-bar is no longer noise."""
    t = camera.budget_s
    limit = min(camera.tau1, camera.max_dn / camera.gain_dn_per_e)
    clipped, pixels = 0, 0
    for irr in irradiance:
        electrons = irr.double().mean(dim=1) * t + camera.dark_current_e_per_s * t
        clipped += int((electrons > limit).sum())
        pixels += electrons.numel()
    if not pixels:
        raise DataError("clipped_fraction: no scenes given")
    return clipped / pixels
