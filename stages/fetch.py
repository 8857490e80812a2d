"""Stage fetch: download every source in data.sources with yt-dlp into data.raw_dir.

Reads params ``data.{sources,max_height,skip_failed,raw_dir}``; writes
``<raw_dir>/<id>.mp4`` and ``<raw_dir>/manifest.json`` (see gimbal.data.fetch).
"""

from __future__ import annotations

import argparse
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.fetch import DataConfig, fetch_sources


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    cfg = DataConfig.from_params(params)
    sources = cfg.sources if isinstance(cfg.sources, str) else list(cfg.sources)
    manifest = fetch_sources(sources, cfg.raw_dir, max_height=cfg.max_height, skip_failed=cfg.skip_failed)
    print(f"fetched {len(manifest['videos'])} videos, {len(manifest['failed'])} failed")


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
