"""The model-file plumbing every single-image baseline shares (DeblurGAN-v2, DMPHN): one home for it.

:class:`BaselineConfig` is the base of a baseline's params group (a frozen dataclass): ``ARCH_KEYS`` (the values a
checkpoint must match to load) and ``RECIPE_KEYS`` (training-only keys, not stored with the model).
:class:`BaselineModel` is the base of its trainable wrapper: what a checkpoint stores of the config (``channels``,
the model keys, ``seed``, in that order), the architecture check with an error naming the differing keys, atomic
``save`` (tensor checksum), ``load`` and the config read back by ``from_checkpoint``. A subclass names its
checkpoint format, its display name, its training stage and its params group, and writes only ``state_dict`` /
the loading of its own networks.
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from typing import Any, ClassVar

from gimbal.checkpoint import read_model_file, save_checkpoint
from gimbal.errors import ModelFileIncompatible, ModelFileWrongKind, ParamError

__all__ = ["BaselineConfig", "BaselineModel"]


class BaselineConfig:
    """Mixin of a baseline's frozen params dataclass."""

    ARCH_KEYS: ClassVar[tuple[str, ...]] = ("channels",)
    RECIPE_KEYS: ClassVar[tuple[str, ...]] = ()

    def arch(self, channels: int) -> dict[str, Any]:
        """The architecture-defining values (:attr:`ARCH_KEYS`) of a model of ``channels`` image channels: a
        checkpoint loads only into a model with the same ones."""
        return {k: channels if k == "channels" else getattr(self, k) for k in self.ARCH_KEYS}


class BaselineModel:
    """Base of a single-image baseline's wrapper; the subclass sets ``config``, ``channels`` and ``seed``."""

    FORMAT: ClassVar[str]  # checkpoint format tag
    NAME: ClassVar[str]  # e.g. "DMPHN", in error messages
    STAGE: ClassVar[str]  # the DVC stage that writes the model file
    PARAM_GROUP: ClassVar[str]  # e.g. "baselines.dmphn"
    CONFIG: ClassVar[type]  # the params dataclass (a BaselineConfig)

    config: Any
    channels: int
    seed: int

    def arch(self) -> dict[str, Any]:
        """The architecture-defining values (must match for a checkpoint to load)."""
        return self.config.arch(self.channels)

    def stored_config(self) -> dict[str, Any]:
        """The config a checkpoint stores: ``channels``, the model's keys of the params group (not the recipe's)
        and ``seed``, in that order."""
        model_keys = {k: v for k, v in asdict(self.config).items() if k not in self.CONFIG.RECIPE_KEYS}
        return {"channels": self.channels, **model_keys, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, ckpt: dict[str, Any], where: str | os.PathLike[str]) -> Any:
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a checkpoint atomically (temp file + fsync + rename) with the sha256 of its tensors."""
        save_checkpoint(path, self.state_dict())

    def load(self, path: str | os.PathLike[str]) -> Any:
        """Load a checkpoint written by :meth:`save` into this model; returns self. A
        :class:`~gimbal.errors.ModelFileError` (a :class:`~gimbal.errors.DataError`) naming the
        file if it is missing, unreadable, fails its tensor checksum, is not this baseline's checkpoint, or was
        built with a different architecture (the message lists the differing keys)."""
        return self.load_state(self.read_checkpoint(path), path)

    def check_arch(self, ckpt: Any, where: str | os.PathLike[str]) -> None:
        """:class:`~gimbal.errors.ModelFileWrongKind` or :class:`~gimbal.errors.ModelFileIncompatible` naming ``where``
        unless checkpoint ``ckpt`` has this model's architecture."""
        saved = ckpt.get("config") if isinstance(ckpt, dict) else None
        if not isinstance(saved, dict):
            raise ModelFileWrongKind(f"{where}: not a {self.NAME} checkpoint (no config); delete it and re-train")
        diff = {k: (saved.get(k), v) for k, v in self.arch().items() if saved.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: file {a!r} vs model {b!r}" for k, (a, b) in diff.items())
            raise ModelFileIncompatible(
                f"{where}: {self.NAME} checkpoint has a different architecture ({detail}); set "
                f"{self.PARAM_GROUP}.<key> to the file's values or build the model with "
                f"{type(self).__name__}.from_checkpoint"
            )

    @classmethod
    def read_checkpoint(cls, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The checkpoint at ``path`` (:func:`gimbal.checkpoint.read_model_file`: format tag and checksum checked)."""
        return read_model_file(path, cls.FORMAT, cls.NAME, cls.STAGE)

    @classmethod
    def saved_config(cls, ckpt: dict[str, Any], path: str | os.PathLike[str]) -> tuple[Any, int, int]:
        """``(config, channels, seed)`` stored in checkpoint ``ckpt`` (read from ``path``, which errors name)."""
        known = {f.name for f in fields(cls.CONFIG)}
        saved = ckpt["config"]
        try:
            config = cls.CONFIG(**{k: v for k, v in saved.items() if k in known})
            return config, int(saved["channels"]), int(saved.get("seed", 0))
        except (TypeError, ValueError, KeyError, ParamError) as exc:
            raise ModelFileIncompatible(f"{path}: invalid {cls.NAME} config in checkpoint ({exc}); "
                                        "re-train it") from exc
