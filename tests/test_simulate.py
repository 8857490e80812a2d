"""``gimbal simulate-burst``: the raw burst a camera captures of an image, as ``gimbal infer`` reads it.

Checked from the outside: the files written (16-bit frames holding the camera's DN, the exposures), the same seed
giving the same bytes, the mean signal of each frame against the camera's constants (photons -> electrons -> DN),
the shot noise, a calibrated preset file as the camera, refused inputs, and the shipped sample burst merging with
no flag beyond those the README shows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gimbal.cli import main
from gimbal.data.video import write_video
from gimbal.inference.frame_files import read_frame
from gimbal.system import GimbalSystem, save_system

ROOT = Path(__file__).resolve().parents[1]
EXPOSURES = ["872", "234", "583"]  # us; + 3 x 400 us readouts = 2889 us <= T = 3000 us (jetcam19m, synthetic)
H, W = 24, 32
# jetcam19m (supplement Table 1 / the released config): QE, pixel 10 um, 520 nm, gain K DN/e-, 10-bit
QE, AREA_M2, WAVELENGTH_M, GAIN, MAX_DN = 0.528236, 1e-10, 520e-9, 0.067616, 1023


def gray_image(path: Path, value: int = 180, size: tuple[int, int] = (W, H)) -> Path:
    Image.fromarray(np.full(size[::-1], value, dtype=np.uint8)).save(path)
    return path


def simulate(tmp_path: Path, image: Path, out: str = "burst", *extra: str) -> int:
    return main(["simulate-burst", str(image), "--camera", "jetcam19m", "--exposures-us", *EXPOSURES,
                 "-o", str(tmp_path / out), "--samples", "9", "-q", *extra])


def frames_of(d: Path) -> np.ndarray:
    return np.stack([read_frame(d / f"frame_{i}.png") for i in (1, 2, 3)])


def test_writes_16bit_dn_frames_and_exposures_deterministically(tmp_path):
    img = gray_image(tmp_path / "scene.png")
    assert simulate(tmp_path, img, "a", "--seed", "3") == 0
    d = tmp_path / "a"
    assert sorted(p.name for p in d.iterdir()) == ["README.txt", "exposures.json", "exposures_us.txt", "frame_1.png",
                                                   "frame_2.png", "frame_3.png"]
    frames = frames_of(d)
    assert frames.dtype == np.uint16 and frames.shape == (3, H, W) and frames.max() <= MAX_DN
    sched = json.loads((d / "exposures.json").read_text())
    assert sched["durations_us"] == [872.0, 234.0, 583.0] and sched["camera"] == "jetcam19m"
    assert sched["starts_us"] == [0.0, 1272.0, 1906.0]  # back to back: + dt_i + 400 us readout
    assert (d / "exposures_us.txt").read_text().split() == EXPOSURES
    assert "gimbal simulate-burst" in (d / "README.txt").read_text()

    assert simulate(tmp_path, img, "b", "--seed", "3") == 0
    for name in ("frame_1.png", "frame_2.png", "frame_3.png", "exposures.json"):
        assert (d / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert simulate(tmp_path, img, "c", "--seed", "4") == 0
    assert not np.array_equal(frames_of(tmp_path / "c"), frames)


def test_signal_and_noise_follow_the_camera(tmp_path):
    """A still, uniform sRGB 180 scene at 0.019 W/m^2: photons -> electrons (QE) -> DN (gain) give the mean of each
    frame; the spread is the shot noise (variance ~ mean electrons) plus read noise, times the gain."""
    img = gray_image(tmp_path / "flat.png", 180, (96, 64))
    assert simulate(tmp_path, img, "flat", "--shake-std-deg", "0", "0", "0") == 0
    frames = frames_of(tmp_path / "flat").astype(np.float64)
    srgb = 180 / 255
    linear = ((srgb + 0.055) / 1.055) ** 2.4
    photons_per_s = 0.019 * linear * AREA_M2 / (6.62607015e-34 * 299_792_458.0 / WAVELENGTH_M)
    for frame, dt_us in zip(frames, EXPOSURES, strict=True):
        electrons = photons_per_s * QE * float(dt_us) * 1e-6
        assert frame.mean() == pytest.approx(electrons * GAIN, rel=0.03), dt_us
        # shot + read noise (17.9 e-) and PRNU (2.3 %), quantized: std in DN within 15 % of the model
        expected_std = GAIN * math.sqrt(electrons + 17.9**2 + (0.022762 * electrons) ** 2 / 12)
        assert frame.std() == pytest.approx(math.sqrt(expected_std**2 + 1 / 12), rel=0.15), dt_us


def test_preset_file_camera_and_rgb(tmp_path):
    """A `gimbal calibrate` preset (here a 12-bit camera) is read as the camera; --channels 3 keeps colour."""
    preset = tmp_path / "cam.yaml"
    preset.write_text(yaml.safe_dump({"name": "mycam", "wavelength_m": 5.2e-7, "pixel_area_m2": 1e-10,
                                      "quantum_efficiency": 0.5, "dark_current_e_per_s": 9.0, "read_noise_e": 5.0,
                                      "gain_dn_per_e": 0.5, "full_well_e": 12000.0, "bits": 12}))
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.dstack([np.full((H, W), v, np.uint8) for v in (250, 120, 30)])).save(rgb)
    assert main(["simulate-burst", str(rgb), "--camera", str(preset), "--exposures-us", *EXPOSURES, "--channels", "3",
                 "-o", str(tmp_path / "b"), "--samples", "5", "-q"]) == 0
    f1 = read_frame(tmp_path / "b" / "frame_1.png")
    assert f1.shape == (H, W, 3) and f1.max() > 1023  # 12-bit DN: beyond a 10-bit camera's range
    assert f1[..., 0].mean() > f1[..., 1].mean() > f1[..., 2].mean()
    assert json.loads((tmp_path / "b" / "exposures.json").read_text())["camera"] == "mycam"


def test_clip_frames_span_the_budget(tmp_path):
    """A clip of frames spans [0, T]: a bright bar that moves right across the clip is at the left in the first
    exposure (0-872 us) and at the right in the last one (1906-2489 us); no shake is added to a clip."""
    paths = []
    for i in range(7):
        frame = np.full((H, W), 90, np.uint8)
        frame[:, 2 + 4 * i : 6 + 4 * i] = 250
        paths.append(tmp_path / f"c{i}.png")
        Image.fromarray(frame).save(paths[-1])
    assert main(["simulate-burst", *map(str, paths), "--camera", "jetcam19m", "--exposures-us", *EXPOSURES,
                 "-o", str(tmp_path / "clip"), "-q"]) == 0
    frames = frames_of(tmp_path / "clip").astype(np.float64)
    centre = [float((f.mean(axis=0) * np.arange(W)).sum() / f.mean(axis=0).sum()) for f in frames]
    assert centre[0] < centre[1] < centre[2], centre
    # the columns the bar never reaches: the same signal per us in every frame (no shake moved the scene)
    assert frames[0][:, 30:].mean() / 872 == pytest.approx(frames[2][:, 30:].mean() / 583, rel=0.1)


def test_video_clip_equals_its_frames(tmp_path):
    """A (lossless) video file gives the same burst as its frames given as files: --clip-start/--clip-frames pick
    the frames that span the budget."""
    frames = np.full((9, H, W, 3), 90, np.uint8)
    for i in range(9):
        frames[i, :, 2 + 3 * i : 6 + 3 * i] = 250
    write_video(tmp_path / "clip.mkv", frames, 30.0)  # ffv1: bit-exact
    paths = []
    for i in range(2, 7):
        paths.append(str(tmp_path / f"f{i}.png"))
        Image.fromarray(frames[i]).save(paths[-1])
    common = ["--camera", "jetcam19m", "--exposures-us", *EXPOSURES, "-q"]
    assert main(["simulate-burst", str(tmp_path / "clip.mkv"), "--clip-start", "2", "--clip-frames", "5",
                 "-o", str(tmp_path / "v"), *common]) == 0
    assert main(["simulate-burst", *paths, "-o", str(tmp_path / "p"), *common]) == 0
    np.testing.assert_array_equal(frames_of(tmp_path / "v"), frames_of(tmp_path / "p"))


@pytest.mark.parametrize("args,status,words", [
    (["--exposures-us", "1000", "1000", "1000"], 2, ["--exposures-us", "budget"]),
    ([], 2, ["--model", "--exposures-us"]),
    (["--exposures-us", *EXPOSURES, "--camera", "nocam"], 2, ["--camera nocam", "jetcam19m"]),
    (["--exposures-us", *EXPOSURES, "--light", "-1"], 2, ["--light"]),
])
def test_bad_arguments_one_line_nothing_written(tmp_path, capsys, args, status, words):
    img = gray_image(tmp_path / "scene.png")
    argv = ["simulate-burst", str(img), "-o", str(tmp_path / "out"), *args]
    if "--camera" not in args:
        argv += ["--camera", "jetcam19m"]
    assert main(argv) == status
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert not (tmp_path / "out").exists()


def test_missing_image_is_a_data_error(tmp_path, capsys):
    assert simulate(tmp_path, tmp_path / "nope.png") == 1
    assert "nope.png" in capsys.readouterr().err
    assert not (tmp_path / "burst").exists()


# ----------------------------------------------------------------------------- the shipped sample
SAMPLE = ROOT / "examples" / "burst"


def test_shipped_sample_is_what_its_command_makes(tmp_path):
    """The README.txt beside the sample records the command; run from the repository root it makes the same
    bytes."""
    readme = (SAMPLE / "README.txt").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.strip().startswith("gimbal simulate-burst"))
    argv = command.split()[1:]
    argv = [str(ROOT / a) if a.startswith("examples/") and not a.startswith("examples/burst") else a for a in argv]
    argv[argv.index("-o") + 1] = str(tmp_path / "burst")
    assert main(argv) == 0
    for name in ("frame_1.png", "frame_2.png", "frame_3.png", "exposures.json", "exposures_us.txt"):
        assert (SAMPLE / name).read_bytes() == (tmp_path / "burst" / name).read_bytes(), name
    assert sum(p.stat().st_size for p in SAMPLE.parent.rglob("*") if p.is_file()) < 300_000


def test_shipped_sample_merges_with_the_readme_flags(tmp_path, capsys):
    """The README's infer command on the sample (a gray burst; a mono model like the default one) needs no channel
    or level flag, and neither saturates nor warns."""
    params = {"seed": 0, "exposure": {"n": 3, "idle_slot": True},
              "model": {"channels": 1, "kpn_base_channels": 4, "kpn_depth": 1, "flow_levels": 2,
                        "flow_channels": [4, 4, 4]}, "variants": {"gimbal": {}}}
    torch.manual_seed(0)
    model = tmp_path / "m.pt"
    save_system(model, GimbalSystem.from_params(params), params, "gimbal")
    exposures = (SAMPLE / "exposures_us.txt").read_text().split()
    out = tmp_path / "out.png"
    assert main(["infer", "--frames", *[str(SAMPLE / f"frame_{i}.png") for i in (1, 2, 3)], "--exposures-us",
                 *exposures, "--camera", "jetcam19m", "--model", str(model), "-o", str(out),
                 "--output-linear", str(tmp_path / "out_linear.tiff")]) == 0
    err = capsys.readouterr().err
    assert "saturate" not in err and "--convert-channels" not in err, err
    merged = read_frame(out)
    assert merged.shape == read_frame(SAMPLE / "frame_1.png").shape and 0 < merged.mean() < 65535
