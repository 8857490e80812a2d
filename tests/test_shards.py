"""Stage `shards`: shard/sample counts, meta round trip, codec fidelity, DALI index, atomicity, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from shard_fixtures import make_interp, make_shards

from gimbal.data.shards import ShardConfig, build_shards, decode_clip, read_shard_index, write_dali_index
from gimbal.data.video import read_frames
from gimbal.errors import DataError, ParamError

REPO = Path(__file__).resolve().parents[1]


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isreg()}


def test_shard_and_sample_counts(tmp_path: Path) -> None:
    # 3 train videos x 2 clips = 6 train clips -> shards of 4 + 2; 1 test video -> 2 clips in 1 shard
    splits = {"a": "train", "b": "train", "c": "train", "d": "test"}
    out, _ = make_shards(tmp_path, ShardConfig(clips_per_shard=4), splits=splits, frames=9)
    train, test = read_shard_index(out, "train")["splits"]["train"], read_shard_index(out, "test")["splits"]["test"]
    assert set(read_shard_index(out, "test")["splits"]) == {"test"}  # each split's index lists that split only
    assert read_shard_index(out, "val")["splits"]["val"]["samples"] == 0  # no val video: an empty split
    assert [s["samples"] for s in train["shards"]] == [4, 2]
    assert [s["samples"] for s in test["shards"]] == [2]
    assert (train["samples"], test["samples"]) == (6, 2)
    assert (train["frames"], train["width"], train["height"]) == (9, 32, 24)
    assert sorted(p.name for p in (out / "train").iterdir()) == ["index.json",
        "shard-00000.idx", "shard-00000.tar", "shard-00001.idx", "shard-00001.tar"]
    for split in (train, test):
        assert split["bytes"] == sum((out / s["tar"]).stat().st_size for s in split["shards"])
        for shard in split["shards"]:
            names = sorted(tar_members(out / shard["tar"]))
            assert names == sorted(f"{k}.{e}" for k in shard["keys"] for e in ("json", "mp4"))
            assert shard["sha256"] == hashlib.sha256((out / shard["tar"]).read_bytes()).hexdigest()
            assert shard["idx_sha256"] == hashlib.sha256((out / shard["idx"]).read_bytes()).hexdigest()
    assert train["shards"][0]["keys"] == ["a_0", "a_1", "b_0", "b_1"]  # input order kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_meta_round_trip(tmp_path: Path) -> None:
    out, _ = make_shards(tmp_path, ShardConfig(clips_per_shard=3))
    src = {c["id"]: c for c in json.loads((tmp_path / "interp" / "index.json").read_text())["clips"]}
    seen = set()
    for split in ("train", "val", "test"):
        for shard in read_shard_index(out, split)["splits"][split]["shards"]:
            for name, data in tar_members(out / shard["tar"]).items():
                if not name.endswith(".json"):
                    continue
                meta = json.loads(data)
                clip = src[meta["id"]]
                for field in ("video", "index", "split", "fps", "width", "height", "frames", "gt_frame", "start_frame"):
                    assert meta[field] == clip[field], field
                assert meta["split"] == split and name == f"{meta['key']}.json"
                seen.add(meta["id"])
    assert seen == set(src)


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "tol"),
    [("libx264", "yuv444p", 2), ("libvpx-vp9", "yuv444p", 2), ("libx265", "yuv444p", 2), ("ffv1", "yuv444p", 0)],
)
def test_lossless_round_trip(tmp_path: Path, codec: str, pix_fmt: str, tol: int) -> None:
    """crf 0 is lossless in YUV: only the RGB<->YUV rounding remains (<= 2/255); FFV1 is bit-exact."""
    cfg = ShardConfig(clips_per_shard=8, codec=codec, crf=0, pix_fmt=pix_fmt)
    out, data = make_shards(tmp_path, cfg, splits={"v": "train"}, clips_per_video=2, frames=11)
    members = tar_members(out / "train" / "shard-00000.tar")
    for cid, frames in data.items():
        decoded = decode_clip(members[f"{cid}.{cfg.ext}"])
        assert decoded.shape == frames.shape
        assert np.abs(decoded.astype(int) - frames).max() <= tol
    assert cfg.ext == ("mkv" if codec == "ffv1" else "mp4")


def test_lossy_crf_is_lossy_but_close(tmp_path: Path) -> None:
    out, data = make_shards(tmp_path, ShardConfig(codec="libx264", crf=30), splits={"v": "train"}, clips_per_video=1)
    decoded = decode_clip(tar_members(out / "train" / "shard-00000.tar")["v_0.mp4"])
    err = np.abs(decoded.astype(int) - data["v_0"])
    assert err.max() > 2 and err.mean() < 20


def test_dali_index_format_matches_wds2idx(tmp_path: Path) -> None:
    wds2idx = pytest.importorskip("wds2idx", reason="DALI's wds2idx ships with nvidia-dali")
    out, _ = make_shards(tmp_path, ShardConfig(clips_per_shard=3), splits={"vidA": "train", "vidB": "train", "vidC": "test"})
    for tar in sorted(out.glob("*/*.tar")):
        ref = tmp_path / "ref.idx"
        with wds2idx.IndexCreator(str(tar), str(ref), verbose=False) as creator:
            creator.create_index()
        assert tar.with_suffix(".idx").read_text() == ref.read_text()
    lines = (out / "train" / "shard-00000.idx").read_text().splitlines()
    assert lines[0] == "v1.2 3" and len(lines) == 4
    # each entry points at the member's bytes: offset/size read back the json meta
    ext, offset, size, name = lines[1].split()[:4]
    blob = (out / "train" / "shard-00000.tar").read_bytes()[int(offset) : int(offset) + int(size)]
    assert ext == "json" and json.loads(blob)["key"] == name.split(".")[0]


def test_write_dali_index_rejects_empty_tar(tmp_path: Path) -> None:
    tar = tmp_path / "empty.tar"
    tarfile.open(tar, "w").close()
    with pytest.raises(DataError, match=r"empty\.tar"):
        write_dali_index(tar, tmp_path / "empty.idx")


def test_build_is_deterministic(tmp_path: Path) -> None:
    index, _ = make_interp(tmp_path / "interp", {"v": "train", "w": "test"}, frames=9)
    a = build_shards(index, tmp_path / "a", ShardConfig(clips_per_shard=2), progress=False)
    b = build_shards(index, tmp_path / "b", ShardConfig(clips_per_shard=2), progress=False)
    assert a == b
    assert (tmp_path / "a/train/shard-00000.tar").read_bytes() == (tmp_path / "b/train/shard-00000.tar").read_bytes()


def test_failure_keeps_previous_output(tmp_path: Path) -> None:
    out, _ = make_shards(tmp_path, ShardConfig(clips_per_shard=3))
    before = (out / "test" / "index.json").read_bytes()
    (tmp_path / "interp" / "test" / "vidC_1.mkv").write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"vidC_1\.mkv"):
        build_shards(tmp_path / "interp" / "index.json", out, ShardConfig(clips_per_shard=2), progress=False)
    assert (out / "test" / "index.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dvc repro interpolate"):
        build_shards(tmp_path / "nope" / "index.json", tmp_path / "out", progress=False)
    index, _ = make_interp(tmp_path / "interp", {"v": "train"}, clips_per_video=1, frames=5)
    clips = json.loads(index.read_text())
    clips["clips"][0]["frames"] = 7
    index.write_text(json.dumps(clips))
    with pytest.raises(DataError, match="has 5 frames, index says 7"):
        build_shards(index, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ParamError, match=r"shards\.codec"):
        ShardConfig(codec="mjpeg")
    with pytest.raises(ParamError, match=r"shards\.pix_fmt"):
        ShardConfig(pix_fmt="rgb24")


def test_read_shard_index_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dvc repro shards"):
        read_shard_index(tmp_path / "missing", "train")


def run_stage(tmp_path: Path, shards: dict) -> subprocess.CompletedProcess:
    params = {"interpolate": {"out_dir": "interp"}, "shards": {"out_dir": "shards", **shards}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, str(REPO / "stages" / "shards.py")], cwd=tmp_path, check=False,
                          capture_output=True, text=True, timeout=120)


def test_stage_cli(tmp_path: Path) -> None:
    make_interp(tmp_path / "interp", {"v": "train", "w": "test"}, frames=5)
    ok = run_stage(tmp_path, {"clips_per_shard": 1, "codec": "libvpx-vp9", "crf": 0})
    assert ok.returncode == 0, ok.stderr
    index = read_shard_index(tmp_path / "shards", "train")
    assert index["codec"] == "libvpx-vp9" and len(index["splits"]["train"]["shards"]) == 2
    bad = run_stage(tmp_path, {"clips_per_shard": 1, "codec": "h263", "crf": 0})
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: params: 'shards.codec'")
    assert "Traceback" not in bad.stderr


def _flip_middle_bytes(path: Path, n: int = 4) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_interpolated_clip_is_not_packed(tmp_path: Path) -> None:
    """Issue 19: four flipped bytes in an FFV1 clip of data/interp still decode, to the same number of frames but
    wrong pixels; the sha256 of the decoded frames recorded by interpolate catches it, naming the file."""
    index, data = make_interp(tmp_path / "interp", {"v": "train", "w": "test"}, clips_per_video=1, frames=9)
    clip = tmp_path / "interp/train/v_0.mkv"
    _flip_middle_bytes(clip)
    damaged = read_frames(clip)  # no decode error: only the hash can tell
    assert damaged.shape == data["v_0"].shape and not np.array_equal(damaged, data["v_0"])
    with pytest.raises(DataError, match=r"v_0\.mkv: .*sha256.*re-run `dvc repro interpolate -f`"):
        build_shards(index, tmp_path / "shards", ShardConfig(clips_per_shard=2), progress=False)
    assert not (tmp_path / "shards").exists()


def test_an_index_without_clip_hashes_is_refused(tmp_path: Path) -> None:
    """An interpolate index written before per-clip hashes cannot vouch for its clips: rebuild it."""
    index, _ = make_interp(tmp_path / "interp", {"v": "train"}, clips_per_video=1, frames=5)
    doc = json.loads(index.read_text())
    del doc["clips"][0]["frames_sha256"]
    index.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"index\.json: clip 'v_0' .*frames_sha256.*re-run `dvc repro interpolate -f`"):
        build_shards(index, tmp_path / "shards", progress=False)
