"""Pack interpolated clips into WebDataset tar shards (+ NVIDIA DALI index files).

Layout written by :func:`build_shards` (stage ``shards``, docs/protocol.md)::

    <out_dir>/<split>/index.json            codec settings; for its split: samples, frames, width,
                                            height, bytes and every shard (tar, idx, samples,
                                            bytes, sha256 of the tar and of the idx, keys,
                                            crc32 of each clip's video)
    <out_dir>/<split>/shard-%05d.tar        WebDataset tars, ``clips_per_shard`` samples each
    <out_dir>/<split>/shard-%05d.idx        DALI ``fn.readers.webdataset`` index of each tar

with ``<split>`` one of ``train``, ``val``, ``test``. Each split is self-contained (its own index), so DVC can
track the three folders as separate outputs and the training stages depend on ``train`` and ``val`` only.

Each sample is ``<key>.<ext>`` (the clip, ``(T, H, W, 3)`` RGB re-encoded; ``ext`` is
``mp4`` for H.264/HEVC/VP9, ``mkv`` for FFV1) and ``<key>.json`` (meta: source video id,
clip index, fps, width, height, frames, split, gt_frame, ...). ``key`` is the clip id.

Which codec a reader can decode (measured with DALI 2.4, see ``gimbal.data.loader``):

* PyAV (torch reader): all of them.
* DALI CPU (``fn.decoders.video(device="cpu")``): VP8/VP9/MJPEG only, so ``libvpx-vp9``.
  ``libvpx-vp9`` at ``crf=0`` is lossless in YUV (4:4:4 with ``pix_fmt=yuv444p``).
* DALI GPU (NVDEC): H.264 (not the lossless "High 4:4:4 Predictive" profile x264 uses at
  crf 0), HEVC, VP9 - in 4:2:0 only (``pix_fmt=yuv420p``).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import webdataset as wds
from tqdm import tqdm

from gimbal.data.clips import SPLITS
from gimbal.data.video import encode_frames, frames_sha256, read_frames, sha256_file
from gimbal.errors import DataError, DiskFullError, ParamError
from gimbal.io import atomic_dirs_inside, read_json, read_records, write_json_atomic

log = logging.getLogger(__name__)

#: codec name (PyAV/ffmpeg encoder) -> (sample extension in the tar, container format)
CODECS: dict[str, tuple[str, str]] = {
    "libx264": ("mp4", "mp4"),
    "libx265": ("mp4", "mp4"),
    "libvpx-vp9": ("mp4", "mp4"),
    "ffv1": ("mkv", "matroska"),
}
PIX_FMTS = ("yuv444p", "yuv420p")
INDEX_FORMAT = 3  # 2: per-shard sha256 (tar and idx), verified by every reader; 3: one index per split
#: fields copied from each clip of ``data/interp/index.json`` into the sample's json meta
_META_FIELDS = ("id", "video", "kind", "index", "split", "start_frame", "fps", "source_fps", "factor", "gt_frame")
_REQUIRED_FIELDS = ("id", "video", "index", "split", "file", "fps")


@dataclass(frozen=True)
class ShardConfig:
    """How clips are re-encoded and grouped (params group ``shards``).

    ``crf=0`` means lossless in YUV for every codec (x264 crf 0, x265 ``lossless=1``,
    VP9 ``lossless=1``); FFV1 is always bit-exact RGB and ignores ``crf``/``pix_fmt``.
    """

    clips_per_shard: int = 4
    codec: str = "libvpx-vp9"
    crf: int = 0
    pix_fmt: str = "yuv444p"
    out_dir: str = "data/shards"

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ParamError(f"params: 'shards.codec' must be one of {sorted(CODECS)}, got {self.codec!r}")
        if self.pix_fmt not in PIX_FMTS:
            raise ParamError(f"params: 'shards.pix_fmt' must be one of {list(PIX_FMTS)}, got {self.pix_fmt!r}")
        if not 0 <= self.crf <= 51:
            raise ParamError(f"params: 'shards.crf' must be in [0, 51] (0 = lossless), got {self.crf}")
        if self.clips_per_shard < 1:
            raise ParamError(f"params: 'shards.clips_per_shard' must be >= 1, got {self.clips_per_shard}")


    @property
    def ext(self) -> str:
        """Extension of the video component of each sample (``mp4`` or ``mkv``)."""
        return CODECS[self.codec][0]


def encode_clip(frames: np.ndarray, fps: float, cfg: ShardConfig) -> bytes:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB into an in-memory video file.

    One key frame (GOP = T): clips are always decoded whole. Encoded in memory (shards need
    bytes) with the codec options shards allow (VP9/x265 lossless, chroma subsampling).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError(f"clip frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w = frames.shape[:3]
    if cfg.codec != "ffv1" and cfg.pix_fmt == "yuv420p" and (h % 2 or w % 2):
        raise DataError(f"clip size {w}x{h} is odd; yuv420p needs even sizes (set shards.pix_fmt: yuv444p)")
    opts: dict[str, str] = {"g": str(t)}
    if cfg.codec == "libx264":
        # mbtree reads uninitialised memory through PyAV/x264: without this, outputs differ run to run
        opts |= {"crf": str(cfg.crf), "preset": "medium", "x264-params": "mbtree=0"}
    elif cfg.codec == "libx265":
        # fixed frame threads (x265's default follows the core count) and no info SEI: the same bytes on any machine
        x265 = "log-level=error:frame-threads=2:info=0:" + ("lossless=1" if cfg.crf == 0 else f"crf={cfg.crf}")
        opts |= {"x265-params": x265, "preset": "medium"}
    elif cfg.codec == "libvpx-vp9":
        opts |= {"lossless": "1"} if cfg.crf == 0 else {"crf": str(cfg.crf), "b": "0"}
        opts |= {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}  # ~3x faster than "good", same quality
    buf = io.BytesIO()
    encode_frames(buf, frames, fps, cfg.codec, "bgr0" if cfg.codec == "ffv1" else cfg.pix_fmt, opts,
                  container_format=CODECS[cfg.codec][1], name="clip")
    return buf.getvalue()


def decode_clip(data: bytes, source: str = "<memory>", threads: int = 1) -> np.ndarray:
    """Decode an in-memory video (as written by :func:`encode_clip`) to ``(T, H, W, 3)`` uint8 RGB.

    ``threads`` is the libavcodec thread count (keep 1 inside DataLoader workers).
    Raises :class:`DataError` naming ``source`` if the bytes are not a decodable video.
    """
    frames: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise DataError(f"{source}: contains no video stream; run `dvc repro shards`")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = threads
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, ValueError) as exc:
        raise DataError(f"{source}: corrupt video ({exc}); rebuild the shards with `dvc repro shards`") from exc
    if not frames:
        raise DataError(f"{source}: no decodable frames; rebuild the shards with `dvc repro shards`")
    return np.stack(frames)


def split_key(name: str) -> tuple[str, str]:
    """``'dir/key.ext.more'`` -> ``('dir/key', 'ext.more')``: the WebDataset/DALI rule (first dot of the basename)."""
    dot = name.find(".", name.rfind("/") + 1)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1 :])


def write_dali_index(tar_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]) -> int:
    """Write the DALI ``fn.readers.webdataset`` index (format ``v1.2``) of ``tar_path``; return the sample count.

    Same format as DALI's ``wds2idx`` tool: a line ``v1.2 <samples>``, then one line per sample
    of ``<ext> <data offset> <size> <member name>`` groups. Written with :mod:`tarfile` because
    DALI is an optional dependency here and ``wds2idx`` shells out to GNU tar.
    """
    samples: list[list[str]] = []
    last = None
    with tarfile.open(tar_path, mode="r:") as tar:
        for member in tar:
            if not member.isreg():
                continue
            key, ext = split_key(member.name)
            if not key or key.endswith("/"):  # hidden files, as wds2idx
                continue
            entry = f"{ext} {member.offset_data} {member.size} {member.name}"
            if key != last:
                samples.append([entry])
                last = key
            else:
                samples[-1].append(entry)
    if not samples:
        raise DataError(f"{tar_path}: empty shard; cannot index it")
    lines = [f"v1.2 {len(samples)}"] + [" ".join(s) for s in samples]
    Path(idx_path).write_text("\n".join(lines) + "\n")
    return len(samples)


def _sample_key(clip_id: str) -> str:
    """Tar member key of a clip: dots and slashes would split the key in WebDataset/DALI."""
    return clip_id.replace("/", "_").replace(".", "_")


def _load_clips(interp_index: Path) -> list[dict[str, Any]]:
    _, clips = read_records(interp_index, "clips", _REQUIRED_FIELDS, "run `dvc repro interpolate`",
                            what="interpolated clip index")
    keys: set[str] = set()
    for clip in clips:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(clip["split"])):
            raise DataError(f"{interp_index}: clip {clip['id']!r} has invalid split {clip['split']!r}")
        key = _sample_key(str(clip["id"]))
        if key in keys:
            raise DataError(f"{interp_index}: duplicate clip id {clip['id']!r}; clip ids must be unique")
        keys.add(key)
        if not isinstance(clip.get("frames_sha256"), str):
            raise DataError(f"{interp_index}: clip {clip['id']!r} has no frames_sha256 (written before clips were "
                            "hashed), so its file cannot be checked; re-run `dvc repro interpolate -f`")
    return clips


def _uniform(values: Sequence[int]) -> int | None:
    return values[0] if values and all(v == values[0] for v in values) else None


def build_shards(
    interp_index: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: ShardConfig = ShardConfig(),
    progress: bool = True,
) -> dict[str, Any]:
    """Pack every clip listed in ``interp_index`` into tar shards under ``out_dir``; return the shard index
    (``splits``: every split; each ``<out_dir>/<split>/index.json`` holds the same with its split only).

    Clips keep their order in ``interp_index`` (the order readers see without shuffling).
    Each clip is decoded and checked against its index entry (frame count, size, and
    ``frames_sha256``: a damaged FFV1 file may decode without error to wrong pixels), and each
    encoded clip is decoded once to check its frame count and size. Each ``<out_dir>/<split>`` is built in a temp
    folder inside itself and replaced once every split is complete (:func:`gimbal.io.atomic_dirs_inside`): on any
    failure the previous content is left untouched, and the temp of a killed run goes with the folder when DVC
    removes the stage's outputs (before a rerun or a restore from its run cache). A full disk is one
    :class:`DiskFullError` naming the file being written, the free space and the space needed.
    """
    interp_index = Path(interp_index)
    out_dir = Path(out_dir)
    clips = _load_clips(interp_index)
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for clip in clips:
        splits.setdefault(str(clip["split"]), []).append(clip)
    result: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "codec": cfg.codec,
        "crf": cfg.crf,
        "pix_fmt": "bgr0" if cfg.codec == "ffv1" else cfg.pix_fmt,
        "ext": cfg.ext,
        "clips_per_shard": cfg.clips_per_shard,
        "splits": {},
    }
    written = _Written(out_dir, [interp_index.parent / str(c["file"]) for c in clips])
    # `written` outermost: the free space it reports is measured after the temps are removed
    with written, atomic_dirs_inside([out_dir / split for split in splits]) as temps, \
            tqdm(total=len(clips), desc="shards", unit="clip", disable=not progress) as bar:
        for split, members in splits.items():
            tmp = temps[out_dir / split]
            shards: list[dict[str, Any]] = []
            frames, widths, heights = [], [], []
            for start in range(0, len(members), cfg.clips_per_shard):
                name = f"shard-{len(shards):05d}"
                keys, crcs = [], []
                written.now(out_dir / split / f"{name}.tar")
                with wds.TarWriter(str(tmp / f"{name}.tar"), encoder=False, mtime=0.0) as writer:
                    for clip in members[start : start + cfg.clips_per_shard]:
                        meta, crc, nbytes = _write_sample(writer, clip, interp_index.parent, cfg, result["pix_fmt"])
                        keys.append(meta["key"])
                        crcs.append(crc)
                        frames.append(meta["frames"])
                        widths.append(meta["width"])
                        heights.append(meta["height"])
                        written.clip(nbytes)
                        bar.update()
                written.now(out_dir / split / f"{name}.idx")
                n = write_dali_index(tmp / f"{name}.tar", tmp / f"{name}.idx")
                assert n == len(keys), f"{split}/{name}.tar: indexed {n} samples, wrote {len(keys)}"
                shards.append(
                    {"tar": f"{split}/{name}.tar", "idx": f"{split}/{name}.idx", "samples": n,
                     "bytes": (tmp / f"{name}.tar").stat().st_size, "sha256": sha256_file(tmp / f"{name}.tar"),
                     "idx_sha256": sha256_file(tmp / f"{name}.idx"), "keys": keys, "crc32": crcs}
                )
            if not members:
                log.warning("split %r has no clips; its shard directory holds only its index", split)
            result["splits"][split] = {
                "samples": len(members),
                "frames": _uniform(frames),
                "width": _uniform(widths),
                "height": _uniform(heights),
                "bytes": sum(s["bytes"] for s in shards),
                "shards": shards,
            }
            written.now(out_dir / split / "index.json")
            write_json_atomic(tmp / "index.json", {**result, "splits": {split: result["splits"][split]}})
    return result


class _Written:
    """Turns a full disk during :func:`build_shards` into one :class:`DiskFullError` naming the file being written
    (its final name, not the temp's), the free space and about how much the whole build needs."""

    def __init__(self, out_dir: Path, inputs: list[Path]) -> None:
        self.out_dir, self.inputs = out_dir, inputs
        self.path: Path | None = None
        self.clips, self.bytes = 0, 0

    def now(self, path: Path) -> None:
        self.path = path

    def clip(self, nbytes: int) -> None:
        self.clips += 1
        self.bytes += nbytes

    def need(self) -> int:
        """Bytes the whole build needs, about: the clips so far scaled to all, else the size of its inputs."""
        if self.clips:
            return round(self.bytes / self.clips * len(self.inputs))
        return sum(p.stat().st_size for p in self.inputs if p.is_file())

    def __enter__(self) -> _Written:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        if full and not isinstance(exc, DiskFullError):
            where = self.out_dir if self.out_dir.exists() else self.out_dir.parent
            free = shutil.disk_usage(where).free if where.exists() else 0
            raise DiskFullError(
                f"no space left on device writing {self.path or self.out_dir} ({free / 1e6:.0f} MB free on its "
                f"device; the shards need about {max(1, round(self.need() / 1e6))} MB, written to a temp folder "
                f"inside each split's folder, removed now); free some space (or set shards.out_dir on another disk) "
                f"and re-run") from None


def _write_sample(
    writer: wds.TarWriter, clip: dict[str, Any], root: Path, cfg: ShardConfig, pix_fmt: str
) -> tuple[dict[str, Any], int, int]:
    """Encode one clip, check it decodes to the same shape, write ``<key>.{ext,json}``.

    Returns the meta, the CRC-32 of the encoded video (recorded in index.json for the readers) and its size.
    """
    path = root / clip["file"]
    fix = "re-run `dvc repro interpolate -f`"
    frames = read_frames(path)
    t, h, w = frames.shape[:3]
    if "frames" in clip and clip["frames"] != t:
        raise DataError(f"{path}: has {t} frames, index says {clip['frames']}; {fix}")
    for field, actual in (("width", w), ("height", h)):
        if field in clip and clip[field] != actual:
            raise DataError(f"{path}: {field} is {actual}, index says {clip[field]}; {fix}")
    if frames_sha256(frames) != clip["frames_sha256"]:
        raise DataError(f"{path}: decoded frames do not match the sha256 interpolate recorded (the file is corrupt "
                        f"or was modified); {fix}")
    data = encode_clip(frames, float(clip["fps"]), cfg)
    decoded = decode_clip(data, source=f"{path} re-encoded with {cfg.codec}")
    if decoded.shape != frames.shape:
        raise DataError(f"{path}: re-encoding with {cfg.codec} gave {decoded.shape}, expected {frames.shape}")
    key = _sample_key(str(clip["id"]))
    meta = {f: clip[f] for f in _META_FIELDS if f in clip}
    meta |= {"key": key, "frames": t, "width": w, "height": h, "codec": cfg.codec, "crf": cfg.crf, "pix_fmt": pix_fmt}
    meta.setdefault("gt_frame", t // 2)
    writer.write({"__key__": key, cfg.ext: data, "json": json.dumps(meta, sort_keys=True).encode()})
    return meta, zlib.crc32(data), len(data)


def read_shard_index(shards_dir: str | os.PathLike[str], split: str) -> dict[str, Any]:
    """Read ``<shards_dir>/<split>/index.json`` written by :func:`build_shards` (``splits`` holds ``split`` only;
    shard paths are relative to ``shards_dir``).

    Raises :class:`DataError` (suggesting ``dvc repro shards``) if the directory or the index
    is missing, unreadable, or of another format version.
    """
    shards_dir = Path(shards_dir)
    path = shards_dir / split / "index.json"
    if not path.is_file():
        raise DataError(f"{path}: shard index of split {split!r} not found; build the shards with `dvc repro shards`"
                        + ("" if split in SPLITS else f" (splits: {', '.join(SPLITS)})"))
    try:
        index = read_json(path)
    except DataError as exc:
        raise DataError(f"{exc}; rebuild the shards with `dvc repro shards`") from exc
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or split not in index.get("splits", {}):
        raise DataError(f"{path}: not a gimbal shard index of format {INDEX_FORMAT} (older gimbal versions wrote "
                        "format 1 without checksums, format 2 with one index for all splits); rebuild the shards with `dvc repro shards -f`")
    return index


def _clip_metas(shards_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The json meta of every clip of ``split`` in shard order (:class:`DataError` naming a shard missing one)."""
    shards_dir = Path(shards_dir)
    index = read_shard_index(shards_dir, split)
    metas: list[dict[str, Any]] = []
    for shard in index["splits"].get(split, {}).get("shards", []):
        with tarfile.open(shards_dir / shard["tar"]) as tar:
            members = {m.name.rsplit(".", 1)[0]: m for m in tar.getmembers() if m.name.endswith(".json")}
            for key in shard["keys"]:
                if key not in members:
                    raise DataError(f"{shards_dir / shard['tar']}: no {key}.json; rebuild with `dvc repro shards`")
                metas.append(json.loads(tar.extractfile(members[key]).read()))  # type: ignore[union-attr]
    return metas


def shard_clip_kinds(shards_dir: str | Path, split: str = "test") -> list[str]:
    """Source kind of every clip of ``split`` in shard order (the order the loaders yield without shuffling).

    Read from each sample's json meta (``kind``, written by the shards stage from the clips
    index); a clip without one (shards built before source kinds existed) is ``"real"``.
    Raises :class:`DataError` naming the shard when a listed sample's meta is missing.
    """
    return [str(meta.get("kind", "real")) for meta in _clip_metas(shards_dir, split)]


def shard_clip_videos(shards_dir: str | Path, split: str = "test") -> list[str]:
    """Source video id of every clip of ``split`` in shard order: each sample's json meta ``video``, copied by the
    shards stage from the clips index (the video the clips stage cut it from). Raises :class:`DataError` naming the
    shard when a sample's meta is missing or names no video."""
    metas = _clip_metas(shards_dir, split)
    missing = [m.get("key", m.get("id", "?")) for m in metas if not isinstance(m.get("video"), str)]
    if missing:
        raise DataError(f"{Path(shards_dir) / split}: clip {missing[0]!r} has no source video in its meta "
                        f"({len(missing)} such clips); rebuild the shards with `dvc repro shards -f`")
    return [str(m["video"]) for m in metas]
