"""Helpers shared by the thin stage CLIs in ``stages/``."""

from __future__ import annotations

import argparse
import logging
import sys
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

        main(load_config(args.params, uses), args)
    except GimbalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
