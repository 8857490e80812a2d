"""Stage fetch: download every source in data.sources with yt-dlp into data.raw_dir.

Reads params ``data.{sources,max_height,skip_failed,raw_dir}``; writes
``<raw_dir>/<id>.mp4`` and ``<raw_dir>/manifest.json`` (see gimbal.data.fetch).
"""

from __future__ import annotations

import argparse

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.fetch import fetch_sources

USES = ("data",)  # the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)


def main(cfg: Config, args: argparse.Namespace) -> None:
    d = cfg.data
    sources = d.sources if isinstance(d.sources, str) else list(d.sources)
    manifest = fetch_sources(sources, d.raw_dir, max_height=d.max_height, skip_failed=d.skip_failed)
    print(f"fetched {len(manifest['videos'])} videos, {len(manifest['failed'])} failed")


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__), USES)
