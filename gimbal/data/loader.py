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
"""

from __future__ import annotations

import json
import logging
import math
import os
import tarfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gimbal.data.shards import decode_clip, read_shard_index
from gimbal.data.video import sha256_file
from gimbal.errors import DataError, ParamError, ShapeError

log = logging.getLogger(__name__)

Meta = dict[str, Any]
Batch = tuple[torch.Tensor, list[Meta]]
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
    """Read and validate the shards of ``split`` listed in ``<shards_dir>/index.json``.

    Every tar and ``.idx`` must exist with its recorded size and sha256 (hashed once per file
    and process, see :func:`verify_sha256`, so repeated epochs and loaders do not re-hash);
    with ``check=True`` the tar headers are also scanned and must list exactly the recorded
    samples. Raises :class:`DataError` naming the bad file and suggesting ``dvc repro shards -f``
    (``-f`` because DVC misses damage that keeps the size and timestamp).
    """
    root = Path(shards_dir)
    index = read_shard_index(root)
    splits = index["splits"]
    if split not in splits:
        raise DataError(f"{root / 'index.json'}: no split {split!r} (have {sorted(splits)}); {_REBUILD}")
    info = splits[split]
    if info["samples"] == 0:
        raise DataError(f"{root / split}: split {split!r} has no clips; check clips.test_fraction and {_REBUILD}")
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


# --------------------------------------------------------------------------------------------
# PyTorch reader
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# NVIDIA DALI reader
# --------------------------------------------------------------------------------------------

DaliDevice = Literal["auto", "cpu", "gpu"]
#: what DALI 2.4's fn.decoders.video decodes, per device (our encoder names)
_DALI_CPU_CODECS = ("libvpx-vp9",)
_DALI_GPU_CODECS = ("libx264", "libx265", "libvpx-vp9")


def dali_import_error() -> str | None:
    """None if NVIDIA DALI (with its PyTorch plugin) imports, else why not."""
    try:
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken CUDA/driver setup raising at import
        return f"nvidia-dali is not usable ({type(exc).__name__}: {exc}); pip install nvidia-dali-cuda120"
    return None


def _resolve_device(device: DaliDevice) -> Literal["cpu", "gpu"]:
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "gpu"):
        raise ParamError(f"DALI device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if device == "gpu" and not torch.cuda.is_available():
        raise ParamError("DALI device='gpu' but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return device


def dali_codec_error(codec: str, pix_fmt: str, crf: int, device: Literal["cpu", "gpu"]) -> str | None:
    """None if DALI 2.4's video decoder on ``device`` can decode shards written with these settings, else why not."""
    if device == "cpu" and codec not in _DALI_CPU_CODECS:
        return (f"DALI's CPU video decoder supports VP8/VP9/MJPEG only, the shards are {codec}; "
                "rebuild them with shards.codec=libvpx-vp9 to use DALI without a GPU")
    if device == "gpu":
        if codec not in _DALI_GPU_CODECS:
            return f"DALI's GPU (NVDEC) decoder cannot decode {codec}; use shards.codec=libx265 or libvpx-vp9"
        if pix_fmt != "yuv420p":
            return f"NVDEC decodes 4:2:0 video only, the shards are {pix_fmt}; rebuild with shards.pix_fmt=yuv420p"
        if codec == "libx264" and crf == 0:
            return ("x264 at crf 0 writes the lossless High 4:4:4 Predictive profile, which NVDEC cannot decode; "
                    "use shards.codec=libx265 or libvpx-vp9 (lossless at crf 0) or libx264 with crf > 0")
    return None


def _dali_pipeline(
    shards: ShardSet,
    batch_size: int,
    device: Literal["cpu", "gpu"],
    device_id: int | None,
    num_threads: int,
    shuffle: bool,
    seed: int,
    rank: int,
    world_size: int,
    shuffle_buffer: int,
    tars: tuple[Path, ...] | None = None,
    to_float: bool = True,
) -> Any:
    """The DALI pipeline: webdataset reader -> video decoder -> (F, C, H, W) float32 in [0, 1], plus padded json."""
    from nvidia.dali import fn, pipeline_def, types

    tars = shards.tars if tars is None else tars
    idxs = [shards.idxs[shards.tars.index(t)] for t in tars]

    shuffle_args = {"shuffle_after_epoch": True, "shuffle_after_epoch_seed": seed} if shuffle else {}

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id if device == "gpu" else None,
                  seed=seed, prefetch_queue_depth=2)
    def pipeline():  # type: ignore[no-untyped-def]
        video, meta = fn.readers.webdataset(
            paths=[str(p) for p in tars], index_paths=[str(p) for p in idxs], ext=[shards.ext, "json"],
            missing_component_behavior="error", random_shuffle=shuffle, initial_fill=shuffle_buffer,
            seed=seed, **shuffle_args,
            shard_id=rank, num_shards=world_size, pad_last_batch=True, name="Reader",
        )
        # (F, H, W, 3) uint8 RGB; "mixed" = NVDEC decoding straight into GPU memory
        frames = fn.decoders.video(video, device="mixed" if device == "gpu" else "cpu")
        frames = fn.transpose(frames, perm=[0, 3, 1, 2])  # -> (F, C, H, W)
        if to_float:
            frames = fn.cast(frames, dtype=types.FLOAT) * (1.0 / 255.0)
        meta = fn.pad(meta, fill_value=32)  # pad json with spaces to equal length: a dense batch
        return frames, meta

    return pipeline()


class DaliClipLoader:
    """Batches ``(frames (B, T, C, H, W) float32 in [0, 1], metas)`` from the shards, read with NVIDIA DALI.

    ``device="gpu"`` decodes with NVDEC (``fn.decoders.video(device="mixed")``) into GPU
    memory on ``device_id`` (default: the current CUDA device) and yields CUDA tensors;
    ``"cpu"`` decodes with libavcodec (VP9 shards only, see :func:`dali_codec_error`);
    ``"auto"`` uses the GPU when one is visible. Each ``iter()`` is one epoch (the last batch
    may be short unless ``drop_last``); with DDP every rank reads its ``1/world_size`` of the
    clips. ``shuffle`` shuffles shard order each epoch plus clips in a ``shuffle_buffer`` buffer.
    """

    backend = "dali"

    def __init__(
        self,
        shards_dir: str | os.PathLike[str],
        split: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        device: DaliDevice = "auto",
        device_id: int | None = None,
        num_threads: int = 2,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        shuffle_buffer: int = 16,
        check: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        reason = dali_import_error()
        if reason:
            raise ParamError(f"DaliClipLoader: {reason}; or use backend='torch'")
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.shards = open_split(shards_dir, split, check=check)
        _check_batchable(self.shards, batch_size)
        self.device = _resolve_device(device)
        reason = dali_codec_error(self.shards.codec, self.shards.pix_fmt, self.shards.crf, self.device)
        if reason:
            raise ParamError(f"DaliClipLoader on {self.device}: {reason}; or use backend='torch'")
        if self.device == "gpu" and device_id is None:
            device_id = torch.cuda.current_device()
        self.rank, self.world_size = _dist_rank(rank, world_size)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.pipeline = _dali_pipeline(self.shards, batch_size, self.device, device_id, num_threads, shuffle, seed,
                                       self.rank, self.world_size, max(1, shuffle_buffer),
                                       to_float=_check_dtype(dtype) == torch.float32)
        try:
            self.pipeline.build()
        except RuntimeError as exc:
            raise self._data_error(exc) from exc
        # PARTIAL: a short last batch. With DDP, FILL (pad by repeating clips) so that every rank runs
        # the same number of batches, as the torch reader and DistributedSampler do.
        policy = (LastBatchPolicy.DROP if drop_last else
                  LastBatchPolicy.FILL if self.world_size > 1 else LastBatchPolicy.PARTIAL)
        self.iterator = DALIGenericIterator(
            self.pipeline, ["frames", "meta"], reader_name="Reader", auto_reset=True,
            last_batch_policy=policy,
            prepare_first_batch=False,
        )

    @property
    def samples(self) -> int:
        """Clips this rank reads per epoch (DALI's contiguous shard ``rank`` of ``world_size``)."""
        n = self.shards.samples
        return n * (self.rank + 1) // self.world_size - n * self.rank // self.world_size

    def __len__(self) -> int:
        return len(self.iterator)  # DALI's count for this rank's shard and last-batch policy

    def __iter__(self) -> Iterator[Batch]:
        it = iter(self.iterator)
        while True:
            try:
                out = next(it)
            except StopIteration:
                return
            except RuntimeError as exc:
                raise self._data_error(exc) from exc
            data = out[0]
            frames = data["frames"]
            metas = [json.loads(m.cpu().numpy().tobytes().decode()) for m in data["meta"]]
            yield frames, metas

    def _data_error(self, exc: Exception) -> DataError:
        """A DALI failure as DataError naming the shard it mentions (DALI names samples 'shard.tar:offset:name')."""
        text = str(exc)
        names = [str(t) for t in self.shards.tars if f"{t}:" in text or f"{t.name}:" in text]
        name = names[0] if names else f"{self.shards.root / self.shards.split}/*.tar"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        after = lines[lines.index("encountered:") + 1 :] if "encountered:" in lines else lines
        detail = after[0] if after else repr(exc)
        return DataError(f"{name}: DALI could not read/decode the shard ({detail}); {_REBUILD}")


def dali_probe(shards: ShardSet, device: Literal["cpu", "gpu"], device_id: int | None = None) -> str | None:
    """Decode the first clip of ``shards`` with DALI on ``device``; None if that works, else the error text."""
    if device == "gpu" and device_id is None:
        device_id = torch.cuda.current_device()
    try:
        pipe = _dali_pipeline(shards, 1, device, device_id, num_threads=1, shuffle=False, seed=0, rank=0,
                              world_size=1, shuffle_buffer=1, tars=shards.tars[:1])
        pipe.build()
        frames, _ = pipe.run()
        shape = tuple(frames.as_tensor().shape())
        expect = (1, shards.frames, 3, shards.height, shards.width)
        if shards.frames is not None and shape != expect:
            return f"DALI decoded {shape}, expected {expect}"
        del pipe
    except Exception as exc:  # noqa: BLE001 - any DALI failure means: do not use DALI
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        return next((ln for ln in lines if "not supported" in ln or "ailed" in ln), lines[-1] if lines else repr(exc))
    return None


Backend = Literal["auto", "dali", "torch"]


def make_loader(
    shards_dir: str | os.PathLike[str],
    split: str,
    batch_size: int,
    backend: Backend = "auto",
    shuffle: bool = False,
    seed: int = 0,
    *,
    device: DaliDevice = "auto",
    num_workers: int = 0,
    num_threads: int = 2,
    rank: int | None = None,
    world_size: int | None = None,
    drop_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> TorchClipLoader | DaliClipLoader:
    """A clip loader over ``<shards_dir>/<split>``, logging which backend it chose.

    ``backend="auto"`` uses :class:`DaliClipLoader` when DALI imports and can decode the
    shards on ``device`` (checked by decoding one clip), else :class:`TorchClipLoader`
    (``num_workers`` processes; frames moved to the GPU when ``device`` resolves to it).
    ``"dali"``/``"torch"`` force one (ParamError if DALI cannot be used).
    """
    if backend not in ("auto", "dali", "torch"):
        raise ParamError(f"loader backend must be 'auto', 'dali' or 'torch', got {backend!r}")
    dev = _resolve_device(device)
    common = {"shuffle": shuffle, "seed": seed, "rank": rank, "world_size": world_size, "drop_last": drop_last,
              "dtype": dtype}
    if backend in ("auto", "dali"):
        shards = open_split(shards_dir, split)
        reason = dali_import_error() or dali_codec_error(shards.codec, shards.pix_fmt, shards.crf, dev)
        if reason is None:
            reason = dali_probe(shards, dev)
        if reason is None:
            log.info("data loader: DALI on %s for %s/%s (%d clips)", dev, shards_dir, split, shards.samples)
            return DaliClipLoader(shards_dir, split, batch_size, device=dev, num_threads=num_threads,
                                  check=False, **common)
        if backend == "dali":
            raise ParamError(f"loader backend 'dali' cannot read {shards_dir}/{split} on {dev}: {reason}; "
                             "use backend 'torch' or 'auto'")
        log.info("data loader: torch/PyAV for %s/%s (DALI not used: %s)", shards_dir, split, reason)
    else:
        log.info("data loader: torch/PyAV for %s/%s", shards_dir, split)
    return TorchClipLoader(shards_dir, split, batch_size, num_workers=num_workers,
                           device="cuda" if dev == "gpu" else "cpu", **common)
