"""The NVIDIA DALI clip reader: :class:`DaliClipLoader` - ``fn.readers.webdataset`` (with the
``.idx`` files) + ``fn.decoders.video`` from memory, on the GPU (``device="mixed"``, NVDEC) when one
is present, else on the CPU. DALI 2.4's CPU video decoder only handles VP8/VP9/MJPEG - for H.264 it
fails with "Codec 27 (h264) is not supported by the CPU variant of this operator" - so on CPU it
needs shards written with ``shards.codec: libvpx-vp9``. NVDEC needs 4:2:0 streams
(``shards.pix_fmt: yuv420p``) and cannot decode x264's lossless profile. This is the only module
that imports ``nvidia.dali``, and only inside functions, so the package imports without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from gimbal.data.loader.index import _REBUILD, Batch, ShardSet, _check_batchable, _check_dtype, _dist_rank, open_split
from gimbal.errors import DataError, ParamError
from gimbal.runtime import resolve_device

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


def dali_device(device: str | torch.device) -> Literal["cpu", "gpu"]:
    """DALI's name (``cpu`` | ``gpu``) for a device spec of :func:`gimbal.runtime.resolve_device`
    (``auto | cpu | cuda | cuda:N``; ``auto`` is the GPU when one is visible)."""
    return "gpu" if resolve_device(device, "loader device").type == "cuda" else "cpu"


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

    ``device="cuda"`` (or ``cuda:N``) decodes with NVDEC (``fn.decoders.video(device="mixed")``) into GPU
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
        device: str | torch.device = "auto",
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
        self.device = dali_device(device)
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
