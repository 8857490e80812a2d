"""Training recipe of the DeblurGAN-v2 baseline on the single full-exposure image (paper Table 1/2 baseline).

Input: the clip captured by the *same* simulated sensor as one exposure of the whole budget ``T``
(:func:`gimbal.system.full_exposure_image`, exact Poisson noise; the brightness eq. 14 normalizes bursts to),
through the floors' display (:class:`gimbal.display.Display`: fixed gain, clip, display curve); target: the run's
target (``eval.target``; default the sRGB middle frame, the authors'). Scenes come from the one data-to-irradiance path
(:mod:`gimbal.data.irradiance`), so the baseline sees the data distribution of the models it is compared
with. No pretrained weights can be downloaded here: it trains from scratch, or starts from user-given
weights (``baselines.deblurgan.weights``); with ``baselines.deblurgan.steps: 0`` those weights are only
validated and written out.

The loop (:func:`gimbal.training.loop.fit`, the one every model trains through), validation (val crops and whole val
frames), checkpoint choice and resume are the single-image baselines' task,
:func:`gimbal.baselines.single.train_restorer`; this module builds the model and its metrics.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gimbal.baselines.deblurgan.model import CHECKPOINT_FORMAT, PARAM_GROUP, DeblurGANConfig, DeblurGANv2
from gimbal.baselines.single import RestorerRun, restorer_fingerprint, train_restorer
from gimbal.checkpoint import load_weights, read_torch_file
from gimbal.errors import ModelFileWrongKind
from gimbal.params import group_dict
from gimbal.runtime import resolve_device

__all__ = ["load_deblurgan_weights", "train_deblurgan"]

log = logging.getLogger(__name__)


def load_deblurgan_weights(
    config: DeblurGANConfig, channels: int, seed: int, path: str | Path, device: torch.device | str = "cpu"
) -> DeblurGANv2:
    """A fresh :class:`DeblurGANv2` (``config``, new optimisers, step 0) with the networks of ``path``.

    ``path`` is either a checkpoint of :meth:`DeblurGANv2.save` (its architecture keys win over the
    config, generator and discriminator are loaded) or a bare generator state dict (optionally under
    ``generator`` / ``model`` / ``state_dict``, ``module.`` prefixes stripped) for the config's architecture.
    Raises a :class:`~gimbal.errors.ModelFileError` naming the file and the param when it is missing, unreadable
    or does not fit (:func:`gimbal.checkpoint.read_torch_file`, :func:`gimbal.checkpoint.load_weights`).
    """
    path = Path(path)
    where = f"{path} (params '{PARAM_GROUP}.weights')"
    state = read_torch_file(path, "weights file", "fix the path or set it to null to train from scratch",
                            label=where, unchecked_reason="pretrained generator weights from elsewhere have none")
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT and isinstance(state.get("config"), dict):
        saved = state["config"]
        mine = config.arch(channels)
        arch = {k: saved[k] for k in DeblurGANConfig.ARCH_KEYS if k in saved}
        changed = {k: (mine[k], v) for k, v in arch.items() if mine[k] != v}
        if changed:
            log.warning("DeblurGAN-v2: using the architecture of %s: %s", path,
                        ", ".join(f"{k}={v!r} (params: {p!r})" for k, (p, v) in changed.items()))
        channels = arch.get("channels", channels)
        model = DeblurGANv2(replace(config, **{k: v for k, v in arch.items() if k != "channels"}), channels, seed,
                            device=device)
        parts = {"generator": model.generator, "discriminator": model.discriminator}
    else:
        model = DeblurGANv2(config, channels, seed, device=device)
        for key in ("generator", "model", "state_dict"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
        if not isinstance(state, dict):
            raise ModelFileWrongKind(f"{where}: not a weights file (expected a state dict, got "
                                     f"{type(state).__name__}); fix the path or set it to null to train from scratch")
        state = {"generator": {str(k).removeprefix("module."): v for k, v in state.items()}}
        parts = {"generator": model.generator}
    for key, module in parts.items():
        load_weights(module, state.get(key), where, f"the DeblurGAN-v2 {key}",
                     f"check '{PARAM_GROUP}.width_mult/fpn_channels/head_channels'")
    return model


def train_deblurgan(
    run: RestorerRun,
    dcfg: DeblurGANConfig,
    shards_dir: Path,
    model_path: Path,
    metrics_path: Path,
    live_dir: Path,
    checkpoint_path: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Train DeblurGAN-v2 on full-exposure / ground-truth pairs and write model, metrics and dvclive logs.

    Reads ``dcfg``, the group ``baselines.deblurgan`` (architecture, loss, lr, steps, batch_size, weights), and of
    ``run`` (:class:`~gimbal.baselines.single.RestorerRun`) ``seed``, ``sensor``, ``exposure``, ``model.channels``,
    ``augment``, ``eval`` and ``train`` (``val_every``, ``val_clips``,
    ``samples_per_clip``, ``checkpoint_every``, ``loader``, ``device``, ``select``: the weights written are those of
    the validation with the best whole-frame val PSNR, or the last). Resumes from ``checkpoint_path`` when it
    was written for the same params and code. Returns the metrics of
    :func:`~gimbal.baselines.single.train_restorer` (``train_loss`` is the generator loss; ``train_content``,
    ``train_loss_d``; ``val_psnr`` / ``val_input_psnr`` on val crops, ``val_frame_psnr`` /
    ``val_frame_input_psnr`` on whole val frames, ...), plus ``weights`` and ``perceptual``.
    """
    channels = run.channels
    device = resolve_device(run.train.device, "params 'train.device'")  # the loop sets up the run itself
    if dcfg.weights is not None:
        model = load_deblurgan_weights(dcfg, channels, run.seed, dcfg.weights, device)
    else:
        model = DeblurGANv2(dcfg, channels, run.seed, device=device)
    if dcfg.steps == 0 and dcfg.weights is None:
        log.warning("DeblurGAN-v2: steps is 0 and no weights are given: writing the untrained generator")
    return train_restorer(
        run, "deblurgan", model, dcfg.steps, dcfg.batch_size, restorer_fingerprint(run, group_dict(dcfg)), shards_dir,
        model_path, metrics_path, live_dir, checkpoint_path, rates={"baselines.deblurgan.lr": dcfg.lr},
        loss_key="loss_g", summary_keys=("content", "loss_d"), progress=progress,
        extra_metrics={"weights": dcfg.weights,
                       "perceptual": "substitute" if model.content_loss.uses_substitute else "vgg19"})
