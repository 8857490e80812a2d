"""Video reading/writing with PyAV (libav* bindings; frames as uint8 RGB arrays).

Shared by every data stage so that there is one place that knows about containers,
codecs and pixel formats. Lossless intermediate clips use FFV1 in Matroska.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from gimbal.errors import DataError
from gimbal.io import atomic_path

#: libavcodec encoder threads: a constant, not the machine's core count, so that outputs do not depend on the machine
ENCODE_THREADS = 4
#: x264's instruction sets on x86-64, pinned (x264.h ``X264_CPU_*`` bits): MMX, MMX2, SSE, SSE2, SSE3, SSSE3,
#: SSE4.1, SSE4.2, 64-byte cache lines, fast SSE2. x264 picks its assembly by the CPU it finds, and its kernels
#: from SSSE3 on give other bytes than its SSE2 and C ones; pinned to x86-64-v2 (which numpy 2 requires anyway),
#: every x86-64 CPU runs the same kernels. Measured: identical bytes with SSE4.2, AVX2 and AVX-512 kernels.
X264_ASM_X86_64 = (1 | 2 | 4 | 8 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8) | 1 << 18 | 1 << 20


def x264_params() -> str:
    """``x264-params`` of every H.264 encode: no macroblock tree (it reads uninitialised memory through
    PyAV/x264, so outputs differ run to run) and, on x86-64, the pinned :data:`X264_ASM_X86_64`."""
    params = "mbtree=0"
    if platform.machine().lower() in ("x86_64", "amd64"):
        params += f":asm={X264_ASM_X86_64}"
    return params


#: frames a whole file may decode short of what its header claims (a duration rounded to the millisecond, a last
#: frame's duration left out); any larger shortfall is a truncated file
LENGTH_SLACK_FRAMES = 2
#: containers whose duration is a header field (others, e.g. raw H.264, have ffmpeg estimate it from the bitrate)
_HEADER_DURATION_FORMATS = ("matroska", "webm", "mov", "mp4", "avi", "flv", "asf")


@dataclass(frozen=True)
class VideoInfo:
    """Basic properties of a video stream: frames per second, size in pixels, frame count."""

    fps: float
    width: int
    height: int
    frames: int


def _open(path: Path, fix: str) -> av.container.InputContainer:
    if not path.is_file():
        raise DataError(f"{path}: video file not found; {fix}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise DataError(f"{path}: not a readable video ({exc}); {fix}") from exc
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: contains no video stream; {fix}")
    return container


def iter_frames(path: str | os.PathLike[str], fix: str = "delete it and re-create it") -> Iterator[tuple[np.ndarray, float]]:
    """Stream a video once, yielding ``(frame (H, W, 3) uint8 RGB, stream fps)`` per frame.

    Memory stays at one frame, whatever the length of the video. Raises :class:`DataError`
    naming the file (and ending with ``fix``, how to repair it) on open or decode failure.
    """
    path = Path(path)
    with _open(path, fix) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        i = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24"), rate
                i += 1
        except av.error.FFmpegError as exc:
            raise DataError(f"{path}: corrupt video at frame {i} ({exc}); {fix}") from exc


def probe(path: str | os.PathLike[str], count: bool = True) -> VideoInfo:
    """Return :class:`VideoInfo` of the first video stream.

    With ``count=True`` frames are counted by decoding (exact; containers often lie),
    which also detects truncated/corrupt files.
    """
    path = Path(path)
    container = _open(path, "delete it and re-fetch")
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        n = stream.frames
        if count:
            n = 0
            try:
                for _ in container.decode(stream):
                    n += 1
            except av.error.FFmpegError as exc:
                raise DataError(f"{path}: corrupt video after {n} frames ({exc}); delete it and re-fetch") from exc
        if n == 0:
            raise DataError(f"{path}: no decodable frames; the file is empty or corrupt")
        return VideoInfo(fps=float(rate), width=stream.codec_context.width, height=stream.codec_context.height, frames=n)
    finally:
        container.close()


def _clock(text: str) -> float | None:
    """``'HH:MM:SS.fff'`` (Matroska's per-track DURATION tag) -> seconds; None if malformed."""
    parts = text.strip().split(":")
    try:
        return sum(float(p) * 60**i for i, p in enumerate(reversed(parts))) if len(parts) <= 3 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class DeclaredLength:
    """The length a container's header claims for its first video stream (:func:`declared_length`).

    Attributes:
        frames: claimed frame count: a count, or a duration in s x the frame rate (so possibly fractional).
        basis: where the claim comes from, for messages (``"120 frames"``, ``"track duration 5.00 s x 24 fps"``).
    """

    frames: float
    basis: str


def _tag(metadata: dict[str, str], name: str) -> str | None:
    """Value of the stream tag ``name`` (Matroska statistics tags may carry a language: ``NAME-eng``)."""
    for key, value in metadata.items():
        if key.upper() == name or key.upper().startswith(name + "-"):
            return value
    return None


def _positive(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _beyond_video_s(container: av.container.InputContainer, video: int) -> float:
    """Seconds the other streams (audio, subtitles) span before and after video stream ``video``, from the
    demuxed packet timestamps (no decoding); 0 when the video has no timed packets."""
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    try:
        for packet in container.demux():
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.time_base is None:
                continue
            i = packet.stream.index
            t0 = float(ts * packet.time_base)
            t1 = float((ts + (packet.duration or 0)) * packet.time_base)
            starts[i], ends[i] = min(t0, starts.get(i, t0)), max(t1, ends.get(i, t1))
    except av.error.FFmpegError:  # a cut file ends in a partial packet: what was read counts
        pass
    if video not in ends:
        return 0.0
    return max(0.0, starts[video] - min(starts.values())) + max(0.0, max(ends.values()) - ends[video])


def _declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream
                      ) -> tuple[float, str] | None:
    """``(seconds, what)`` the header claims for ``stream``: its duration, its ``DURATION`` tag, its byte size /
    bitrate tags (mkvmerge), else the container duration less what other streams span beyond the video."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base), "stream duration"
    seconds = _clock(_tag(stream.metadata, "DURATION") or "")
    if seconds:
        return seconds, "track duration"
    size, bps = _positive(_tag(stream.metadata, "NUMBER_OF_BYTES")), _positive(_tag(stream.metadata, "BPS"))
    if size and bps:
        return 8 * size / bps, "track bytes / bitrate"
    if container.duration and set(container.format.name.split(",")) & set(_HEADER_DURATION_FORMATS):
        seconds = container.duration / av.time_base
        if len(container.streams) > 1:  # audio may outlast the video: the container spans both
            seconds -= _beyond_video_s(container, stream.index)
        return seconds, "container duration"
    return None


def declared_length(path: str | os.PathLike[str]) -> DeclaredLength | None:
    """The length the header of ``path`` claims for its first video stream, without decoding it.

    The stream's frame count (mp4; Matroska's ``NUMBER_OF_FRAMES`` tag), else its duration x frame rate:
    the stream duration, the ``DURATION`` tag (Matroska/WebM written by ffmpeg), the ``NUMBER_OF_BYTES`` /
    ``BPS`` tags, or the container duration less what audio spans beyond the video. ``None`` for a file
    that does not open, has no video stream (e.g. an audio track) or claims nothing. Compared with what
    decodes, this finds truncated files whose header was written whole.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError):
        return None
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        count = int(stream.frames or 0) or int(_positive(_tag(stream.metadata, "NUMBER_OF_FRAMES")) or 0)
        if count > 0:
            return DeclaredLength(count, f"{count} frames")
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        found = _declared_seconds(container, stream) if fps > 0 else None
        if found is None:
            return None
        seconds, what = found
        return DeclaredLength(seconds * fps, f"{what} {seconds:.2f} s x {fps:g} fps")


def read_frames(
    path: str | os.PathLike[str], start: int = 0, count: int | None = None
) -> np.ndarray:
    """Decode frames ``[start, start + count)`` as an RGB array ``(T, H, W, 3)`` uint8.

    Raises :class:`DataError` naming the file if it is missing, corrupt, or shorter than
    requested.
    """
    path = Path(path)
    frames: list[np.ndarray] = []
    for i, (frame, _fps) in enumerate(iter_frames(path)):
        if i >= start:
            frames.append(frame)
            if count is not None and len(frames) == count:
                break
    if count is not None and len(frames) < count:
        raise DataError(f"{path}: expected {count} frames from frame {start}, got {len(frames)}; the file is truncated")
    if not frames:
        raise DataError(f"{path}: no frames from frame {start}")
    return np.stack(frames)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def frames_sha256(frames: np.ndarray | Iterable[np.ndarray]) -> str:
    """Hex sha256 of decoded frames: their raw uint8 RGB bytes in order, ``sha256(frames.tobytes())`` of a
    ``(T, H, W, 3)`` array. Whatever the container or codec, the same pixels give the same hash."""
    digest = hashlib.sha256()
    for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise DataError(f"frames_sha256: frames must be uint8, got {frame.dtype}")
        digest.update(np.ascontiguousarray(frame))
    return digest.hexdigest()


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float,
    codec: str = "ffv1",
    crf: int | None = None,
) -> None:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB to ``path`` atomically.

    ``codec='ffv1'`` (Matroska) is bit-exact lossless (pixel format ``bgr0``);
    ``codec='libx264'`` writes H.264 yuv444p at constant rate factor ``crf`` (0 = lossless
    in YUV, ~10-18 = near-lossless), readable by DALI and PyAV.
    """
    path = Path(path)
    opts: dict[str, str] = {}
    if codec == "ffv1":
        pix_fmt = "bgr0"
    else:
        pix_fmt = "yuv444p" if codec in ("libx264", "libx265") else "yuv420p"
        opts = {"crf": str(crf if crf is not None else 0), "preset": "medium"}
        if codec == "libx264":
            opts["g"] = str(len(frames))
            opts["x264-params"] = x264_params()
    with atomic_path(path) as tmp:
        encode_frames(str(tmp), frames, fps, codec, pix_fmt, opts, name=str(path))


def encode_frames(
    target: str | BinaryIO,
    frames: np.ndarray,
    fps: float,
    codec: str,
    pix_fmt: str,
    options: dict[str, str],
    container_format: str | None = None,
    name: str = "<memory>",
) -> None:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB with PyAV into ``target`` (a path or a binary file object).

    ``options`` are the codec's private options; ``container_format`` is needed for file
    objects (e.g. ``"mp4"``). Raises :class:`DataError` naming ``name`` for malformed frames.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError(f"{name}: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    # Byte-stable output (docs/environment.md): "bitexact" stops the Matroska muxer from writing random
    # segment/track UIDs and both muxer and encoder from writing their libav version strings; the
    # thread count is fixed because x264's sliced threads cut each frame into one slice per thread.
    with av.open(target, mode="w", format=container_format, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        stream.codec_context.thread_count = ENCODE_THREADS
        stream.options = options
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
