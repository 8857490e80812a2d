"""Stage fetch: download every source in data.sources with yt-dlp into data.raw_dir.

Reads params ``data.{sources,max_height,skip_failed,raw_dir}``; writes
``<raw_dir>/<id>.mp4`` and ``<raw_dir>/manifest.json`` (see gimbal.data.fetch).
"""

from __future__ import annotations

import argparse
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.fetch import fetch_sources
from gimbal.params import get


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    manifest = fetch_sources(
        get(params, "data.sources", (list, str)),
        get(params, "data.raw_dir", str),
        max_height=get(params, "data.max_height", int, 720),
        skip_failed=get(params, "data.skip_failed", bool, False),
    )
    print(f"fetched {len(manifest['videos'])} videos, {len(manifest['failed'])} failed")


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
