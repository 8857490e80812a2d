"""The user-facing ``gimbal`` CLI: ``infer`` on real-burst files and ``schedule``.

A tiny untrained system is saved with ``save_system``; synthetic bursts are written as
16-bit PNG (with an independent minimal PNG writer), TIFF and .npy; the CLI output must
equal ``system.reconstruct`` on the same inputs after 16-bit quantization.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from gimbal.cli import main
from gimbal.inference.frame_files import read_frame
from gimbal.system import GimbalSystem, load_system, save_system

# jetcam19m (the synthetic experiment's timing): T = 3 ms, dt_min = 0, dt_ro = 400 us, idle slot, 10-bit ADC
BUDGET_US = 3000.0
READOUT_US = 400.0
MAX_DN = 1023  # 2^10 - 1
EXPOSURES_US = [872.0, 234.0, 583.0]  # the paper's learned schedule: 1689 + 3 x 400 + 111 idle = 3000 us
H, W = 19, 23  # not a multiple of the network's padding multiple: exercises pad + crop


def tiny_params(channels: int) -> dict:
    return {
        "seed": 0,
        "exposure": {"n": 3, "idle_slot": True, "init_us": EXPOSURES_US},
        "model": {"channels": channels, "kpn_base_channels": 4, "kpn_depth": 1, "flow_levels": 2,
                  "flow_channels": [8, 8, 8]},
        "variants": {"gimbal": {}},
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    out = {}
    for name, c in (("rgb", 3), ("mono", 1)):
        torch.manual_seed(0)
        params = tiny_params(c)
        save_system(d / f"{name}.pt", GimbalSystem.from_params(params), params, "gimbal")
        out[name] = d / f"{name}.pt"
    return out


def synthetic_burst(channels: int = 3, seed: int = 0) -> np.ndarray:
    """``(n, H, W, C)`` uint16 10-bit DN: a smooth scene shifting by one pixel per frame, scaled by dt_i / T."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0 : W + 4].astype(np.float64)
    scene = 0.45 + 0.3 * np.sin(xx / 3.0)[..., None] * np.cos(yy[..., None] / 4.0 + np.arange(channels))
    frames = []
    for i, dt in enumerate(EXPOSURES_US):
        clean = scene[:, i : i + W] * dt / BUDGET_US * MAX_DN
        frames.append(np.clip(np.rint(clean + rng.normal(0, 3, clean.shape)), 0, MAX_DN))
    return np.stack(frames).astype(np.uint16)


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Minimal independent 16-bit PNG writer (no filtering): gray (H, W) or RGB (H, W, 3)."""
    color = 0 if arr.ndim == 2 else 2
    h, w = arr.shape[:2]
    rows = arr.astype(">u2").reshape(h, -1).view(np.uint8)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h, depth, color = struct.unpack(">IIBB", data[16:26])
    return w, h, depth, color


def write_frames(d: Path, frames: np.ndarray, ext: str = ".png", prefix: str = "f") -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = d / f"{prefix}{i}{ext}"
        if ext == ".png":
            write_png16(p, f[..., 0] if f.shape[-1] == 1 else f)
        elif ext == ".tiff":
            tifffile.imwrite(p, f[..., 0] if f.shape[-1] == 1 else f)
        else:
            np.save(p, f)
        paths.append(str(p))
    return paths


def reference(model: Path, frames: np.ndarray, white: float = MAX_DN) -> tuple[np.ndarray, np.ndarray]:
    """``system.reconstruct`` on the same burst, quantized to 16 bits as ``(H, W, C)`` (image, linear)."""
    system = load_system(model)
    burst = torch.from_numpy((frames / white).astype(np.float32)).permute(0, 3, 1, 2)[None]
    with torch.no_grad():
        out = system.reconstruct(burst, torch.tensor(EXPOSURES_US, dtype=torch.float64) * 1e-6)

    def q(x: torch.Tensor) -> np.ndarray:
        return np.rint(x[0].clamp(0, 1).numpy() * 65535).astype(np.uint16).transpose(1, 2, 0)

    return q(out.image), q(out.linear)


def infer_args(model: Path, frames: list[str], out: Path, exposures=EXPOSURES_US, *extra: str) -> list[str]:
    return ["infer", "--frames", *frames, "--exposures-us", *[str(e) for e in exposures],
            "--camera", "jetcam19m", "--model", str(model), "-o", str(out), "--device", "cpu", *extra]


# ----------------------------------------------------------------------------- round trips
def test_infer_png_matches_reconstruct(models, tmp_path, capsys):
    frames = synthetic_burst()
    paths = write_frames(tmp_path / "in", frames)
    out, lin = tmp_path / "out.png", tmp_path / "lin.tiff"
    assert main(infer_args(models["rgb"], paths, out, EXPOSURES_US, "--output-linear", str(lin))) == 0
    err = capsys.readouterr().err
    assert "schedule used: exposures [872.0, 234.0, 583.0] us" in err and "warning" not in err
    assert png_header(out) == (W, H, 16, 2)  # 16-bit RGB
    image, linear = reference(models["rgb"], frames)
    got = read_frame(out)
    assert got.dtype == np.uint16 and got.shape == (H, W, 3)
    assert 50 < len(np.unique(got)) and got.max() < 65535  # a real image, not clipped flat
    np.testing.assert_array_equal(got, image)
    lin_got = tifffile.imread(lin)
    assert lin_got.dtype == np.uint16
    np.testing.assert_array_equal(lin_got, linear)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "lin.tiff", "out.png"]  # no temp files left


def test_gain_equals_a_brighter_capture(models, tmp_path):
    """--gain g on a burst is the merge of the same burst captured g times brighter (the network sees g x the DN):
    half the DN with --gain 2 merges to what the full DN merges to without it (reference: system.reconstruct on
    the full burst). Without the gain the half-bright burst merges to another image."""
    frames = synthetic_burst()
    half = np.rint(frames / 2).astype(frames.dtype)  # the burst at half the light (DN rounded)
    out_gain, out_none = tmp_path / "gain.png", tmp_path / "none.png"
    paths = write_frames(tmp_path / "in", half)
    assert main(infer_args(models["rgb"], paths, out_gain, EXPOSURES_US, "--gain", "2")) == 0
    assert main(infer_args(models["rgb"], paths, out_none)) == 0
    image, _ = reference(models["rgb"], half.astype(np.float64) * 2)
    got = read_frame(out_gain)
    assert np.abs(got.astype(np.int64) - image).max() <= 1
    assert np.abs(read_frame(out_none).astype(np.int64) - image).mean() > 100
    assert main(infer_args(models["rgb"], paths, tmp_path / "x.png", EXPOSURES_US, "--gain", "0")) == 2


def test_infer_subprocess_and_schedule_json(models, tmp_path):
    frames = synthetic_burst()
    paths = write_frames(tmp_path / "in", frames)
    out = tmp_path / "out.png"
    script = shutil.which("gimbal", path=str(Path(sys.executable).parent))
    base = [script] if script else [sys.executable, "-m", "gimbal.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([*base, *infer_args(models["rgb"], paths, out)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "872.0" in proc.stderr and out.is_file()
    image, _ = reference(models["rgb"], frames)
    got = read_frame(out)
    assert got.shape == image.shape
    assert np.abs(got.astype(np.int64) - image).max() <= 1  # another process: at most float-order rounding

    proc = subprocess.run([sys.executable, "-m", "gimbal.cli", "schedule", "--model", str(models["rgb"]), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sched = json.loads(proc.stdout)
    np.testing.assert_allclose(sched["durations_us"], EXPOSURES_US, atol=1e-3)
    assert sched["camera"] == "jetcam19m" and sched["n"] == 3


@pytest.mark.parametrize("kind", ["tiff", "npy_uint16", "npy_float"])
def test_tiff_and_npy_inputs(models, tmp_path, kind):
    frames = synthetic_burst()
    if kind == "tiff":
        paths = write_frames(tmp_path, frames, ".tiff")
    elif kind == "npy_uint16":
        paths = write_frames(tmp_path, frames, ".npy")
    else:  # floats are taken as already normalized to [0, 1]
        paths = write_frames(tmp_path, (frames / MAX_DN).astype(np.float32), ".npy")
    out = tmp_path / "out.tiff"
    assert main(infer_args(models["rgb"], paths, out)) == 0
    got = tifffile.imread(out)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, reference(models["rgb"], frames)[0])


def test_msb_aligned_white_level(models, tmp_path, capsys):
    """10-bit data shifted into 16 bits is rejected with a hint, and accepted with --white-level 65472."""
    frames = synthetic_burst()
    paths = write_frames(tmp_path, frames << 6)  # MSB-aligned: 16 - 10 = 6 bits of shift
    out = tmp_path / "out.png"
    assert main(infer_args(models["rgb"], paths, out)) == 1
    assert "--white-level 65472" in capsys.readouterr().err and not out.exists()  # 1023 << 6
    assert main(infer_args(models["rgb"], paths, out, EXPOSURES_US, "--white-level", "65472")) == 0
    np.testing.assert_array_equal(read_frame(out), reference(models["rgb"], frames)[0])


def test_mono_model_8bit_frames_jpeg_and_channel_conversion(models, tmp_path, capsys):
    frames8 = (synthetic_burst(channels=1) >> 2).astype(np.uint8)  # 10 -> 8-bit files: white level 255
    paths = []
    for i, f in enumerate(frames8):
        Image.fromarray(f[..., 0]).save(tmp_path / f"g{i}.png")
        paths.append(str(tmp_path / f"g{i}.png"))
    out = tmp_path / "out.png"
    assert main(infer_args(models["mono"], paths, out)) == 0
    with Image.open(out) as im:  # independent reader for 16-bit gray
        assert im.mode.startswith("I;16") and im.size == (W, H)
        got = np.asarray(im)
    np.testing.assert_array_equal(got, reference(models["mono"], frames8, white=255)[0][..., 0])
    jpg = tmp_path / "out.jpg"
    assert main(infer_args(models["mono"], paths, jpg)) == 0
    with Image.open(jpg) as im:
        assert im.mode == "L" and im.size == (W, H)

    rgb_paths = write_frames(tmp_path / "rgb", synthetic_burst())
    capsys.readouterr()
    assert main(infer_args(models["mono"], rgb_paths, out)) == 2
    assert "--convert-channels" in capsys.readouterr().err
    assert main(infer_args(models["mono"], rgb_paths, out, EXPOSURES_US, "--convert-channels")) == 0


# ----------------------------------------------------------------------------- rejected inputs
def _bad_case(case: str, d: Path) -> tuple[list[str], list[float], list[str]]:
    frames = synthetic_burst()
    paths = write_frames(d, frames)
    if case == "frame_count":
        return paths[:2], EXPOSURES_US, []
    if case == "model_n":
        extra = write_frames(d, frames[:1], prefix="x")
        return [*paths, *extra], [500.0, 200.0, 500.0, 200.0], []
    if case == "size":
        write_png16(Path(paths[1]), frames[1][:-2])
    elif case == "bit_depth":
        Image.fromarray((frames[2] >> 2).astype(np.uint8)).save(paths[2])
    elif case == "channels":
        write_png16(Path(paths[1]), frames[1][..., 0])
    elif case == "missing":
        paths[1] = str(d / "nope.png")
    elif case == "unreadable":
        Path(paths[0]).write_bytes(b"not a png")
    elif case == "budget":
        return paths, [872.0, 234.0, 983.0], []
    elif case == "min_exposure":  # jetcam19m has dt_min = 0; the indoor experiment's dt_min is 500 us
        return paths, EXPOSURES_US, ["--camera", "indoor"]
    elif case == "non_positive":
        return paths, [872.0, 0.0, 583.0], []
    elif case == "readout_override":
        return paths, EXPOSURES_US, ["--readout-us", "500"]  # 1689 + 3 x 500 = 3189 us > T
    elif case == "bad_output":
        return paths, EXPOSURES_US, ["-o", str(d / "out.bmp")]
    return paths, EXPOSURES_US, []


BAD = {  # case -> (exit status, words the one-line message must contain)
    "frame_count": (2, ["2 frame(s)", "3 exposure"]),
    "model_n": (2, ["n=3", "got 4"]),
    "size": (1, ["f1.png", "size", "23x17"]),
    "bit_depth": (1, ["f2.png", "bit depth", "uint8"]),
    "channels": (1, ["f1.png", "1 channel"]),
    "missing": (1, ["nope.png", "not found"]),
    "unreadable": (1, ["f0.png", "cannot decode"]),
    "budget": (2, ["budget", "3000", "3289"]),  # 872 + 234 + 983 + 3 x 400 = 3289 us > T = 3000 us
    "min_exposure": (2, ["dt_min", "234.0", "500", "indoor"]),
    "non_positive": (2, ["positive"]),
    "readout_override": (2, ["budget", "readouts of 500", "3189"]),
    "bad_output": (2, ["out.bmp", "extension"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_rejected(models, tmp_path, capsys, case):
    paths, exposures, extra = _bad_case(case, tmp_path / "in")
    out = tmp_path / "out.png"
    code = main(infer_args(models["rgb"], paths, out, exposures, *extra))
    err = capsys.readouterr().err.strip().splitlines()
    status, words = BAD[case]
    assert code == status, err
    assert err[-1].startswith("error: ") and all(w in err[-1] for w in words), err[-1]
    assert not out.exists() and not (tmp_path / "in" / "out.bmp").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())  # no temp file left


def test_schedule_mismatch_warns_and_budget_override(models, tmp_path, capsys):
    paths = write_frames(tmp_path, synthetic_burst())
    out = tmp_path / "out.png"
    assert main(infer_args(models["rgb"], paths, out, [500.0, 500.0, 500.0])) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "[872.0, 234.0, 583.0]" in err  # the model's trained schedule
    assert main(infer_args(models["rgb"], paths, out, [700.0, 700.0, 700.0])) == 2  # 2100 + 3 x 400 = 3300 us > T
    assert main(infer_args(models["rgb"], paths, out, [700.0, 700.0, 700.0], "--budget-us", "3300")) == 0
    err = capsys.readouterr().err
    assert "budget T 3300.0 us" in err and "idle 0.0 us" in err


def test_schedule_command_and_help(models, tmp_path, capsys):
    plot = tmp_path / "sched.png"
    assert main(["schedule", "--model", str(models["rgb"]), "--json", "--plot", str(plot)]) == 0
    sched = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(sched["durations_us"], EXPOSURES_US, atol=1e-3)
    starts = [0.0, 872.0 + READOUT_US, 872.0 + 234.0 + 2 * READOUT_US]  # t_{i+1} = t_i + dt_i + dt_ro
    np.testing.assert_allclose(sched["starts_us"], starts, atol=1e-3)
    np.testing.assert_allclose(sched["idle_us"], BUDGET_US - sum(EXPOSURES_US) - 3 * READOUT_US, atol=1e-3)
    assert png_header(plot)[:2] > (100, 50)
    assert main(["schedule", "--model", str(models["rgb"])]) == 0
    text = capsys.readouterr().out
    assert "872.0" in text and "budget T 3000.0 us" in text and "idle 111.0 us" in text
    assert main(["schedule", "--model", str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "infer" in help_text and "schedule" in help_text


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_schedule_plot_formats(models, tmp_path, capsys, suffix, magic):
    plot = tmp_path / f"sched{suffix}"
    assert main(["schedule", "--model", str(models["rgb"]), "-q", "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["sched.xyz", "sched", "sched.png.txt"])
def test_schedule_plot_unknown_suffix_is_refused(models, tmp_path, capsys, name):
    """Not a PNG under another name: a usage error naming --plot and the suffixes, before anything is written."""
    plot = tmp_path / name
    assert main(["schedule", "--model", str(models["rgb"]), "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --plot ") and name in err[0], err
    assert all(s in err[0] for s in (".png", ".svg", ".pdf")), err[0]
    assert captured.out == "" and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- model, camera and output errors
def test_garbage_model_one_line_error(models, tmp_path, capsys):
    paths = write_frames(tmp_path / "in", synthetic_burst())
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint\n" * 10)
    for argv in (infer_args(bad, paths, tmp_path / "out.png"), ["schedule", "--model", str(bad)]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "garbage.pt" in err[0], err
        assert "weights_only" not in err[0] and "--model" in err[0]
    assert not (tmp_path / "out.png").exists()


def test_unknown_camera_names_flag_and_choices(models, tmp_path, capsys):
    paths = write_frames(tmp_path / "in", synthetic_burst())
    argv = infer_args(models["rgb"], paths, tmp_path / "out.png")
    argv[argv.index("--camera") + 1] = "nosuch"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--camera nosuch" in err[0] and "jetcam19m" in err[0], err
    assert "params.yaml" not in err[0]


def test_output_into_missing_directory_is_an_error(models, tmp_path, capsys):
    paths = write_frames(tmp_path / "in", synthetic_burst())
    missing = tmp_path / "no" / "such"
    for extra in ([], ["--output-linear", str(missing / "lin.tiff")]):
        out = (missing / "out.png") if not extra else (tmp_path / "out.png")
        assert main(infer_args(models["rgb"], paths, out, EXPOSURES_US, *extra)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(missing) in err[0] and "does not exist" in err[0], err
    assert not (tmp_path / "no").exists() and not (tmp_path / "out.png").exists()


def test_cli_tiles_large_frames_under_a_memory_budget(models, tmp_path, capsys):
    """A frame too large for --max-memory-gb is merged in tiles; the result equals the untiled merge."""
    rng = np.random.default_rng(3)
    h, w = 260, 300
    yy, xx = np.mgrid[0:h, 0:w]
    scene = 0.4 + 0.3 * np.sin(xx / 6.0) * np.cos(yy / 9.0)
    frames = np.stack([np.clip(np.rint(scene * dt / BUDGET_US * MAX_DN + rng.normal(0, 3, scene.shape)), 0, MAX_DN)
                       for dt in EXPOSURES_US]).astype(np.uint16)[..., None]
    paths = write_frames(tmp_path / "in", frames)
    whole, tiled = tmp_path / "whole.npy", tmp_path / "tiled.npy"
    assert main(infer_args(models["mono"], paths, whole)) == 0
    assert "tiled:" not in capsys.readouterr().err
    assert main(infer_args(models["mono"], paths, tiled, EXPOSURES_US, "--max-memory-gb", "0.12",
                           "--max-flow-px", "2")) == 0  # the untrained flow is zero: a small margin is exact
    err = capsys.readouterr().err
    assert "tiled:" in err and "warning" not in err
    a, b = np.load(whole), np.load(tiled)
    assert a.shape == b.shape == (h, w, 1)
    np.testing.assert_allclose(b, a, atol=1e-3, rtol=0)
    assert main(infer_args(models["mono"], paths, tiled, EXPOSURES_US, "--max-memory-gb", "0")) == 2
    assert "--max-memory-gb" in capsys.readouterr().err


# ----------------------------------------------------------------------------- results that cannot be right (issue 19)
def test_model_file_with_flipped_bytes_is_refused(models, tmp_path, capsys):
    """Four flipped bytes in a model file made infer write values up to 6e32 with status 0; now one line names it."""
    from model_fixtures import flip_tensor_bytes

    bad = tmp_path / "flipped.pt"
    shutil.copy(models["rgb"], bad)
    flip_tensor_bytes(bad)
    paths = write_frames(tmp_path / "in", synthetic_burst())
    out = tmp_path / "out.npy"
    for argv in (infer_args(bad, paths, out), ["schedule", "--model", str(bad)]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0] == f"error: {bad}: corrupt: tensor checksum mismatch; re-train or restore it"
    assert not out.exists()


def test_non_finite_merge_is_refused_naming_the_model(tmp_path, capsys):
    """Weights of a diverged run (NaN, saved with a valid checksum): no image is written, the model is named."""
    params = tiny_params(3)
    system = GimbalSystem.from_params(params)
    with torch.no_grad():
        for q in system.net.parameters():
            q.fill_(float("nan"))
    model = tmp_path / "diverged.pt"
    save_system(model, system, params, "gimbal")
    paths = write_frames(tmp_path / "in", synthetic_burst())
    out = tmp_path / "out.npy"
    assert main(infer_args(model, paths, out)) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(f"error: {model}: ") and "non-finite" in err[0], err
    assert not out.exists()


def test_ordinary_8bit_video_frames_are_refused_naming_simulate_burst(models, tmp_path, capsys):
    """Ordinary, well exposed 8-bit video frames are not raw captures of 872/234/583 us: eq. 14 scales the 234 us
    frame by ~13x and most of the normalized burst saturates. 8-bit frames so saturated are refused (exit 1, nothing
    written) with one line saying what to do; the same frames as 16-bit files still merge, with a warning that says
    the same; a real raw burst (the other tests) gives neither."""
    yy, xx = np.mgrid[0:H, 0:W]
    frame = (128 + 60 * np.sin(xx / 3.0)[..., None] * np.cos(yy[..., None] / 4.0 + np.arange(3))).astype(np.uint8)
    paths = []
    for i in range(3):
        Image.fromarray(frame).save(tmp_path / f"v{i}.png")
        paths.append(str(tmp_path / f"v{i}.png"))
    out = tmp_path / "out.png"
    assert main(infer_args(models["rgb"], paths, out)) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(f"error: {paths[0]}: "), err
    assert all(w in err[0] for w in ("8-bit", "ordinary photos", "% of", "gimbal simulate-burst", "linearise",
                                     "16-bit")), err[0]
    assert not out.exists()

    paths16 = write_frames(tmp_path / "v16", np.repeat(frame[None].astype(np.uint16) * 257, 3, axis=0))
    assert main(infer_args(models["rgb"], paths16, out, EXPOSURES_US, "--white-level", "65535")) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "saturate" in warnings[0], warnings
    assert all(w in warnings[0] for w in ("raw captures", "--white-level", "--camera", "% of",
                                          "gimbal simulate-burst")), warnings[0]
    assert out.is_file()
