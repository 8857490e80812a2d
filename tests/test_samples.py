"""Offline sample videos: simulated drone flights over bundled scikit-image photos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gimbal.data import samples
from gimbal.data.video import probe, read_frames
from gimbal.errors import ParamError

REPO = Path(__file__).resolve().parents[1]
W, H, T, FPS = 64, 48, 12, 24


def test_only_bundled_photos_are_offered():
    images = samples.bundled_images()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        assert images[name].is_file()
    assert "kidney" not in images  # fetched by pooch on demand, must not be offered
    photo = samples.load_photo("camera")  # grey image -> RGB
    assert photo.ndim == 3 and photo.shape[-1] == 3 and photo.dtype == np.uint8
    with pytest.raises(ParamError, match="kidney.*astronaut"):
        samples.load_photo("kidney")


@pytest.mark.parametrize("seed", range(5))
def test_flight_stays_inside_photo_and_moves(seed):
    photo_hw, out_hw = (300, 451), (144, 192)
    hs = samples.random_flight(photo_hw, out_hw, 90, 30.0, np.random.default_rng(seed))
    assert hs.shape == (90, 3, 3)
    oh, ow = out_hw
    corners = np.array([[0, 0, 1], [ow - 1, 0, 1], [0, oh - 1, 1], [ow - 1, oh - 1, 1]], float).T
    c = hs @ corners
    xy = c[:, :2] / c[:, 2:]
    assert xy[:, 0].min() >= -1e-6 and xy[:, 0].max() <= photo_hw[1] - 1 + 1e-6
    assert xy[:, 1].min() >= -1e-6 and xy[:, 1].max() <= photo_hw[0] - 1 + 1e-6
    centre = (hs @ np.array([(ow - 1) / 2, (oh - 1) / 2, 1.0]))
    centre = centre[:, :2] / centre[:, 2:]
    assert np.linalg.norm(centre[-1] - centre[0]) > 5  # the camera travels
    # roll stays slight: angle of the image x axis in the photo
    ax = hs[:, :2, 0]
    assert np.abs(np.degrees(np.arctan2(ax[:, 1], ax[:, 0]))).max() < 8


def test_shake_is_high_frequency():
    fps, n = 30.0, 600
    sig = samples._shake(np.random.default_rng(0), np.arange(n) / fps, 1.0, 1)[:, 0]
    power = np.abs(np.fft.rfft(sig - sig.mean())) ** 2
    freqs = np.fft.rfftfreq(n, 1 / fps)
    lo, hi = samples._SHAKE_BAND_HZ
    in_band = power[(freqs >= lo - 0.5) & (freqs <= hi + 0.5)].sum()
    assert in_band / power.sum() > 0.9
    assert 0.7 < sig.std() < 1.3 and np.abs(sig).max() <= samples._SHAKE_CLIP + 1e-9


def test_render_is_deterministic_for_a_seed():
    a = samples.render_sample("coffee", W, H, T, FPS, seed=3)
    b = samples.render_sample("coffee", W, H, T, FPS, seed=3)
    c = samples.render_sample("coffee", W, H, T, FPS, seed=4)
    assert a.shape == (T, H, W, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    step = np.abs(np.diff(a.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (step > 0.5).all()  # every frame differs from the previous one: the camera moves


def test_make_samples_writes_deterministic_mp4(tmp_path):
    names = ["astronaut", "rocket"]
    paths1 = samples.make_samples(names, tmp_path / "a", W, H, T, FPS, seed=0, progress=False)
    paths2 = samples.make_samples(names, tmp_path / "b", W, H, T, FPS, seed=0, progress=False)
    assert [p.name for p in paths1] == ["flight_astronaut.mp4", "flight_rocket.mp4"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in paths1)
    for p1, p2, name in zip(paths1, paths2, names):
        info = probe(p1)
        assert (info.width, info.height, info.frames) == (W, H, T) and info.fps == pytest.approx(FPS)
        f1, f2 = read_frames(p1), read_frames(p2)
        assert np.array_equal(f1, f2), "same seed must decode to the same bytes"
        ref = samples.render_sample(name, W, H, T, FPS, seed=0).astype(np.float64)
        mse = ((f1 - ref) ** 2).mean()
        assert 10 * np.log10(255**2 / mse) > 35  # near-lossless H.264 (crf 12)
    # a different image list replaces the folder: no stale videos left
    samples.make_samples(["chelsea"], tmp_path / "a", W, H, T, FPS, seed=0, progress=False)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["flight_chelsea.mp4"]


def test_make_samples_rejects_unknown_photo(tmp_path):
    with pytest.raises(ParamError, match="samples.images.*kidney"):
        samples.make_samples(["astronaut", "kidney"], tmp_path / "s", W, H, T, FPS, seed=0, progress=False)
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_samples_stage_cli(tmp_path):
    params = {"seed": 1, "samples": {"images": ["chelsea"], "width": W, "height": H, "frames": T, "fps": FPS,
                                     "out_dir": "out"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, str(REPO / "stages/samples.py")], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert probe(tmp_path / "out/flight_chelsea.mp4").frames == T
    params["samples"]["images"] = ["nope"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, str(REPO / "stages/samples.py"), "--params", "bad.yaml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: samples.images: ['nope']")
