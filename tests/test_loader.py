"""Clip loaders: torch/PyAV and DALI readers of the same shards, shuffling, DDP/worker splits, errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from shard_fixtures import make_shards

import gimbal.data.loader.index as loader_module
from gimbal.data.loader import (
    DaliClipLoader,
    TorchClipLoader,
    dali_codec_error,
    dali_import_error,
    make_loader,
    open_split,
)
from gimbal.data.shards import ShardConfig
from gimbal.errors import DataError, ParamError

FRAMES = 9
TOL = 2 / 255 + 1e-6  # yuv444p crf 0: lossless in YUV, RGB<->YUV rounding only
needs_dali = pytest.mark.skipif(dali_import_error() is not None, reason=str(dali_import_error()))
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks DALI's CPU decoder")
SPLITS = {"vidA": "train", "vidB": "train", "vidC": "train", "vidD": "test"}  # 6 train clips, 2 test


@pytest.fixture(scope="module")
def x264(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    return make_shards(tmp_path_factory.mktemp("x264"), ShardConfig(clips_per_shard=4, codec="libx264"),
                       splits=SPLITS, frames=FRAMES)


@pytest.fixture(scope="module")
def vp9(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """VP9 lossless 4:4:4: the codec DALI can decode without a GPU."""
    return make_shards(tmp_path_factory.mktemp("vp9"), ShardConfig(clips_per_shard=4, codec="libvpx-vp9"),
                       splits=SPLITS, frames=FRAMES)


def as_source(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, C, H, W) float in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def collect(loader) -> tuple[list[torch.Tensor], list[str]]:
    clips, ids = [], []
    for frames, metas in loader:
        assert frames.dtype == torch.float32 and frames.ndim == 5 and len(metas) == frames.shape[0]
        clips += list(frames.cpu())
        ids += [m["id"] for m in metas]
    return clips, ids


def test_torch_reader_returns_source_frames(x264) -> None:
    shards, data = x264
    loader = TorchClipLoader(shards, "train", batch_size=4)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, FRAMES, 3, 24, 32), (2, FRAMES, 3, 24, 32)]
    assert len(loader) == 2
    clips, ids = collect(loader)
    assert ids == ["vidA_0", "vidA_1", "vidB_0", "vidB_1", "vidC_0", "vidC_1"]  # stored order
    for clip, cid in zip(clips, ids, strict=True):
        assert clip.min() >= 0 and clip.max() <= 1
        assert (clip - as_source(data[cid])).abs().max() <= TOL
    meta = batches[0][1][0]
    got = (meta["video"], meta["index"], meta["frames"], meta["gt_frame"], meta["split"])
    assert got == ("vidA", 0, FRAMES, FRAMES // 2, "train")


def test_uint8_output(x264, vp9) -> None:
    shards, data = x264
    frames, metas = next(iter(TorchClipLoader(shards, "train", 2, dtype=torch.uint8)))
    assert frames.dtype == torch.uint8
    ref = torch.from_numpy(data[metas[0]["id"]]).permute(0, 3, 1, 2)
    assert (frames[0].int() - ref.int()).abs().max() <= 2
    if dali_import_error() is None and not torch.cuda.is_available():
        d_frames, _ = next(iter(DaliClipLoader(vp9[0], "train", 2, device="cpu", num_threads=1, dtype=torch.uint8)))
        assert d_frames.dtype == torch.uint8 and d_frames.shape == (2, FRAMES, 3, 24, 32)
    with pytest.raises(ParamError, match="dtype"):
        TorchClipLoader(shards, "train", 2, dtype=torch.float16)


def test_torch_shuffle_is_seeded_per_epoch(x264) -> None:
    shards, _ = x264
    a = TorchClipLoader(shards, "train", batch_size=4, shuffle=True, seed=3)
    b = TorchClipLoader(shards, "train", batch_size=4, shuffle=True, seed=3)
    orders_a = [collect(a)[1] for _ in range(4)]
    orders_b = [collect(b)[1] for _ in range(4)]
    assert orders_a == orders_b  # same seed -> same sequence of epochs
    assert all(sorted(o) == sorted(orders_a[0]) for o in orders_a)  # each epoch: every clip once
    assert len({tuple(o) for o in orders_a}) > 1  # epochs differ
    c = TorchClipLoader(shards, "train", batch_size=4, shuffle=True, seed=4)
    assert [collect(c)[1] for _ in range(4)] != orders_a


@pytest.mark.parametrize("world_size", [2, 4])
def test_torch_ddp_split(x264, world_size: int) -> None:
    shards, _ = x264
    per_rank = [collect(TorchClipLoader(shards, "train", 2, rank=r, world_size=world_size))[1]
                for r in range(world_size)]
    assert len({len(ids) for ids in per_rank}) == 1  # equal work per rank (padded by repetition)
    flat = [i for ids in per_rank for i in ids]
    assert set(flat) == {f"vid{v}_{k}" for v in "ABC" for k in (0, 1)}
    assert len(flat) == 6 + (-6) % world_size
    dropped = [collect(TorchClipLoader(shards, "train", 1, rank=r, world_size=world_size, drop_last=True))[1]
               for r in range(world_size)]
    kept = [i for ids in dropped for i in ids]
    assert len(kept) == len(set(kept)) == 6 - 6 % world_size


def test_torch_workers_split(x264) -> None:
    shards, data = x264
    loader = TorchClipLoader(shards, "train", batch_size=2, num_workers=2)
    clips, ids = collect(loader)
    assert sorted(ids) == sorted(c for c in data if not c.startswith("vidD"))
    assert len(list(loader)) == len(loader)
    for clip, cid in zip(clips, ids, strict=True):
        assert (clip - as_source(data[cid])).abs().max() <= TOL


@needs_dali
@cpu_only
def test_dali_cpu_matches_torch_reader(vp9) -> None:
    """Both readers return the same clips in the same order; DALI accepts the .idx files."""
    shards, data = vp9
    dali = DaliClipLoader(shards, "train", batch_size=4, device="cpu", num_threads=1)
    assert dali.backend == "dali" and len(dali) == 2
    d_clips, d_ids = collect(dali)
    t_clips, t_ids = collect(TorchClipLoader(shards, "train", batch_size=4))
    assert d_ids == t_ids == ["vidA_0", "vidA_1", "vidB_0", "vidB_1", "vidC_0", "vidC_1"]
    for d, t, cid in zip(d_clips, t_clips, d_ids, strict=True):
        assert d.shape == (FRAMES, 3, 24, 32)
        assert (d - t).abs().max() <= TOL
        assert (d - as_source(data[cid])).abs().max() <= TOL
    assert collect(dali)[1] == d_ids  # second epoch, same order
    test_ids = collect(DaliClipLoader(shards, "test", batch_size=2, device="cpu", num_threads=1))[1]
    assert test_ids == ["vidD_0", "vidD_1"]


@needs_dali
@cpu_only
def test_dali_shuffle_and_ddp(vp9) -> None:
    shards, _ = vp9
    runs = [collect(DaliClipLoader(shards, "train", 3, shuffle=True, seed=5, device="cpu", num_threads=1))[1]
            for _ in range(2)]
    assert runs[0] == runs[1]  # seeded
    assert sorted(runs[0]) == sorted(collect(TorchClipLoader(shards, "train", 3))[1])
    ranks = [DaliClipLoader(shards, "train", 3, rank=r, world_size=2, device="cpu", num_threads=1) for r in (0, 1)]
    ids = [collect(loader)[1] for loader in ranks]
    assert len(ranks[0]) == len(ranks[1]) and set(ids[0]).isdisjoint(ids[1])
    assert len(ids[0] + ids[1]) == 6


@needs_dali
@pytest.mark.skipif(not torch.cuda.is_available(), reason="DALI GPU (NVDEC) decoding needs a CUDA GPU")
def test_dali_gpu_matches_torch_reader(tmp_path: Path) -> None:
    """NVDEC path: 4:2:0 H.264 (x264 crf > 0; NVDEC has no lossless High 4:4:4 profile), >= 48x16 pixels."""
    cfg = ShardConfig(clips_per_shard=2, codec="libx264", crf=12, pix_fmt="yuv420p")
    shards, _ = make_shards(tmp_path, cfg, splits={"v": "train", "w": "train"}, frames=FRAMES, h=48, w=64)
    dali = make_loader(shards, "train", 2, backend="dali", device="cuda")
    d_clips, d_ids = collect(dali)
    t_clips, t_ids = collect(TorchClipLoader(shards, "train", 2))
    assert d_ids == t_ids and len(d_ids) == 4
    for d, t in zip(d_clips, t_clips, strict=True):
        assert d.shape == t.shape == (FRAMES, 3, 48, 64)
        # same bitstream; only YUV->RGB rounding and chroma upsampling differ between NVDEC+DALI and swscale
        assert (d - t).abs().mean() <= 2 / 255 and (d - t).abs().max() <= 32 / 255


def test_make_loader_choice(x264, vp9, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gimbal.data.loader")
    loader = make_loader(x264[0], "train", 2)
    if not torch.cuda.is_available():
        assert loader.backend == "torch"
        assert "torch/PyAV" in caplog.text and "VP8/VP9/MJPEG" in caplog.text
        with pytest.raises(ParamError, match="VP8/VP9/MJPEG"):
            make_loader(x264[0], "train", 2, backend="dali")
    assert make_loader(vp9[0], "train", 2, backend="torch").backend == "torch"
    if dali_import_error() is None and not torch.cuda.is_available():
        caplog.clear()
        assert make_loader(vp9[0], "train", 2).backend == "dali"
        assert "DALI on cpu" in caplog.text
    with pytest.raises(ParamError, match="backend"):
        make_loader(vp9[0], "train", 2, backend="tensorflow")


def test_dali_codec_rules() -> None:
    assert dali_codec_error("libvpx-vp9", "yuv444p", 0, "cpu") is None
    assert "VP8/VP9/MJPEG" in dali_codec_error("libx264", "yuv444p", 0, "cpu")
    assert "4:2:0" in dali_codec_error("libx265", "yuv444p", 0, "gpu")
    assert "High 4:4:4" in dali_codec_error("libx264", "yuv420p", 0, "gpu")
    assert dali_codec_error("libx264", "yuv420p", 12, "gpu") is None
    assert dali_codec_error("libx265", "yuv420p", 0, "gpu") is None
    assert "ffv1" in dali_codec_error("ffv1", "bgr0", 0, "gpu")


@pytest.fixture
def broken(vp9, tmp_path: Path) -> Path:
    """A private copy of the VP9 shards to damage."""
    copy = tmp_path / "shards"
    shutil.copytree(vp9[0], copy)
    return copy


def readers(shards: Path, check: bool = True) -> list:
    out = [lambda: list(TorchClipLoader(shards, "train", 2, check=check))]
    if dali_import_error() is None and not torch.cuda.is_available():
        out.append(lambda: list(DaliClipLoader(shards, "train", 2, device="cpu", num_threads=1, check=check)))
    return out


def test_truncated_shard(broken: Path) -> None:
    tar = broken / "train" / "shard-00001.tar"
    tar.write_bytes(tar.read_bytes()[:5000])
    for read in readers(broken):
        with pytest.raises(DataError, match=r"shard-00001\.tar: shard is truncated.*dvc repro shards"):
            read()


def test_garbage_shard(broken: Path) -> None:
    tar = broken / "train" / "shard-00000.tar"
    tar.write_bytes(np.random.default_rng(0).integers(0, 256, tar.stat().st_size, dtype=np.uint8).tobytes())
    for read in [*readers(broken), *readers(broken, check=False)]:
        with pytest.raises(DataError, match=r"shard-00000\.tar: shard is corrupt.*dvc repro shards -f"):
            read()


def _zero_inside_first_clip(tar: Path, n: int) -> None:
    """Zero ``n`` bytes in the middle of the first clip's video in ``tar`` (the tar stays valid); keep its mtime."""
    ext, offset, size, name = tar.with_suffix(".idx").read_text().splitlines()[1].split()[4:8]
    assert (ext, name) == ("mp4", "vidA_0.mp4") and int(size) > n
    st = tar.stat()
    with open(tar, "r+b") as fh:  # in place: same inode, same size
        fh.seek(int(offset) + (int(size) - n) // 2)
        fh.write(bytes(n))
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `touch -r`: DVC sees an unchanged file
    assert tar.stat().st_size == st.st_size and tar.stat().st_mtime_ns == st.st_mtime_ns


def test_corrupt_shard_same_size_and_mtime(broken: Path) -> None:
    """Issue 11: 4 KB zeroed inside a shard, timestamp kept. Every reader refuses it before decoding."""
    _zero_inside_first_clip(broken / "train" / "shard-00000.tar", 4096)
    for read in [*readers(broken), *readers(broken, check=False)]:
        with pytest.raises(DataError, match=r"shard-00000\.tar: shard is corrupt or was modified \(sha256 .*"
                                            r"dvc repro shards -f"):
            read()
    with pytest.raises(DataError, match=r"shard-00000\.tar: shard is corrupt"):
        make_loader(broken, "train", 2, backend="auto", device="cpu")


def test_corrupt_dali_index(broken: Path) -> None:
    idx = broken / "test" / "shard-00000.idx"
    text = idx.read_text()
    first = text.splitlines()[1].split()
    idx.write_text(text.replace(f" {first[1]} ", f" {int(first[1]) + 512} ", 1))  # DALI would read the wrong bytes
    assert idx.read_text() != text
    with pytest.raises(DataError, match=r"test/shard-00000\.idx: DALI index of shard-00000\.tar is corrupt"):
        open_split(broken, "test")


def test_shards_are_hashed_once_per_process(broken: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated loaders and epochs do not re-hash; a file rewritten in place afterwards is hashed again."""
    hashed: list[str] = []
    real = loader_module.sha256_file
    monkeypatch.setattr(loader_module, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    files = sorted(p.name for p in (broken / "train").iterdir() if p.name != "index.json")
    for read in readers(broken) * 2:
        read()
    loader = TorchClipLoader(broken, "train", 2)
    for _ in range(2):
        list(loader)
    assert sorted(hashed) == files  # each tar and idx exactly once
    _zero_inside_first_clip(broken / "train" / "shard-00000.tar", 16)  # size and mtime unchanged, ctime not
    with pytest.raises(DataError, match=r"shard-00000\.tar: shard is corrupt"):
        open_split(broken, "train")


def test_old_index_without_checksums(broken: Path) -> None:
    index = json.loads((broken / "train" / "index.json").read_text())
    index["format"] = 1
    (broken / "train" / "index.json").write_text(json.dumps(index))
    for read in readers(broken):
        with pytest.raises(DataError, match=r"index\.json: not a gimbal shard index.*dvc repro shards -f"):
            read()


def test_corrupt_clip_bytes(broken: Path) -> None:
    """Damage after the loader opened (and verified) the shard: the torch reader still catches it by CRC."""
    loader = TorchClipLoader(broken, "train", 2)
    _zero_inside_first_clip(broken / "train" / "shard-00000.tar", 64)
    with pytest.raises(DataError, match=r"shard-00000\.tar: clip vidA_0\.mp4 is corrupt"):
        list(loader)


def test_missing_shards(broken: Path, tmp_path: Path) -> None:
    for read in readers(tmp_path / "nowhere"):
        with pytest.raises(DataError, match=r"nowhere/train/index\.json: shard index of split 'train' not found.*dvc repro shards"):
            read()
    (broken / "train" / "shard-00001.tar").unlink()
    for read in readers(broken):
        with pytest.raises(DataError, match=r"shard-00001\.tar: shard missing.*dvc repro shards"):
            read()
    with pytest.raises(DataError, match="split 'val' has no clips"):  # the fixture has no val video
        open_split(broken, "val")
    (broken / "test" / "shard-00000.idx").unlink()
    with pytest.raises(DataError, match=r"shard-00000\.idx: DALI index"):
        open_split(broken, "test")
