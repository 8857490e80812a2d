"""Helpers shared by the thin stage CLIs in ``stages/``."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gimbal.errors import GimbalError

if TYPE_CHECKING:
    from gimbal.config import Config

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

    A :class:`GimbalError` is printed as one line ``error: ...`` on stderr and the
    process exits with status 1 (no traceback spam); other exceptions propagate.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser.parse_args()
    try:
        from gimbal.config import load_config  # imports torch and every group's module: after argparse's --help
        from gimbal.runtime import apply_thread_budget

        apply_thread_budget()
        main(load_config(args.params, uses), args)
    except GimbalError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:
        _fail(str(exc) or "interrupted; `dvc repro` resumes from the last checkpoint", 130)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            _unexpected(exc, args.debug)
        _fail(f"no space left on device writing {exc.filename or 'a file'}; free some space and re-run")
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in a log file (or --debug)
        _unexpected(exc, args.debug)


def _fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _unexpected(exc: BaseException, debug: bool) -> None:
    """Re-raise ``exc`` under ``--debug``; else write its traceback to a log file (``GIMBAL_LOG_DIR``, default the
    temp directory) and exit 1 with one line naming the error and the log."""
    if debug:
        raise exc
    log_dir = Path(os.environ.get("GIMBAL_LOG_DIR") or tempfile.gettempdir())
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"gimbal-{Path(sys.argv[0]).stem}-{os.getpid()}.log"
    log_file.write_text("".join(traceback.format_exception(exc)))
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    _fail(f"internal error: {type(exc).__name__}: {first} (traceback in {log_file}; re-run with --debug to print "
          "it)")
