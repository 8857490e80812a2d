"""Helpers shared by the thin stage CLIs in ``stages/`` and the ``gimbal`` command: one error path for both
(:func:`run_guarded`)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gimbal.errors import GimbalError, ParamError

if TYPE_CHECKING:  # for the annotation only: the config loads torch and every group's module, which
    from gimbal.config import Config  # run_stage imports after argparse's --help (no import circle)

log = logging.getLogger("gimbal")


def stage_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--params`` option (default ``params.yaml``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    parser.add_argument("--debug", action="store_true", help="on an unexpected error, show the traceback")
    return parser


def run_stage(main: Callable[[Config, argparse.Namespace], None], parser: argparse.ArgumentParser,
              uses: Iterable[str]) -> None:
    """Parse args, parse the whole params file once (every group checked: a misspelt key fails before any
    work), run ``main(config, args)`` with the groups ``uses`` readable (see :func:`gimbal.config.load_config`).

    Every failure is one line ``error: ...`` on stderr and a non-zero exit (:func:`run_guarded`, the error path
    the ``gimbal`` command shares): a :class:`GimbalError` exits with status 1 (no traceback spam). SIGTERM (what
    ``timeout``, ``kill`` and batch schedulers send) stops the stage as Ctrl-C does (a training loop saves nothing
    half-written and names the step a rerun resumes from), with one line ``error: stopped by SIGTERM; ...`` and
    status 143.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser.parse_args()

    def body() -> None:
        from gimbal.config import load_config  # imports torch and every group's module: after argparse's --help
        from gimbal.runtime import apply_thread_budget

        apply_thread_budget()
        main(load_config(args.params, uses), args)

    status = run_guarded(body, debug=args.debug,
                         interrupted="interrupted; `dvc repro` resumes from the last checkpoint",
                         terminated="nothing half-written is kept; `dvc repro` reruns the stage (a training resumes "
                                    "from its last checkpoint)",
                         out_of_memory="free memory, or lower the batch size or the crop in params.yaml, and re-run")
    if status:
        sys.exit(status)


EXIT_ERROR = 1
#: a Ctrl-C (SIGINT) exits with 128 + 2, SIGTERM with 128 + 15, as a shell reports a process those signals ended
EXIT_SIGNAL_BASE = 128


def run_guarded(body: Callable[[], int | None], *, debug: bool = False, interrupted: str = "interrupted",
                terminated: str = "nothing half-written is kept", usage_status: int = EXIT_ERROR,
                out_of_memory: str = "free memory or use smaller inputs, and re-run", name: str | None = None) -> int:
    """Run ``body`` and return its exit status (``None``: 0), every failure turned into one line ``error: ...``
    on stderr: the one error path of the stages (:func:`run_stage`) and of the ``gimbal`` command.

    - :class:`GimbalError`: its message; status 1 (a :class:`~gimbal.errors.ParamError`: ``usage_status``).
    - Ctrl-C (SIGINT): the interrupt's own message (a training loop names its step) or ``interrupted``; 130.
    - SIGTERM: stops ``body`` as Ctrl-C does (``finally`` blocks run, temps are removed), ``stopped by SIGTERM;``
      and that message or ``terminated``; 143.
    - ``MemoryError`` (and torch's out-of-memory errors): ``out of memory (...)`` and ``out_of_memory``; 1.
    - ``OSError`` naming a file: the file (a temp by the output it stands for) and the fix for its errno
      (:func:`os_error_message`: full disk, permission, read-only, a directory, ...); 1.
    - Anything else is a bug: ``internal error: <type>: <message>`` and the traceback in a log file
      (``GIMBAL_LOG_DIR``, default the temp directory; ``name`` names it, default the program); 1. With ``debug``
      the exception propagates instead.
    """
    received: list[int] = []
    try:
        with _sigterm_as_interrupt(received):
            status = body()
        return 0 if status is None else int(status)
    except GimbalError as exc:
        return _fail(str(exc), usage_status if isinstance(exc, ParamError) else EXIT_ERROR)
    except KeyboardInterrupt as exc:
        if received:  # the training loops' message names the step a rerun resumes from
            return _fail(f"stopped by SIGTERM; {str(exc) or terminated}", EXIT_SIGNAL_BASE + signal.SIGTERM)
        return _fail(str(exc) or interrupted, EXIT_SIGNAL_BASE + signal.SIGINT)
    except Exception as exc:  # noqa: BLE001 - one line each; a bug's traceback goes to a log file (or --debug)
        if _out_of_memory(exc):
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            return _fail(f"out of memory{f' ({first})' if first else ''}; {out_of_memory}")
        if isinstance(exc, OSError) and (exc.filename is not None or exc.errno in _NO_FILE_ERRNOS):
            return _fail(os_error_message(exc))
        if debug:
            raise
        return _unexpected(exc, name)


@contextlib.contextmanager
def _sigterm_as_interrupt(received: list[int]) -> Iterator[None]:
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` (as SIGINT does) and is appended to ``received``;
    the previous handler is restored after it. Outside the main thread (a test runner) nothing changes."""
    pid = os.getpid()

    def on_sigterm(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        if os.getpid() != pid:  # a forked worker (DataLoader) inherited the handler: die as it would have
            os.kill(os.getpid(), signal.SIGTERM)
            return
        received.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: keep the default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _out_of_memory(exc: BaseException) -> bool:
    """A ``MemoryError``, or torch's way of saying the same (``OutOfMemoryError``, a failed CPU allocation)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


#: errnos that are one line even without a file name
_NO_FILE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE)
#: a temp name of :mod:`gimbal.io` (``.<name>.<pid>-<start>@<host>.<random>.tmp[<ext>]``), for the output it becomes
_TEMP_NAME = re.compile(r"^\.(?P<name>.+?)\.\d+-\d+@[A-Za-z0-9-]+\..*\.tmp(?P<ext>\.[^.]*)?$")


def shown_path(filename: str | bytes | os.PathLike[str] | int) -> str:
    """How messages name a file: a temp of :mod:`gimbal.io` by the output it is written for."""
    if isinstance(filename, int):
        return f"file descriptor {filename}"
    path = Path(os.fsdecode(filename))
    m = _TEMP_NAME.match(path.name)
    if m is None:
        return str(path)
    name = m["name"] if not m["ext"] or m["name"].endswith(m["ext"]) else m["name"] + m["ext"]
    return str(path.with_name(name))


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: the file it names and the fix for its errno."""
    code = exc.errno
    name = exc.filename2 if exc.filename2 is not None and code in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST,
                                                                   errno.ENOTEMPTY) else exc.filename
    path = shown_path(name) if name is not None else None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device writing {path or 'a file'}; free some space and re-run"
    if code in (errno.EMFILE, errno.ENFILE):
        return "too many open files; raise the limit (`ulimit -n 4096`) and re-run"
    fixes = {
        errno.EACCES: "permission denied; change its (or its folder's) permissions, or choose a path you may use",
        errno.EPERM: "operation not permitted; change its (or its folder's) permissions, or choose another path",
        errno.EROFS: "read-only file system; write somewhere else",
        errno.EISDIR: "is a directory; give a file name",
        errno.ENOTDIR: "a part of the path is not a directory; fix the path",
        errno.ENOENT: "no such file or directory; check the path",
        errno.EEXIST: "already exists; remove it or choose another name",
        errno.ENAMETOOLONG: "file name too long; choose a shorter one",
    }
    fix = fixes.get(code, f"{exc.strerror or type(exc).__name__}; check the path and re-run")
    return f"{path or 'a file'}: {fix}"


def _fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _unexpected(exc: BaseException, name: str | None = None) -> int:
    """Write the traceback of ``exc`` to a log file (``GIMBAL_LOG_DIR``, default the temp directory) and print one
    line naming the error and the log; status 1."""
    log_dir = Path(os.environ.get("GIMBAL_LOG_DIR") or tempfile.gettempdir())
    log_file = log_dir / f"gimbal-{name or Path(sys.argv[0]).stem}-{os.getpid()}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file.write_text("".join(traceback.format_exception(exc)))
        where = f"traceback in {log_file}"
    except OSError as write_error:  # a full or read-only temp folder: say so, keep the one line
        where = f"no traceback written: {os_error_message(write_error)}"
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return _fail(f"internal error: {type(exc).__name__}: {first} ({where}; re-run with --debug to print it)")
