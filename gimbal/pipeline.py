"""The whole params file split into the groups each library function takes: the one module below the stages that
reads the root :class:`~gimbal.config.Config`.

Training, evaluation and inference take the groups they read (a model variant's run, :class:`GimbalRun`; a
single-image baseline's, :class:`RestorerRun`; a system's, :class:`SystemGroups`); the stages parse ``params.yaml``
once and hand it over through the functions here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gimbal import methods
from gimbal.baselines.single import RestorerRun
from gimbal.config import Config, check_params
from gimbal.model_params import SystemGroups
from gimbal.system import GimbalSystem
from gimbal.tiers import load_tier
from gimbal.training.burst import GimbalRun
from gimbal.training.burst import train as train_variant
from gimbal.training.flow_pretrain import FlowArch
from gimbal.training.flow_pretrain import pretrain_flow as pretrain_flow_net

__all__ = ["build_system", "flow_arch", "flow_weights", "gimbal_run", "pretrain_flow", "restorer_run", "system_groups", "tier_overrides", "train", "train_baseline", "train_cell",
           "trainer"]


def system_groups(cfg: Config, variant: str = "gimbal") -> SystemGroups:
    """The groups of model variant ``variant``'s system: ``seed``, ``sensor``, the variant's ``model``, ``exposure``
    and ``loss`` (:meth:`Config.variant`, which refuses an unknown variant), ``eval.target``,
    ``augment.white_level`` and ``train.steps``."""
    model, exposure, loss = cfg.variant(variant)
    return SystemGroups(seed=cfg.seed, sensor=cfg.sensor, model=model, exposure=exposure, loss=loss,
                        target=cfg.eval.target, white_level=cfg.augment.white_level, steps=cfg.train.steps)


def build_system(cfg: Config, variant: str = "gimbal") -> GimbalSystem:
    """The untrained system of model variant ``variant`` (:meth:`GimbalSystem.from_groups`)."""
    return GimbalSystem.from_groups(system_groups(cfg, variant))


def gimbal_run(cfg: Config, variant: str, flow_weights: Path | None = None, init_model: Path | None = None
               ) -> GimbalRun:
    """The groups the training of model variant ``variant`` reads, and the params its model file stores;
    ``flow_weights``: the pretrained flow file its flow network starts from (:func:`flow_weights`), then trained
    at ``flow_pretrain.finetune_lr``; ``init_model``: a trained model file whose networks it starts from."""
    return GimbalRun(variant=variant, system=system_groups(cfg, variant), augment=cfg.augment, train=cfg.train,
                     params=cfg.raw, flow_weights=flow_weights,
                     flow_lr=cfg.flow_pretrain.finetune_lr if flow_weights is not None else None,
                     init_model=init_model)


def flow_arch(cfg: Config) -> FlowArch:
    """The flow network's architecture: ``exposure.n``, ``model.flow_levels``, ``flow_channels``, ``kernel_size``."""
    return FlowArch.for_model(cfg.exposure.n, cfg.model)


def flow_weights(cfg: Config, variant: str, path: Path) -> Path | None:
    """``path`` (the pretrained flow file) when variant ``variant`` has a flow network and ``flow_pretrain.use`` is
    on, else ``None`` (from scratch)."""
    return path if cfg.flow_pretrain.use and cfg.variant(variant).model.use_flow else None


def pretrain_flow(cfg: Config, model_path: Path, metrics_path: Path, live_dir: Path, checkpoint_path: Path
                  ) -> dict[str, Any]:
    """Pretrain the flow network (:func:`gimbal.training.flow_pretrain.pretrain_flow`) on bursts of
    ``flow_pretrain.size`` px (null: ``augment.out_size``) on ``train.device``; returns its metrics."""
    fp = cfg.flow_pretrain
    return pretrain_flow_net(fp, flow_arch(cfg), fp.size or cfg.augment.out_size, cfg.train.device, model_path,
                             metrics_path, live_dir, checkpoint_path)


def restorer_run(cfg: Config) -> RestorerRun:
    """The groups a single-image baseline's training reads besides its own ``baselines.<name>`` group."""
    return RestorerRun(seed=cfg.seed, sensor=cfg.sensor, exposure=cfg.exposure, augment=cfg.augment,
                       channels=cfg.model.channels, eval=cfg.eval, train=cfg.train)


def train(cfg: Config, variant: str, shards_dir: Path, model_path: Path, metrics_path: Path, exposures_path: Path,
          schedule_plot: Path, live_dir: Path, checkpoint_path: Path, flow_weights: Path | None = None,
          init_model: Path | None = None) -> dict[str, Any]:
    """Train model variant ``variant`` (:func:`gimbal.training.burst.train` on :func:`gimbal_run`), its flow network
    from ``flow_weights`` or its networks from the model file ``init_model`` when given; returns its metrics."""
    return train_variant(gimbal_run(cfg, variant, flow_weights, init_model), shards_dir, model_path, metrics_path,
                         exposures_path, schedule_plot, live_dir, checkpoint_path)


def train_cell(cfg: Config, out_dir: Path, shards_dir: Path, checkpoint_path: Path, init_model: Path | None = None
               ) -> dict[str, Any]:
    """Train a sweep cell's learned-exposure model (variant ``gimbal`` of ``cfg``, :func:`train`) into ``out_dir``:
    ``model.pt``, ``train.json``, ``exposures.json``, ``exposures.png`` and ``dvclive/``, the layout the Fig. 9
    report and validation read; ``init_model``: as :func:`train`. Returns its metrics."""
    return train(cfg, "gimbal", shards_dir=shards_dir, model_path=out_dir / "model.pt",
                 metrics_path=out_dir / "train.json", exposures_path=out_dir / "exposures.json",
                 schedule_plot=out_dir / "exposures.png", live_dir=out_dir / "dvclive", checkpoint_path=checkpoint_path,
                 init_model=init_model)


def trainer(name: str) -> Callable[..., dict[str, Any]]:
    """The training function of single-image method ``name`` (its table entry's ``train``, "module:function"):
    ``f(run: RestorerRun, group, shards_dir, model_path, metrics_path, live_dir, checkpoint_path, **options)``,
    ``group`` its ``baselines.<name>`` params group."""
    module, _, function = methods.TABLE[name].train.partition(":")  # type: ignore[union-attr]
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def train_baseline(cfg: Config, name: str, shards_dir: Path, model_path: Path, metrics_path: Path, live_dir: Path,
                   checkpoint_path: Path, **options: Any) -> dict[str, Any]:
    """Train single-image method ``name`` (:func:`trainer`) on :func:`restorer_run` and its group
    ``baselines.<name>`` (``options``: the trainer's keyword options, e.g. ``progress``); returns its metrics."""
    return trainer(name)(restorer_run(cfg), getattr(cfg.baselines, name), shards_dir, model_path, metrics_path,
                         live_dir, checkpoint_path, **options)


def tier_overrides(name: str, params_path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """The overrides of tier ``name`` (:func:`gimbal.tiers.load_tier`), checked by parsing ``params_path`` with them
    applied into the whole config (a misspelt key or bad value raises :class:`ParamError` naming the tier file)."""
    return load_tier(name, params_path, check=check_params)
