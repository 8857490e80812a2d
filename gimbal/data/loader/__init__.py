"""Readers of the clip shards written by :mod:`gimbal.data.shards` (stage ``shards``).

Both readers yield batches ``(frames, metas)``: ``frames`` is float32 ``(B, T, C, H, W)`` in
[0, 1] (gamma-encoded RGB, as stored; T = 241 at the paper's 8x interpolation; ``dtype=torch.uint8``
gives the raw 0..255 values, 4x smaller, e.g. to crop before converting) and ``metas``
a list of B meta dicts (``id``, ``video``, ``index``, ``split``, ``fps``, ``frames``,
``width``, ``height``, ``gt_frame``, ...). Without shuffling both return the clips in the
order of ``index.json``.

* :class:`DaliClipLoader` - NVIDIA DALI: ``fn.readers.webdataset`` (with the ``.idx`` files)
  + ``fn.decoders.video`` from memory, on the GPU (``device="mixed"``, NVDEC) when one is
  present, else on the CPU. DALI 2.4's CPU video decoder only handles VP8/VP9/MJPEG - for
  H.264 it fails with "Codec 27 (h264) is not supported by the CPU variant of this operator"
  - so on CPU it needs shards written with ``shards.codec: libvpx-vp9``. NVDEC needs 4:2:0
  streams (``shards.pix_fmt: yuv420p``) and cannot decode x264's lossless profile.
* :class:`TorchClipLoader` - pure PyTorch: a :class:`TorchClipDataset` (IterableDataset)
  reading samples by random access from the tars (:mod:`tarfile`) and decoding them with
  PyAV, in a :class:`torch.utils.data.DataLoader`. Seeded shuffling per epoch; samples are
  split between DDP ranks and DataLoader workers.
* :func:`make_loader` picks DALI when it is importable and can decode the shards, else torch.

The shard index lives in :mod:`gimbal.data.loader.index`, the readers in
:mod:`gimbal.data.loader.torch_reader` and :mod:`gimbal.data.loader.dali_reader` (the only module
that imports ``nvidia.dali``); this package re-exports their public names.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

import torch

from gimbal.data.loader.dali_reader import (
    DaliClipLoader,
    dali_codec_error,
    dali_device,
    dali_import_error,
    dali_probe,
)
from gimbal.data.loader.index import Batch, Meta, ShardSet, check_batch_size, open_split, verify_sha256
from gimbal.data.loader.torch_reader import TorchClipDataset, TorchClipLoader, collate_clips
from gimbal.errors import ParamError

__all__ = [
    "Backend",
    "Batch",
    "DaliClipLoader",
    "dali_device",
    "Meta",
    "ShardSet",
    "TorchClipDataset",
    "TorchClipLoader",
    "check_batch_size",
    "collate_clips",
    "dali_codec_error",
    "dali_import_error",
    "dali_probe",
    "make_loader",
    "open_split",
    "verify_sha256",
]

log = logging.getLogger(__name__)

Backend = Literal["auto", "dali", "torch"]


def make_loader(
    shards_dir: str | os.PathLike[str],
    split: str,
    batch_size: int,
    backend: Backend = "auto",
    shuffle: bool = False,
    seed: int = 0,
    *,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    num_threads: int = 2,
    rank: int | None = None,
    world_size: int | None = None,
    drop_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> TorchClipLoader | DaliClipLoader:
    """A clip loader over ``<shards_dir>/<split>``, logging which backend it chose.

    ``backend="auto"`` uses :class:`DaliClipLoader` when DALI imports and can decode the
    shards on ``device`` (``auto | cpu | cuda | cuda:N``; checked by decoding one clip), else :class:`TorchClipLoader`
    (``num_workers`` processes; frames moved to the GPU when ``device`` resolves to it).
    ``"dali"``/``"torch"`` force one (ParamError if DALI cannot be used).
    """
    if backend not in ("auto", "dali", "torch"):
        raise ParamError(f"loader backend must be 'auto', 'dali' or 'torch', got {backend!r}")
    dev = dali_device(device)
    common = {"shuffle": shuffle, "seed": seed, "rank": rank, "world_size": world_size, "drop_last": drop_last,
              "dtype": dtype}
    if backend in ("auto", "dali"):
        shards = open_split(shards_dir, split)
        reason = dali_import_error() or dali_codec_error(shards.codec, shards.pix_fmt, shards.crf, dev)
        if reason is None:
            reason = dali_probe(shards, dev)
        if reason is None:
            log.info("data loader: DALI on %s for %s/%s (%d clips)", dev, shards_dir, split, shards.samples)
            return DaliClipLoader(shards_dir, split, batch_size, device=device, num_threads=num_threads,
                                  check=False, **common)
        if backend == "dali":
            raise ParamError(f"loader backend 'dali' cannot read {shards_dir}/{split} on {dev}: {reason}; "
                             "use backend 'torch' or 'auto'")
        log.info("data loader: torch/PyAV for %s/%s (DALI not used: %s)", shards_dir, split, reason)
    else:
        log.info("data loader: torch/PyAV for %s/%s", shards_dir, split)
    return TorchClipLoader(shards_dir, split, batch_size, num_workers=num_workers,
                           device="cuda" if dev == "gpu" else "cpu", **common)
