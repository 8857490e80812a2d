"""Params group ``eval``: which held-out test scenes every method is scored on, and against which target.

Read by evaluation (:mod:`gimbal.evaluation.evaluate`), by the Fig. 9 sweep and by training (``eval.target`` is the
target every model learns). A module of its own so that the config parser (:mod:`gimbal.config`) can build the group
without importing evaluation, which loads models with the whole config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gimbal.display import TARGETS
from gimbal.errors import ParamError

__all__ = ["EvalConfig"]


@dataclass(frozen=True)
class EvalConfig:
    """Params group ``eval`` (the loader and device are ``train.loader`` / ``train.device``).

    Attributes:
        clips: number of test clips scored (the first ones of the test shards, in shard order).
        seed: seed of the scene augmentation and of the sensor noise.
        examples: number of example grids written (the first clips).
        batch_size: clips per forward pass.
        window_frames: frames spanning the budget T, from the first (None: ``augment.window_frames``;
            the paper text uses all 241, the authors' released evaluation 61).
        full_frame: score the whole frames of the held-out clips, resized by the training scale
            ``augment.out_size / augment.center`` (``False``: one random ``augment.crop`` window per clip, as
            in training).
        target: what every method is scored against, in training too (:mod:`gimbal.display`): ``srgb`` (the
            authors': the sRGB middle frame, outputs through the released sRGB-like curve) or ``sensor`` (the
            noise-free full-budget exposure in the camera's DN range, 2.2 power curve).
    """

    clips: int = 16
    seed: int = 1
    examples: int = 2
    batch_size: int = 4
    window_frames: int | None = None
    full_frame: bool = True
    target: Literal["srgb", "sensor"] = "srgb"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ParamError(f"params: 'eval.target' must be one of {list(TARGETS)}, got {self.target!r}")
        if self.clips < 1 or self.batch_size < 1:
            raise ParamError(f"params: 'eval.clips' and 'eval.batch_size' must be >= 1, got {self.clips}, "
                             f"{self.batch_size}")
        if self.examples < 0:
            raise ParamError(f"params: 'eval.examples' must be >= 0, got {self.examples}")
        if self.window_frames is not None and self.window_frames < 2:
            raise ParamError(f"params: 'eval.window_frames' must be >= 2 or null, got {self.window_frames}")
