"""Training recipe of the DMPHN baseline on the single full-exposure image (paper Table 1 row "DMPHN").

The paper applied DMPHN's released GoPro weights; none can be downloaded here, so it is trained from scratch on
the same full-exposure / target pairs as DeblurGAN-v2, through the one loop as the single-image baselines' task
(:func:`gimbal.baselines.single.train_restorer`: validation on val crops and whole val frames, checkpoint choice on
val, resume, dvclive). Loss: the paper's MSE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gimbal.baselines.dmphn.model import DMPHN, DMPHNConfig
from gimbal.baselines.single import RestorerRun, restorer_fingerprint, train_restorer
from gimbal.params import group_dict
from gimbal.runtime import resolve_device

__all__ = ["train_dmphn"]


def train_dmphn(run: RestorerRun, dcfg: DMPHNConfig, shards_dir: Path, model_path: Path, metrics_path: Path,
                live_dir: Path, checkpoint_path: Path, progress: bool = True) -> dict[str, Any]:
    """Train DMPHN (``dcfg``: params group ``baselines.dmphn``; of ``run``, ``seed``, ``model.channels`` and the
    groups the loop reads) and write the model, metrics and dvclive logs; returns the metrics of
    :func:`~gimbal.baselines.single.train_restorer`."""
    model = DMPHN(dcfg, run.channels, run.seed, device=resolve_device(run.train.device, "params 'train.device'"))
    return train_restorer(run, "dmphn", model, dcfg.steps, dcfg.batch_size, restorer_fingerprint(run, group_dict(dcfg)),
                          shards_dir, model_path, metrics_path, live_dir, checkpoint_path,
                          rates={"baselines.dmphn.lr": dcfg.lr}, progress=progress)
