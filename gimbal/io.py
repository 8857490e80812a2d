"""Atomic file output: write to a temp name in the same directory, fsync, rename.

A failed stage therefore never leaves a partial output behind (docs/reliability.md).
Temp names carry their owner, ``.<name>.<pid>-<start>@<host>.<random>.tmp``: a temp left by a
process that was killed (SIGKILL, power loss) is removed by the next write of the same output,
while the temp of a run that is still going (another process, same or other host) is kept.
Folders are built inside themselves (:func:`atomic_dir`, :func:`atomic_dirs_inside`): DVC removes a stage's
output folders, temps included, before it re-runs the stage or restores them from its run cache (where the stage
never runs to sweep them).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gimbal.errors import DataError, DiskFullError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _start_ticks(pid: int) -> int:
    """Start time of process ``pid`` (clock ticks after boot, Linux ``/proc``); 0 if unknown, -1 if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return -1 if Path("/proc/self/stat").is_file() else 0
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22; the command name may contain spaces


def owner_tag() -> str:
    """``<pid>-<start>@<host>``: who owns a temp file; the start time tells a re-used pid apart."""
    return f"{os.getpid()}-{_start_ticks(os.getpid())}@{_host()}"


#: a tagged temp name: ``.<name>.<pid>-<start>@<host>.<anything>.tmp[<ext>]``
_TEMP_RE = re.compile(r"^\..+?\.(\d+)-(\d+)@([A-Za-z0-9-]+)\..*\.tmp(?:\.[^.]*)?$")
#: directories already swept by this process (a killed run's temps cannot appear later)
_SWEPT: set[str] = set()


def _owner_gone(pid: int, start: int, host: str) -> bool:
    """True only when the owner surely no longer runs: same host, and no process ``pid`` with that start time."""
    if host != _host():
        return False  # another machine sharing the filesystem: cannot tell
    now = _start_ticks(pid)
    if now == -1:
        return True
    if now == 0 or start == 0:  # no /proc: fall back to whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    return now != start


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files/folders in ``directory`` (named by :func:`atomic_path`, :func:`atomic_dir`
    or :func:`make_temp_dir`) whose owner process is gone; return what was removed.

    Temps of live processes (a concurrent run), of other hosts, and untagged names are left alone.
    """
    directory = Path(directory)
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in directory.iterdir():
            m = _TEMP_RE.match(entry.name)
            if m is None or not _owner_gone(int(m[1]), int(m[2]), m[3]):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        import logging

        logging.getLogger(__name__).warning("%s: removed %d temp(s) left by killed runs: %s", directory,
                                            len(removed), ", ".join(p.name for p in removed))
    return removed


def _sweep_once(directory: Path) -> None:
    key = os.path.realpath(directory)
    if key not in _SWEPT:
        remove_stale_temps(directory)
        _SWEPT.add(key)


def make_temp_dir(path: str | os.PathLike[str]) -> Path:
    """A fresh private folder ``.<name>.<owner>.<random>.tmp`` beside ``path`` (the caller removes it).

    The first time a process makes a temp in a directory, temps of killed runs there are removed
    (:func:`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp", dir=path.parent))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temp name keeps the extension of ``path`` (or ``suffix``) so tools that infer
    the container from the name (ffmpeg, PyAV) still work. On any exception the temp
    file is removed and ``path`` is left untouched; temps of killed runs are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    ext = suffix if suffix is not None else "".join(path.suffixes[-1:])
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.{owner_tag()}.", suffix=f".tmp{ext}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory inside ``path`` (made if missing); on success it replaces ``path``.

    Any previous content of ``path`` is removed only after the new one is complete. On any exception the temp
    directory is removed (and ``path`` too if it was made for it); those of killed runs are removed on entry.
    See :func:`atomic_dirs_inside`: a temp inside the folder it replaces cannot outlive a killed run under DVC.
    """
    path = Path(path)
    with atomic_dirs_inside([path]) as temps:
        yield temps[path]


@contextlib.contextmanager
def atomic_dirs_inside(paths: list[Path]) -> Iterator[dict[Path, Path]]:
    """Yield a fresh temp directory *inside* each of ``paths`` (``<path>/.<name>.<owner>.<random>.tmp``, the
    folders made if missing); once all are written, each temp replaces its path.

    The temps live inside the folders they replace so that nothing of a killed run (SIGKILL, power loss) can
    outlive it unnoticed: DVC removes a stage's output folders before it runs the stage or restores them from its
    run cache (where the stage itself never runs to sweep its temps), and a rerun outside DVC sweeps them
    (:func:`remove_stale_temps`). On any exception the temps are removed, and so are the folders made for them;
    ``paths`` are left as they were.
    """
    made = sorted({p for path in paths for p in (path, path.parent) if not p.exists()}, key=lambda p: -len(p.parts))
    temps: dict[Path, Path] = {}
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            _sweep_once(path.parent)  # the `.old.tmp` of a swap a kill cut short
            path.mkdir(exist_ok=True)
            temps[path] = make_temp_dir(path / path.name)
        yield temps
        for path, tmp in temps.items():
            os.chmod(tmp, 0o777 & ~_umask())
            old = path.with_name(f".{path.name}.{owner_tag()}.old.tmp")
            os.replace(path, old)
            os.replace(old / tmp.name, path)
            for entry in old.iterdir():  # the temp of a concurrent run (not DVC's: it locks) stays with the folder
                m = _TEMP_RE.match(entry.name)
                if m is not None and not _owner_gone(int(m[1]), int(m[2]), m[3]):
                    with contextlib.suppress(OSError):
                        os.replace(entry, path / entry.name)
            shutil.rmtree(old, ignore_errors=True)
            _fsync_dir(path.parent)
    except BaseException:
        for tmp in temps.values():
            shutil.rmtree(tmp, ignore_errors=True)
        for path in made:
            with contextlib.suppress(OSError):
                path.rmdir()  # only when still empty, deepest first
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically and byte-stably.

    ``torch.save`` to a *path* names the zip archive's root folder after the file, so saving
    through :func:`atomic_path`'s random temp name gave every checkpoint a different md5.
    Through a file object the folder is always ``archive/``: the same ``obj`` gives the same bytes.
    """
    import torch

    with disk_full_named(path, lambda: _tensor_bytes(obj)), atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested dict / list (what ``torch.save`` writes, about)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


@contextlib.contextmanager
def disk_full_named(path: str | os.PathLike[str], need_bytes: Any = None) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into one :class:`DiskFullError` naming the file and the space needed
    (``need_bytes``: an int or a callable giving it). ``OSError(ENOSPC)`` is one; so is the ``RuntimeError`` that
    ``torch.save`` raises on a failed write (``[enforce fail at inline_container.cc]``) when the device has less
    free space than the file needs."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC or isinstance(exc, DiskFullError):
            raise
        raise DiskFullError(_disk_full_message(exc.filename or path, _bytes(need_bytes))) from None
    except RuntimeError as exc:
        text = str(exc)
        if "inline_container" not in text and "file write failed" not in text:
            raise
        need = _bytes(need_bytes)
        free = shutil.disk_usage(Path(path).parent if Path(path).parent.exists() else ".").free
        if need is not None and free >= need:
            raise
        raise DiskFullError(_disk_full_message(path, need)) from None


def _bytes(need_bytes: Any) -> int | None:
    return need_bytes() if callable(need_bytes) else need_bytes


def _disk_full_message(path: Any, need: int | None) -> str:
    size = f"; needs about {max(1, round(need / 1e6))} MB" if need else ""
    return f"no space left on device writing {path}{size}; free some space (or move the repo) and re-run"


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as pretty JSON (sorted keys, trailing newline) to ``path`` atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising :class:`gimbal.errors.DataError` naming the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; run the stage that produces it (dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc}); delete it and re-run dvc repro") from exc


def read_records(
    path: str | os.PathLike[str], key: str, required: tuple[str, ...], fix: str, what: str = "index"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a stage index ``{key: [record, ...], ...}`` and check every record has ``required`` fields.

    Returns ``(document, records)``. Every error is a :class:`gimbal.errors.DataError` that names
    the file (and the record) and ends with ``fix`` (how to rebuild it, e.g. "re-run the clips stage").
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found; {fix}")
    try:
        doc = read_json(path)
    except DataError as exc:
        raise DataError(f"{exc}; {fix}") from exc
    records = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected an object with a '{key}' list; {fix}")
    for i, rec in enumerate(records):
        missing = [f for f in required if not isinstance(rec, dict) or f not in rec]
        if missing:
            raise DataError(f"{path}: {key}[{i}] lacks {missing}; {fix}")
    return doc, records
