"""Cut fetched source videos into fixed-length clips and split them train/test by video.

DESIGN.md section 1, stage ``clips``: clip ``k`` of a video holds original frames
``[k * (length + skip), k * (length + skip) + length)``; a trailing partial clip is
dropped. The train/test split is made over *source videos* (never over clips), so no
scene appears on both sides. Clips are stored losslessly (FFV1 in Matroska) so the
interpolation stage sees the decoded source frames bit-exactly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gimbal.data.video import iter_frames, sha256_file, write_video
from gimbal.errors import DataError, ParamError
from gimbal.io import atomic_dir, read_records, write_json_atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
_REFETCH = "re-run the fetch stage (dvc repro fetch)"


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


def split_videos(video_ids: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each source video to ``'train'`` or ``'test'``.

    A seeded shuffle (numpy ``default_rng(seed)``) of the *sorted* ids, so the result does
    not depend on manifest order; ``round(test_fraction * n)`` videos, clamped to
    ``[1, n - 1]``, go to test. With a single video everything is train (and a warning).
    """
    check_clip_params(3, 0, test_fraction)
    ids = sorted(set(video_ids))
    if len(ids) != len(video_ids):
        raise DataError(f"duplicate video ids in {sorted(video_ids)}; {_REFETCH}")
    if len(ids) < 2:
        log.warning("only %d source video(s): all clips go to train, the test split is empty", len(ids))
        return {vid: "train" for vid in ids}
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test = min(max(1, round(test_fraction * len(ids))), len(ids) - 1)
    test = {ids[i] for i in order[:n_test]}
    return {vid: ("test" if vid in test else "train") for vid in ids}


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


def _cut_video(video: dict[str, Any], stage: Path, length: int, skip: int, verify_sha256: bool) -> list[dict[str, Any]]:
    """Cut one video into ``stage/<id>_<k>.mkv``; return its clip entries (without split)."""
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
    for i, (frame, stream_fps) in enumerate(iter_frames(path, _REFETCH)):
        n = i + 1
        if fps <= 0:
            fps = stream_fps
        if i % period >= length:
            continue
        if buf and frame.shape != buf[0].shape:
            raise DataError(f"{path}: frame size changes at frame {i}; {_REFETCH}")
        buf.append(frame)
        if len(buf) == length:
            k = i // period
            cid = f"{video['id']}_{k:03d}"
            if fps <= 0:
                raise DataError(f"{path}: unknown frame rate (no 'fps' in the manifest or the stream); {_REFETCH}")
            write_video(stage / f"{cid}.mkv", np.stack(buf), fps, codec="ffv1")
            h, w = frame.shape[:2]
            clips.append({"id": cid, "video": video["id"], "index": k, "start_frame": k * period,
                          "frames": length, "fps": fps, "width": w, "height": h})
            buf = []
    if n == 0:
        raise DataError(f"{path}: no decodable frames; {_REFETCH}")
    expected = video.get("frames")
    if isinstance(expected, int) and n < expected:
        raise DataError(f"{path}: decoded {n} frames but the manifest says {expected}; "
                        f"the file is truncated; {_REFETCH}")
    if not clips:
        log.warning("%s: only %d frames, shorter than one clip of %d frames; skipped", path, n, length)
    return clips


def cut_clips(
    manifest_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    length: int = 31,
    skip: int = 500,
    test_fraction: float = 0.25,
    seed: int = 0,
    verify_sha256: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut every video of the manifest into clips and write ``out_dir`` atomically.

    Layout: ``out_dir/{train,test}/<video>_<k:03d>.mkv`` (FFV1, bit-exact frames
    ``(length, H, W, 3)``) and ``out_dir/index.json`` =
    ``{"clips": [{id, video, index, split, file, start_frame, frames, fps, width, height}]}``
    with ``file`` relative to ``out_dir``. Each video is decoded once, streaming. Videos
    shorter than one clip are skipped with a warning; the split (see :func:`split_videos`)
    is over the videos that yield at least one clip. Returns the index.

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
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        stage = tmp / ".stage"
        stage.mkdir()
        per_video: dict[str, list[dict[str, Any]]] = {}
        bar = tqdm(videos, desc="clips", unit="video", disable=not progress)
        for video in bar:
            bar.set_postfix_str(video["id"])
            clips = _cut_video(video, stage, length, skip, verify_sha256)
            if clips:
                per_video[video["id"]] = clips
        if not per_video:
            raise DataError(f"{manifest_path}: no video has {length} frames (clips.length); "
                            "lower clips.length or add longer sources")
        split = split_videos(sorted(per_video), test_fraction, seed)
        for name in SPLITS:
            (tmp / name).mkdir()
        entries: list[dict[str, Any]] = []
        for vid in sorted(per_video):
            for clip in per_video[vid]:
                rel = f"{split[vid]}/{clip['id']}.mkv"
                os.replace(stage / f"{clip['id']}.mkv", tmp / rel)
                entries.append({**clip, "split": split[vid], "file": rel})
        stage.rmdir()
        index = {"clips": entries}
        write_json_atomic(tmp / "index.json", index)
    counts = {s: sum(c["split"] == s for c in entries) for s in SPLITS}
    log.info("%s: %d train / %d test clips from %d videos", out_dir, counts["train"], counts["test"], len(per_video))
    return index

