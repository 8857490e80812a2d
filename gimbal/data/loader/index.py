"""Shard index of the clip readers: :func:`open_split` reads ``<shards_dir>/index.json`` (written by
:mod:`gimbal.data.shards`, stage ``shards``) and validates one split's tars and DALI ``.idx`` files
(size, sha256 once per file and process, optionally the tar headers) into a :class:`ShardSet`, plus
the checks of batch size, dtype and DDP rank shared by the torch and DALI readers.
"""

from __future__ import annotations

import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gimbal.data.shards import read_shard_index
from gimbal.data.video import sha256_file
from gimbal.errors import DataError, ParamError, ShapeError

Meta = dict[str, Any]
Batch = tuple[torch.Tensor, list[Meta]]
log = logging.getLogger(__name__)
_REBUILD = "rebuild the shards with `dvc repro shards -f`"
#: files whose sha256 matched index.json in this process: (path, dev, inode, size, mtime, ctime) -> sha256
_VERIFIED: dict[tuple[str, int, int, int, int, int], str] = {}


@dataclass(frozen=True)
class ShardSet:
    """The validated shards of one split: tar/idx paths, sample keys and video CRCs in stored order."""

    root: Path
    split: str
    codec: str
    pix_fmt: str
    crf: int
    ext: str
    tars: tuple[Path, ...]
    idxs: tuple[Path, ...]
    keys: tuple[tuple[str, ...], ...]
    crcs: tuple[tuple[int, ...], ...]
    frames: int | None
    width: int | None
    height: int | None

    @property
    def samples(self) -> int:
        """Number of clips in the split."""
        return sum(len(k) for k in self.keys)


def open_split(shards_dir: str | os.PathLike[str], split: str, check: bool = True) -> ShardSet:
    """Read and validate the shards of ``split`` listed in ``<shards_dir>/<split>/index.json``.

    Every tar and ``.idx`` must exist with its recorded size and sha256 (hashed once per file
    and process, see :func:`verify_sha256`, so repeated epochs and loaders do not re-hash);
    with ``check=True`` the tar headers are also scanned and must list exactly the recorded
    samples. Raises :class:`DataError` naming the bad file and suggesting ``dvc repro shards -f``
    (``-f`` because DVC misses damage that keeps the size and timestamp).
    """
    root = Path(shards_dir)
    index = read_shard_index(root, split)
    info = index["splits"][split]
    if info["samples"] == 0:
        raise DataError(f"{root / split}: split {split!r} has no clips; check clips.test_fraction / "
                        f"clips.val_fraction and {_REBUILD}")
    ext = index["ext"]
    tars, idxs, keys, crcs = [], [], [], []
    for shard in info["shards"]:
        tar, idx = root / shard["tar"], root / shard["idx"]
        if not tar.is_file():
            raise DataError(f"{tar}: shard missing; {_REBUILD}")
        size = tar.stat().st_size
        if size != shard["bytes"]:
            raise DataError(f"{tar}: shard is truncated or modified ({size} bytes, expected {shard['bytes']}); "
                            f"{_REBUILD}")
        if not idx.is_file():
            raise DataError(f"{idx}: DALI index of {tar.name} missing; {_REBUILD}")
        verify_sha256(tar, shard["sha256"], "shard")
        verify_sha256(idx, shard["idx_sha256"], f"DALI index of {tar.name}")
        if check:
            expected = {f"{k}.{e}" for k in shard["keys"] for e in (ext, "json")}
            found = set(_scan_tar(tar))
            if found != expected:
                raise DataError(f"{tar}: shard content differs from index.json "
                                f"(unexpected {sorted(found - expected)[:3]}, missing {sorted(expected - found)[:3]}); "
                                f"{_REBUILD}")
        tars.append(tar)
        idxs.append(idx)
        keys.append(tuple(shard["keys"]))
        crcs.append(tuple(shard["crc32"]))
    return ShardSet(root, split, index["codec"], index["pix_fmt"], index["crf"], ext, tuple(tars), tuple(idxs),
                    tuple(keys), tuple(crcs), info["frames"], info["width"], info["height"])


def verify_sha256(path: Path, expected: str, what: str = "shard") -> None:
    """Raise :class:`DataError` unless the bytes of ``path`` have the hex sha256 ``expected``.

    A file is hashed once per process and version: the result is cached under its path,
    device, inode, size, mtime and ctime. ctime changes on every write and cannot be set back
    (unlike mtime, which ``touch -r`` restores), so a file modified after its check is hashed again.
    """
    st = path.stat()
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if _VERIFIED.get(key) == expected:
        return
    digest = sha256_file(path)
    if digest != expected:
        raise DataError(f"{path}: {what} is corrupt or was modified (sha256 {digest[:12]}..., index.json records "
                        f"{str(expected)[:12]}...); {_REBUILD}")
    _VERIFIED[key] = expected


def _scan_tar(tar: Path) -> dict[str, tarfile.TarInfo]:
    """Member name -> header of every regular file in ``tar``; DataError if the tar is unreadable."""
    try:
        with tarfile.open(tar, mode="r:") as tf:
            return {m.name: m for m in tf.getmembers() if m.isreg()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{tar}: corrupt shard ({exc}); {_REBUILD}") from exc


def _check_batchable(shards: ShardSet, batch_size: int) -> None:
    if batch_size < 1:
        raise ParamError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size > 1 and None in (shards.frames, shards.width, shards.height):
        raise ShapeError(f"{shards.root / shards.split}: clips of split {shards.split!r} differ in frame count or "
                         "size, so they cannot be stacked into (B, T, C, H, W) batches; use batch_size=1 "
                         "or make all clips the same size")


def check_batch_size(shards_dir: str | os.PathLike[str], split: str, batch_size: int, key: str,
                     world_size: int = 1) -> int:
    """The number of clips of ``split`` (from ``<shards_dir>/<split>/index.json``); raises :class:`ParamError` naming
    the params key ``key`` when ``batch_size`` is more than the clips of the split, and warns when each of
    ``world_size`` ranks (each draws ``batch_size`` clips of its own part) would get fewer.

    A training stage calls it before any work: a batch larger than the split made DALI fail with
    ``std::bad_alloc`` and the torch reader silently train on a short batch of every clip there is.
    """
    index = read_shard_index(shards_dir, split)
    clips = int(index["splits"][split]["samples"])
    if batch_size > clips:
        raise ParamError(f"params: '{key}' = {batch_size} is more than the {clips} clips of the {split!r} split "
                         f"({Path(shards_dir) / split / 'index.json'}); lower '{key}' to at most {max(clips, 1)}, or "
                         "make more clips (data.sources, clips.skip)")
    per_rank = clips // max(world_size, 1)
    if batch_size > per_rank:
        log.warning("params '%s' = %d: each of the %d ranks reads about %d of the %d clips of %s, so its batches hold "
                    "fewer; lower '%s' to %d for full batches", key, batch_size, world_size, per_rank, clips, split,
                    key, max(per_rank, 1))
    return clips


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.uint8):
        raise ParamError(f"loader dtype must be torch.float32 ([0, 1]) or torch.uint8 (0..255), got {dtype}")
    return dtype


def _dist_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else those of torch.distributed if initialised, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank = torch.distributed.get_rank() if rank is None else rank
            world_size = torch.distributed.get_world_size() if world_size is None else world_size
        else:
            rank, world_size = rank or 0, world_size or 1
    if not 0 <= rank < world_size:
        raise ParamError(f"rank must be in [0, world_size={world_size}), got {rank}")
    return rank, world_size
