"""Training-time augmentation of dense clips and the scene's light level (Section 6.2).

For a batch of interpolated clips ``(B, T, 3, H, W)`` (sRGB, [0, 1] or uint8):

0. the time window: the first ``window_frames`` frames span the budget T (``None``: all; the
   released code uses 121 of 241 in training and 61 in evaluation, the paper text all 241);
1. a random ``crop x crop`` window (same for all frames of a clip), converted to luma when the
   model is monochrome (BT.601 weights on the gamma-encoded values, as OpenCV's grayscale read
   that the authors use);
2. camera shake, as a homography ``H_t = K R_t K^-1`` per frame:

   * ``motion: shake`` (the authors' released protocol, default): a per-frame random walk of
     Euler angles (std roll 1e-3 deg, pitch 1e-2 deg, yaw 1e-2 deg per frame) accumulated
     outward from the middle frame, with the calibrated intrinsics (fx 5480.68, fy 5494.67 px,
     principal point (1020.30, 516.23) at 1920x1080) scaled per axis (:func:`shake_intrinsics`): by the
     ``crop x crop`` editing crop (``intrinsics_scale: crop``, the released code) or by the frame (``frame``);
   * ``motion: smooth``: a smooth random rotation (integrated random walk of angular velocity),
     anchored at the middle frame and scaled so its largest angle is in
     ``[min_rotation_deg, max_rotation_deg]``, with a pinhole of focal ``focal_px`` at the crop centre;

   warped (kornia ``warp_perspective``, border padding) and cut to the central ``center x center``
   part in one call;
3. an antialiased resize to ``out_size x out_size`` (kornia);
4. (``flips: true``) random horizontal and vertical flips, each with probability 0.5 per clip, the same for all
   its frames (the released ``transform.RandomFlip``);
5. the inverse sRGB gamma (kornia) to linear intensities.

:func:`to_irradiance` then scales the linear clip by a white level drawn uniformly per clip
(``white_level``, W/m^2) and converts it to photo-electrons per second with
:meth:`CameraSpec.electron_rate` (eq. 4), as the authors' released code does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import kornia
import torch

from gimbal.data.motion import intrinsic_matrix, random_rotation_trajectory, rotation_homographies, shake_rotations
from gimbal.errors import ParamError, ShapeError
from gimbal.sensor.camera import CameraSpec

__all__ = [
    "AugmentConfig",
    "AugmentedBatch",
    "augment_clips",
    "augment_full_frames",
    "frame_intrinsics",
    "full_frame_size",
    "intrinsic_matrix",
    "random_rotation_trajectory",
    "rotation_homographies",
    "shake_intrinsics",
    "shake_rotations",
    "to_irradiance",
    "window",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Params group ``augment`` (Section 6.2; the embedded default, paper values in comments).

    Attributes:
        crop: side in pixels of the random window cut from each input frame (paper: 512).
        center: side of its central part kept after warping (paper: 256).
        out_size: final side after antialiased resizing (paper: 128).
        motion: ``shake`` (the released per-frame Euler random walk) or ``smooth`` (a smooth rotation).
        shake_std_deg: per-frame std of the roll, pitch and yaw random walk in degrees (``shake``).
        intrinsics: ``(fx, fy, cx, cy)`` in pixels at ``intrinsics_size`` (``shake``).
        intrinsics_size: ``(width, height)`` the intrinsics were calibrated at.
        intrinsics_scale: what the intrinsics are scaled by (``shake``; :func:`shake_intrinsics`): ``crop``, the
            ``crop x crop`` editing crop (the released code), or ``frame``, the frame.
        shake_focal_net_px: the shake's horizontal focal length in the *network's* pixels (after the resize by
            ``out_size / center``; ``shake``), which sets the blur d-bar in network pixels for a given angular
            shake (d-bar is proportional to it). ``None``: from ``intrinsics`` as ``intrinsics_scale`` scales them
            (the released code's rule applied to this crop: 182.7 px for a 128 crop at out_size / center = 1/2).
            Default 730.76 px, the authors' training crop (512 -> 256 -> 128): 5480.68 x 512 / 1920 x 128 / 256.
            A small crop under the released rule has a focal length, and so a blur in network pixels, smaller by
            crop / 512 (d-bar about 1.4 px instead of 5.5 over 241 frames for a 128 crop). ``fy`` keeps its ratio
            to ``fx``.
        max_rotation_deg, min_rotation_deg: range of the per-clip largest rotation (``smooth``).
        focal_px: focal length in pixels of the crop (``smooth``; None: ``crop``).
        smoothness: angular-acceleration noise relative to the initial velocity (``smooth``).
        white_level: ``[lo, hi]`` irradiance in W/m^2 of an sRGB white, drawn uniformly per clip.
        window_frames: frames spanning the budget T, from the first (None: all; released: 121).
        flips: random horizontal / vertical flips of the training crops (p = 0.5 each, per clip; released).
    """

    crop: int = 128
    center: int = 64
    out_size: int = 32
    motion: Literal["shake", "smooth"] = "shake"
    shake_std_deg: tuple[float, float, float] = (1e-3, 1e-2, 1e-2)
    intrinsics: tuple[float, float, float, float] = (5480.68, 5494.67, 1020.30, 516.23)
    intrinsics_size: tuple[int, int] = (1920, 1080)
    intrinsics_scale: Literal["crop", "frame"] = "crop"
    shake_focal_net_px: float | None = 730.76
    max_rotation_deg: float = 3.0
    min_rotation_deg: float = 0.0
    focal_px: float | None = None
    smoothness: float = 0.1
    white_level: tuple[float, float] = (0.018, 0.02)
    window_frames: int | None = None
    flips: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.out_size <= self.center <= self.crop:
            raise ParamError(f"augment: need 0 < out_size ({self.out_size}) <= center ({self.center}) <= crop "
                             f"({self.crop}); fix augment.out_size/center/crop in params.yaml")
        if not 0 <= self.min_rotation_deg <= self.max_rotation_deg:
            raise ParamError(f"augment: need 0 <= min_rotation_deg ({self.min_rotation_deg}) <= max_rotation_deg "
                             f"({self.max_rotation_deg})")
        if min(self.intrinsics_size) < 1:
            raise ParamError(f"params: 'augment.intrinsics_size' must be a positive (width, height) in pixels, got "
                             f"{list(self.intrinsics_size)}")
        if min(self.intrinsics[:2]) <= 0:
            raise ParamError(f"params: 'augment.intrinsics' focal lengths fx, fy must be > 0, got "
                             f"{list(self.intrinsics)}")
        if not 0 < self.white_level[0] <= self.white_level[1]:
            raise ParamError(f"params: 'augment.white_level' must be [lo, hi] W/m^2 with 0 < lo <= hi, got "
                             f"{list(self.white_level)}")
        if self.intrinsics_scale not in ("crop", "frame"):
            raise ParamError(f"params: 'augment.intrinsics_scale' must be 'crop' or 'frame', got "
                             f"{self.intrinsics_scale!r}")
        if min(self.shake_std_deg) < 0:
            raise ParamError(f"params: 'augment.shake_std_deg' must be >= 0, got {list(self.shake_std_deg)}")
        if self.smoothness < 0:
            raise ParamError(f"params: 'augment.smoothness' must be >= 0, got {self.smoothness}")
        if self.window_frames is not None and self.window_frames < 2:
            raise ParamError(f"params: 'augment.window_frames' must be >= 2 or null, got {self.window_frames}")
        if self.shake_focal_net_px is not None and not 0 < self.shake_focal_net_px < math.inf:
            raise ParamError(f"params: 'augment.shake_focal_net_px' must be a focal length > 0 in network pixels "
                             f"or null, got {self.shake_focal_net_px}")
        if self.focal_px is not None and self.focal_px <= 0:
            raise ParamError(f"params: 'augment.focal_px' must be > 0, got {self.focal_px}")

    @property
    def focal(self) -> float:
        """Focal length in pixels of the crop (``smooth`` motion)."""
        return float(self.focal_px) if self.focal_px is not None else float(self.crop)


@dataclass
class AugmentedBatch:
    """Output of :func:`augment_clips`.

    Attributes:
        linear: ``(B, T, C, out, out)`` augmented clip, linear intensities in [0, 1].
        gt: ``(B, C, out, out)`` its middle frame ``T // 2`` in sRGB [0, 1].
        rotations: ``(B, T, 3, 3)`` camera rotation matrices applied per frame (before any flip).
        origins: ``(B, 2)`` top-left ``(x0, y0)`` of each clip's ``crop`` window in the input frames.
        flips: ``(B, 2)`` bool, whether each clip's output was flipped horizontally (left-right, column 0)
            and vertically (up-down, column 1) after the warp; all False without ``augment.flips``.
    """

    linear: torch.Tensor
    gt: torch.Tensor
    rotations: torch.Tensor
    origins: torch.Tensor
    flips: torch.Tensor


def window(clips: torch.Tensor, frames: int | None) -> torch.Tensor:
    """The first ``frames`` frames of ``clips (B, T, ...)`` (all for ``None``): the samples spanning T."""
    if frames is None:
        return clips
    if frames > clips.shape[1]:
        raise ShapeError(f"augment: window_frames={frames} is more than the clips' {clips.shape[1]} frames; "
                         "lower augment.window_frames / eval.window_frames")
    return clips[:, :frames]


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB gamma (IEC 61966-2-1) of ``x (..., C, H, W)`` in [0, 1], any ``C``.

    Three channels go through kornia; other channel counts use the same two-piece formula written out,
    because kornia's ``rgb_to_linear_rgb`` accepts only 3 channels.
    """
    if x.shape[-3] == 3:
        return kornia.color.rgb_to_linear_rgb(x)
    return torch.where(x > 0.04045, ((x + 0.055).clamp(min=0.0) / 1.055) ** 2.4, x / 12.92)


def _check_clips(clips: torch.Tensor, channels: int, name: str) -> tuple[int, int, int, int, int]:
    """``(B, T, C, H, W)`` of a float / uint8 clip batch that can give ``channels`` output channels; else
    :class:`ShapeError` naming ``name``."""
    if clips.dim() != 5 or not (clips.is_floating_point() or clips.dtype == torch.uint8):
        raise ShapeError(f"{name}: expected a float or uint8 (B, T, C, H, W) clip batch, got {tuple(clips.shape)} "
                         f"{clips.dtype}")
    b, t, c, h, w = clips.shape
    if channels not in (1, 3) or (channels == 3 and c != 3) or c not in (1, 3):
        raise ShapeError(f"{name}: cannot make {channels} channels from {c}-channel clips")
    return b, t, c, h, w


def _kept_frames(t: int, frames: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep (T,) bool, idx)``: the frames to produce, the middle one (the ground truth) always included."""
    keep = torch.ones(t, dtype=torch.bool) if frames is None else frames.to("cpu", torch.bool).clone()
    keep[t // 2] = True  # the ground truth
    return keep, keep.nonzero()[:, 0]


def _finish(srgb: torch.Tensor, keep: torch.Tensor, rotations: torch.Tensor, origins: torch.Tensor,
            flips: torch.Tensor | None = None) -> AugmentedBatch:
    """Kept warped frames ``srgb (B, T_kept, C, h, w)`` -> linear clip with the dropped frames left 0, and the gt;
    ``flips (B, 2)`` bool (horizontal, vertical) are applied to each clip's frames first (None: no flips)."""
    b, tk, cc, oh, ow = srgb.shape
    if flips is None:
        flips = torch.zeros(b, 2, dtype=torch.bool)
    for i, (fh, fv) in enumerate(flips.tolist()):  # the same flip for all frames of a clip, hence its gt
        dims = [d for d, f in ((-1, fh), (-2, fv)) if f]
        if dims:
            srgb[i] = srgb[i].flip(dims)
    t = len(keep)
    linear = srgb_to_linear(srgb)
    gt = srgb[:, int(keep[: t // 2].sum())].clone()
    if tk < t:
        full = linear.new_zeros(b, t, cc, oh, ow)
        full[:, keep] = linear
        linear = full
    return AugmentedBatch(linear=linear, gt=gt, rotations=rotations, origins=origins, flips=flips)


def augment_clips(clips: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None,
                  channels: int = 3, frames: torch.Tensor | None = None) -> AugmentedBatch:
    """Augment a batch of dense sRGB clips (see the module docstring).

    Args:
        clips: ``(B, T, 3, H, W)`` float in [0, 1] or uint8 in [0, 255] (sRGB), ``H, W >= config.crop``;
            ``T`` already the time window (:func:`window`).
        config: :class:`AugmentConfig`.
        generator: CPU ``torch.Generator``; the same seed gives the same output. Draw order per batch: the
            rotations, the crop origins, then (``flips: true`` only) the ``(B, 2)`` flip decisions.
        channels: 1 (luma, BT.601) or 3 (RGB) output channels.
        frames: ``(T,)`` bool, the frames to produce (the others are left 0: e.g. the samples that no
            exposure integrates, :func:`gimbal.sensor.integrate.used_samples`); the middle frame always is.
            The random draws are the same with or without it.

    ``motion: shake`` with ``intrinsics_scale: crop``: ``K`` = :func:`shake_intrinsics` of the ``crop x crop``
    image, in the crop's own coordinates (the released code); ``frame``: ``K`` of the whole ``W x H`` frame,
    moved to the crop's coordinates.

    Returns:
        :class:`AugmentedBatch` with ``linear (B, T, channels, out, out)``.
    """
    b, t, c, h, w = _check_clips(clips, channels, "augment_clips")
    s = config.crop
    if h < s or w < s:
        raise ShapeError(f"augment_clips: frames are {w}x{h}, smaller than augment.crop={s}; lower augment.crop "
                         "(and center/out_size) in params.yaml")
    if config.motion == "shake":
        rotations = shake_rotations(b, t, config.shake_std_deg, generator)
    else:
        lo, hi = math.radians(config.min_rotation_deg), math.radians(config.max_rotation_deg)
        max_angle = lo + (hi - lo) * torch.rand(b, generator=generator)
        axis_angle = random_rotation_trajectory(b, t, max_angle, config.smoothness, generator)
        rotations = kornia.geometry.conversions.axis_angle_to_rotation_matrix(axis_angle.reshape(-1, 3))
        rotations = rotations.reshape(b, t, 3, 3)
        smooth_homog = rotation_homographies(axis_angle.double(), config.focal, s)
    y0 = torch.randint(0, h - s + 1, (b,), generator=generator)
    x0 = torch.randint(0, w - s + 1, (b,), generator=generator)
    flips = torch.rand(b, 2, generator=generator) < 0.5 if config.flips else None  # last: no other draw moves

    if config.motion == "shake" and config.intrinsics_scale == "crop":  # K of the crop, in its coordinates
        k = shake_intrinsics(config, s, s).expand(b, 3, 3)
        homog = k[:, None] @ rotations.double() @ torch.linalg.inv(k)[:, None]  # (B, T, 3, 3), crop coordinates
    elif config.motion == "shake":  # K of the whole frame, moved to the crop's coordinates
        k = shake_intrinsics(config, w, h).expand(b, 3, 3).clone()
        k[:, 0, 2] -= x0.double()
        k[:, 1, 2] -= y0.double()
        homog = k[:, None] @ rotations.double() @ torch.linalg.inv(k)[:, None]  # (B, T, 3, 3), crop coordinates
    else:
        homog = smooth_homog
    offset = (s - config.center) / 2.0  # crop coordinates -> centre-window coordinates
    shift = torch.eye(3, dtype=torch.float64)
    shift[0, 2] = shift[1, 2] = -offset
    to_out = shift @ homog  # crop -> output window, (B, T, 3, 3)
    keep, idx = _kept_frames(t, frames)
    if len(idx) < t:
        to_out = to_out[:, idx]
    tk = len(idx)
    # Only the part of the crop that some frame samples is read and converted: the output window's corners
    # mapped back into the crop bound it (a homography maps the window to a convex quadrilateral), plus
    # 2 px for bilinear taps; one region size for the batch, so the warp stays a single call.
    m = config.center - 1
    corners = torch.tensor([[0.0, 0.0, 1.0], [m, 0.0, 1.0], [0.0, m, 1.0], [m, m, 1.0]], dtype=torch.float64)
    src = torch.linalg.solve(to_out[:, :, None], corners[None, None, :, :, None])[..., 0]  # (B, T, 4, 3)
    src = src[..., :2] / src[..., 2:]
    lo = (src.amin(dim=(1, 2)).floor() - 2).clamp(0, s - 1)  # (B, 2) x, y
    hi = (src.amax(dim=(1, 2)).ceil() + 2).clamp(0, s - 1)
    rw, rh = (int(v) + 1 for v in (hi - lo).amax(dim=0))
    rx = torch.minimum(lo[:, 0], torch.tensor(float(s - rw))).long()
    ry = torch.minimum(lo[:, 1], torch.tensor(float(s - rh))).long()
    region = torch.stack([clips[i, :, :, y0[i] + ry[i] : y0[i] + ry[i] + rh, x0[i] + rx[i] : x0[i] + rx[i] + rw][idx]
                          for i in range(b)])  # (B, T_kept, C, rh, rw), still 8-bit for uint8 clips
    if region.dtype == torch.uint8:
        region = region.float() / 255.0
    if channels == 1 and c == 3:
        region = kornia.color.rgb_to_grayscale(region.reshape(b * tk, 3, rh, rw)).reshape(b, tk, 1, rh, rw)
    cc = region.shape[2]
    move = torch.eye(3, dtype=torch.float64).repeat(b, 1, 1)  # region -> crop coordinates
    move[:, 0, 2] = rx.double()
    move[:, 1, 2] = ry.double()
    warp = (to_out @ move[:, None]).to(region.device, region.dtype)
    warped = kornia.geometry.transform.warp_perspective(
        region.reshape(b * tk, cc, rh, rw), warp.reshape(b * tk, 3, 3), (config.center, config.center),
        mode="bilinear", padding_mode="border", align_corners=True)
    if config.out_size != config.center:  # torch's antialiased bilinear resize (a triangle filter)
        warped = torch.nn.functional.interpolate(warped, size=(config.out_size, config.out_size), mode="bilinear",
                                                 antialias=True, align_corners=False)
    srgb = warped.clamp(0, 1).reshape(b, tk, cc, config.out_size, config.out_size)
    return _finish(srgb, keep, rotations, torch.stack([x0, y0], dim=1), flips)


def shake_intrinsics(config: AugmentConfig, width: int, height: int) -> torch.Tensor:
    """``(3, 3)`` float64 camera matrix ``K`` (pixels) of the ``shake`` motion for a ``width x height`` image.

    ``config.intrinsics`` = ``(fx, fy, cx, cy)``, calibrated at ``config.intrinsics_size`` = ``(W0, H0)``, scaled
    per axis. The principal point is scaled by the image, ``(cx width / W0, cy height / H0)`` (origin at the
    image's top-left pixel). The focal lengths are scaled by

    * ``intrinsics_scale: frame``: the image, ``(fx width / W0, fy height / H0)``;
    * ``intrinsics_scale: crop``: the ``crop x crop`` editing crop, ``(fx crop / W0, fy crop / H0)`` whatever
      the image size (e.g. 1461.5 and 2604.9 px for a 512 crop). The paper text does not say how the calibrated
      intrinsics are scaled; the released code (``transform.RandomRotate._adapt_intrinsics``) scales f and c by
      the size of the tensor it rotates, which is the editing crop: call this with ``width = height = crop``
      for a training crop, and with the frame size for a whole frame (the training focal lengths, so the same
      angles move the pixels as much as in training, and the principal point scaled to the frame).

    With ``shake_focal_net_px`` set, the focal lengths are those of the training crop (as ``crop``, for any image
    size) with ``fx = shake_focal_net_px x center / out_size`` in the crop's pixels and ``fy`` scaled by the same
    factor; the principal point is scaled as above.
    """
    fx, fy, cx, cy = config.intrinsics
    w0, h0 = config.intrinsics_size
    crop_like = config.intrinsics_scale == "crop" or config.shake_focal_net_px is not None
    fw, fh = (config.crop, config.crop) if crop_like else (width, height)
    fx, fy = fx * fw / w0, fy * fh / h0
    if config.shake_focal_net_px is not None:
        gain = config.shake_focal_net_px * config.center / config.out_size / fx
        fx, fy = fx * gain, fy * gain
    return torch.tensor([[fx, 0.0, cx * width / w0], [0.0, fy, cy * height / h0],
                         [0.0, 0.0, 1.0]], dtype=torch.float64)


def frame_intrinsics(config: AugmentConfig, width: int, height: int) -> torch.Tensor:
    """``(3, 3)`` float64 ``K`` of a ``width x height`` frame, f and c scaled by the frame
    (:func:`shake_intrinsics` with ``intrinsics_scale: frame`` and no ``shake_focal_net_px``)."""
    return shake_intrinsics(dataclasses.replace(config, intrinsics_scale="frame", shake_focal_net_px=None), width,
                            height)


def full_frame_size(config: AugmentConfig, height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` of a ``height x width`` frame resized by the training scale ``out_size / center``."""
    scale = config.out_size / config.center
    return max(1, round(height * scale)), max(1, round(width * scale))


def augment_full_frames(clips: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None,
                        channels: int = 3, frames: torch.Tensor | None = None) -> AugmentedBatch:
    """Whole frames instead of random crops: evaluation on the full frames of held-out videos.

    The same camera shake as :func:`augment_clips` (``motion: shake``; the same generator state draws the same
    rotations), ``H_t = K R_t K^-1`` with ``K`` = :func:`shake_intrinsics` of the ``W x H`` frame, applied to the
    whole frame (kornia ``warp_perspective``, border padding), then an antialiased resize by the training
    scale ``out_size / center``, so the network sees the pixel scale and motion it was trained on. With
    ``intrinsics_scale: crop`` the focal lengths are the training crop's (``fx crop / W0``, ``fy crop / H0`` px,
    so the same angles give the same pixel motion as in training) and the principal point is scaled to the
    frame (``cx W / W0``, ``cy H / H0``); with ``frame`` f and c are scaled by the frame. Never flipped.

    Args:
        clips: ``(B, T, C, H, W)`` float in [0, 1] or uint8 (sRGB), ``C`` 1 or 3; ``T`` already the window.
        config: :class:`AugmentConfig` (``motion`` must be ``shake``).
        generator: CPU ``torch.Generator``.
        channels: 1 (luma, BT.601) or 3 (RGB) output channels.
        frames: ``(T,)`` bool, the frames to produce (others stay 0); the middle frame always is.

    Returns:
        :class:`AugmentedBatch` with ``linear (B, T, channels, h, w)``, ``(h, w)`` = :func:`full_frame_size`,
        and ``origins`` all 0.
    """
    b, t, c, h, w = _check_clips(clips, channels, "augment_full_frames")
    if config.motion != "shake":
        raise ParamError(f"augment: full-frame evaluation supports augment.motion 'shake' only, got "
                         f"'{config.motion}'; set augment.motion: shake or eval.full_frame: false")
    rotations = shake_rotations(b, t, config.shake_std_deg, generator)
    k = shake_intrinsics(config, w, h)
    homog = k @ rotations.double() @ torch.linalg.inv(k)  # (B, T, 3, 3), frame -> frame
    keep, idx = _kept_frames(t, frames)
    oh, ow = full_frame_size(config, h, w)
    out = []
    for i in range(b):  # one clip at a time: a float 241-frame clip is large
        x = clips[i, idx]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if channels == 1 and c == 3:
            x = kornia.color.rgb_to_grayscale(x)
        m = homog[i, idx].to(x.device, x.dtype)
        x = kornia.geometry.transform.warp_perspective(x, m, (h, w), mode="bilinear", padding_mode="border",
                                                       align_corners=True)
        if (oh, ow) != (h, w):
            x = torch.nn.functional.interpolate(x, size=(oh, ow), mode="bilinear", antialias=True,
                                                align_corners=False)
        out.append(x.clamp(0, 1))
    return _finish(torch.stack(out), keep, rotations, torch.zeros(b, 2, dtype=torch.long))


def to_irradiance(linear: torch.Tensor, camera: CameraSpec, white_level: tuple[float, float],
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Linear clips -> irradiance in photo-electrons per second (the authors' light level).

    Per clip a white level ``L ~ U[lo, hi]`` W/m^2 is drawn; the irradiance is ``linear * L`` W/m^2,
    converted to e-/s per pixel by :meth:`CameraSpec.electron_rate` (eq. 4).

    Args:
        linear: ``(B, T, C, H, W)`` linear intensities in [0, 1] (sRGB white = 1).
        camera: the sensor's :class:`CameraSpec` (pixel area, QE, wavelength).
        white_level: ``(lo, hi)`` W/m^2, ``0 < lo <= hi``.
        generator: CPU ``torch.Generator``.

    Returns:
        ``(B, T, C, H, W)`` irradiance in e-/s.
    """
    lo, hi = white_level
    if not 0 < lo <= hi:
        raise ParamError(f"to_irradiance: white_level must satisfy 0 < lo <= hi, got {white_level}")
    if linear.dim() != 5:
        raise ShapeError(f"to_irradiance: expected (B, T, C, H, W), got {tuple(linear.shape)}")
    u = torch.rand(linear.shape[0], generator=generator, dtype=torch.float64)
    rate = camera.electron_rate(lo + (hi - lo) * u)  # e-/s of a white pixel, per clip
    return linear * rate.to(device=linear.device, dtype=linear.dtype)[:, None, None, None, None]
