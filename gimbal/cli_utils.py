"""Helpers shared by the thin stage CLIs in ``stages/``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gimbal.errors import GimbalError
from gimbal.params import load_params

log = logging.getLogger("gimbal")


def stage_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--params`` option (default ``params.yaml``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    return parser


def run_stage(main: Callable[[dict[str, Any], argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse args, load params, run ``main(params, args)``.

    A :class:`GimbalError` is printed as one line ``error: ...`` on stderr and the
    process exits with status 1 (no traceback spam); other exceptions propagate.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser.parse_args()
    try:
        params = load_params(args.params)
        from gimbal.config import check_params  # every group parsed: a misspelt key fails before any work

        check_params(params)
        main(params, args)
    except GimbalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
