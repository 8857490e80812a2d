"""The pure PyTorch clip reader: :class:`TorchClipLoader`, a :class:`TorchClipDataset`
(IterableDataset) reading samples by random access from the tars (:mod:`tarfile`) and decoding
them with PyAV, in a :class:`torch.utils.data.DataLoader`. Seeded shuffling per epoch; samples are
split between DDP ranks and DataLoader workers. Batches are ``(frames, metas)`` as described in
:mod:`gimbal.data.loader`.
"""

from __future__ import annotations

import json
import math
import os
import tarfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gimbal.data.loader.index import (
    _REBUILD,
    Batch,
    Meta,
    ShardSet,
    _check_batchable,
    _check_dtype,
    _dist_rank,
    open_split,
)
from gimbal.data.shards import decode_clip
from gimbal.errors import DataError, ShapeError


class TorchClipDataset(IterableDataset):
    """Clips of one split as ``(frames, meta)``; ``frames`` uint8 ``(T, C, H, W)`` RGB.

    Samples are read by random access from the tars (headers scanned once per shard and
    worker) and decoded from memory with PyAV. Each epoch's order is the stored order, or a
    permutation of all clips seeded by ``(seed, epoch)`` when ``shuffle``; call
    :meth:`set_epoch` before each epoch (as with ``DistributedSampler``). The order is split
    between DDP ranks (``rank::world_size``, padded by repetition - or truncated with
    ``drop_last`` - so that every rank gets the same number of clips) and then between
    DataLoader workers (``worker::num_workers``). Splitting by sample rather than by whole
    shard keeps ranks balanced even with fewer shards than ranks x workers.
    """

    def __init__(
        self,
        shards_dir: str | os.PathLike[str],
        split: str,
        shuffle: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        decode_threads: int = 1,
        check: bool = True,
    ) -> None:
        super().__init__()
        self.shards = open_split(shards_dir, split, check=check)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = _dist_rank(rank, world_size)
        self.decode_threads = decode_threads
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (seeded) order the next iteration follows."""
        self.epoch = epoch

    def order(self) -> list[tuple[int, int]]:
        """``(shard, position)`` of the clips this rank reads in the current epoch, in order."""
        items = [(s, i) for s, keys in enumerate(self.shards.keys) for i in range(len(keys))]
        if self.shuffle:
            perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(items))
            items = [items[j] for j in perm]
        n, w = len(items), self.world_size
        if w > 1:
            if self.drop_last:
                items = items[: n - n % w]
            else:
                items += items[: (-n) % w]
        return items[self.rank :: w]

    def __len__(self) -> int:
        return len(self.order())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Meta]]:
        items = self.order()
        worker = get_worker_info()
        if worker is not None:
            items = items[worker.id :: worker.num_workers]
        reader = _TarReader(self.shards)
        try:
            for shard, pos in items:
                yield self._load(reader, shard, pos)
        finally:
            reader.close()

    def _load(self, reader: _TarReader, shard: int, pos: int) -> tuple[torch.Tensor, Meta]:
        tar, key, ext = self.shards.tars[shard], self.shards.keys[shard][pos], self.shards.ext
        data = reader.read(shard, f"{key}.{ext}")
        if zlib.crc32(data) != self.shards.crcs[shard][pos]:
            raise DataError(f"{tar}: clip {key}.{ext} is corrupt (CRC mismatch); {_REBUILD}")
        try:
            meta = json.loads(reader.read(shard, f"{key}.json"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{tar}: meta {key}.json is corrupt ({exc}); {_REBUILD}") from exc
        frames = decode_clip(data, source=f"{tar}:{key}.{ext}", threads=self.decode_threads)
        if frames.shape[:3] != (meta["frames"], meta["height"], meta["width"]):
            raise DataError(f"{tar}: clip {key}.{ext} decodes to {frames.shape[:3]} (T, H, W), meta says "
                            f"{(meta['frames'], meta['height'], meta['width'])}; {_REBUILD}")
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), meta


class _TarReader:
    """Random-access member reads from the shards, keeping a few tars open (LRU)."""

    def __init__(self, shards: ShardSet, max_open: int = 4) -> None:
        self.shards, self.max_open = shards, max_open
        self.open: OrderedDict[int, tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]] = OrderedDict()

    def read(self, shard: int, name: str) -> bytes:
        tar = self.shards.tars[shard]
        try:
            if shard not in self.open:
                if len(self.open) >= self.max_open:
                    self.open.popitem(last=False)[1][0].close()
                tf = tarfile.open(tar, mode="r:")  # noqa: SIM115 - kept open across reads, closed by close()
                self.open[shard] = (tf, {m.name: m for m in tf.getmembers() if m.isreg()})
            self.open.move_to_end(shard)
            tf, members = self.open[shard]
            if name not in members:
                raise DataError(f"{tar}: sample {name} missing from the shard; {_REBUILD}")
            fh = tf.extractfile(members[name])
            assert fh is not None
            return fh.read()
        except FileNotFoundError as exc:
            raise DataError(f"{tar}: shard missing; {_REBUILD}") from exc
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{tar}: corrupt shard ({exc}); {_REBUILD}") from exc

    def close(self) -> None:
        while self.open:
            self.open.popitem()[1][0].close()


def collate_clips(samples: list[tuple[torch.Tensor, Meta]]) -> tuple[torch.Tensor, list[Meta]]:
    """Stack ``(T, C, H, W)`` clips into ``(B, T, C, H, W)``; metas stay a list (ShapeError on mixed shapes)."""
    shapes = {tuple(f.shape) for f, _ in samples}
    if len(shapes) > 1:
        raise ShapeError(f"clips {[m['id'] for _, m in samples]} have different shapes {sorted(shapes)}; "
                         "use batch_size=1 or make all clips the same size")
    return torch.stack([f for f, _ in samples]), [m for _, m in samples]


class TorchClipLoader:
    """Batches ``(frames (B, T, C, H, W) float32 in [0, 1], metas)`` from the shards, read with PyTorch + PyAV.

    Each ``iter()`` is one epoch; epochs are numbered from 0 and the shuffle of epoch ``e``
    is seeded by ``(seed, e)``. ``num_workers`` DataLoader processes decode in parallel (the
    uint8 clips cross process boundaries; conversion to float happens on ``device``).
    """

    backend = "torch"

    def __init__(
        self,
        shards_dir: str | os.PathLike[str],
        split: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        decode_threads: int = 1,
        check: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.dataset = TorchClipDataset(shards_dir, split, shuffle, seed, rank, world_size, drop_last,
                                        decode_threads, check)
        _check_batchable(self.dataset.shards, batch_size)
        self.batch_size, self.num_workers, self.drop_last = batch_size, num_workers, drop_last
        self.device = torch.device(device)
        self.dtype = _check_dtype(dtype)
        self.epoch = 0

    @property
    def samples(self) -> int:
        """Clips this rank reads per epoch."""
        return len(self.dataset)

    def __len__(self) -> int:
        n, w, b = self.samples, max(self.num_workers, 1), self.batch_size
        per_worker = [n // w + (i < n % w) for i in range(w)]  # batches are formed inside each worker
        return sum(k // b if self.drop_last else math.ceil(k / b) for k in per_worker)

    def __iter__(self) -> Iterator[Batch]:
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=collate_clips, drop_last=self.drop_last,
                            pin_memory=self.device.type == "cuda")
        for frames, metas in loader:
            frames = frames.to(self.device, non_blocking=True)
            yield (frames if self.dtype == torch.uint8 else frames.float().div_(255.0)), metas
