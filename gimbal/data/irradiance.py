"""The one data-to-irradiance path: decoded sRGB clips -> augmented irradiance in e-/s (Section 6.2).

Every loop (training, validation, evaluation, the baselines) gets its scenes here, so every method sees
the same data distribution:

- :func:`clip_batches`: an endless, shuffled, seeded stream of uint8 clip batches from a split's shards;
- :func:`make_irradiance`: one batch of clips -> window spanning the budget T -> crop, camera shake, light
  level (:mod:`gimbal.data.augment`) -> irradiance ``(B, T_w, C, h, w)`` in e-/s;
- :func:`fixed_irradiance_set`: the fixed, seeded scenes of a split that validation and evaluation score on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from gimbal.data.augment import AugmentConfig, augment_clips, augment_full_frames, to_irradiance, window
from gimbal.data.loader import make_loader
from gimbal.errors import ParamError
from gimbal.runtime import Dist
from gimbal.sensor.camera import CameraSpec
from gimbal.sensor.exposure import Exposure
from gimbal.sensor.integrate import used_samples

__all__ = ["Scenes", "clip_batches", "fixed_irradiance_set", "make_irradiance"]


class Scenes(NamedTuple):
    """A batch of scenes: what the camera sees and what the methods are scored against.

    Attributes:
        irradiance: ``(B, T_w, C, h, w)`` e-/s over the window spanning the budget T.
        srgb: ``(B, C, h, w)`` the sRGB middle frame ``T_w // 2`` in [0, 1], cropped, warped, resized and reduced to
            luma exactly like the irradiance's middle instant (the ``srgb`` target, :mod:`gimbal.display`).
    """

    irradiance: torch.Tensor
    srgb: torch.Tensor

    def to(self, device: torch.device | str) -> Scenes:
        """Both tensors on ``device``."""
        return Scenes(self.irradiance.to(device), self.srgb.to(device))


def clip_batches(
    shards_dir: Path, split: str, batch_size: int, backend: str, seed: int, ctx: Dist, device: torch.device
) -> Iterator[torch.Tensor]:
    """Endless iterator over shuffled clip batches ``(B, T_f, C, H, W)`` uint8, epoch after epoch.

    Clips stay 8-bit until :func:`make_irradiance` has cropped them (a float 720p clip is 2.7 GB).

    One loader serves every epoch (each ``iter()`` is a new, seeded epoch order).
    """
    loader = make_loader(
        shards_dir, split, batch_size=batch_size, backend=backend, shuffle=True, seed=seed,
        rank=ctx.rank, world_size=ctx.world, dtype=torch.uint8,
    )
    while True:
        got = False
        for clips, _meta in loader:
            got = True
            yield clips.to(device, non_blocking=True)
        if not got:
            raise ParamError(f"{shards_dir}/{split}: no clips to train on; check the shards stage output")


def make_irradiance(
    clips: torch.Tensor, augment: AugmentConfig, camera: CameraSpec, channels: int, generator: torch.Generator,
    window_frames: int | None = None, exposure: Exposure | None = None, full_frame: bool = False,
) -> Scenes:
    """Dense sRGB clips ``(B, T_f, 3, H, W)`` (uint8 or float in [0, 1]) -> :class:`Scenes`: augmented irradiance
    ``(B, T_w, channels, h, w)`` in e-/s (Section 6.2) and its sRGB middle frame: the first ``window_frames`` frames (default
    ``augment.window_frames``) span the budget T. With ``exposure`` (the current schedule), only the frames
    it integrates and the middle one are computed; the others are 0 (they do not change the burst).
    ``full_frame``: whole frames resized by the training scale instead of random crops
    (:func:`~gimbal.data.augment.augment_full_frames`), ``(B, T_w, channels, h, w)``."""
    clips = window(clips, augment.window_frames if window_frames is None else window_frames)
    frames = None
    if exposure is not None:
        frames = used_samples(exposure.starts(torch.float64), exposure.durations(torch.float64), clips.shape[1],
                              camera.budget_s)
    aug = (augment_full_frames if full_frame else augment_clips)(clips, augment, generator, channels, frames)
    return Scenes(to_irradiance(aug.linear, camera, augment.white_level, generator), aug.gt)


def fixed_irradiance_set(
    shards_dir: Path, split: str, n_clips: int, batch_size: int, augment: AugmentConfig, camera: CameraSpec,
    channels: int, seed: int, backend: str = "auto", device: torch.device | str = "cpu",
    window_frames: int | None = None, full_frame: bool = False,
) -> list[Scenes]:
    """A fixed list of :class:`Scenes` batches (irradiance ``(b, T_w, C, h, w)`` e-/s and sRGB middle frames, on the
    CPU) from the first ``n_clips`` clips of ``split`` in shard order, augmented (without training flips) and lit
    with a generator seeded by ``seed``.

    The same arguments give the same tensors, so every method and variant is scored on the same scenes.
    ``full_frame``: the whole frames (see :func:`make_irradiance`) instead of random crops.
    """
    gen = torch.Generator().manual_seed(seed)
    augment = dataclasses.replace(augment, flips=False)  # the training flips are not part of a fixed scene
    out: list[Scenes] = []
    n = 0
    loader = make_loader(shards_dir, split, batch_size=max(1, min(batch_size, n_clips)), backend=backend,
                         shuffle=False, seed=seed, rank=0, world_size=1, dtype=torch.uint8)
    for clips, _meta in loader:
        clips = clips[: n_clips - n]
        out.append(make_irradiance(clips.to(device), augment, camera, channels, gen, window_frames,
                                   full_frame=full_frame).to("cpu"))
        n += clips.shape[0]
        if n >= n_clips:
            break
    if not out:
        raise ParamError(f"{shards_dir}/{split}: no clips found for the fixed {split} set; check the shards stage")
    return out
