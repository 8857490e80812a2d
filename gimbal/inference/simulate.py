"""A raw burst from an ordinary image or clip: what a camera would capture with a given shutter schedule.

``gimbal simulate-burst`` runs the project's own camera model (:class:`gimbal.sensor.model.Sensor`, eval mode:
exact Poisson, read noise, response, gain, PRNU, the m-bit ADC; eqs. 5-10) on a scene made the way evaluation
makes one from full frames (:func:`gimbal.data.augment.augment_full_frames`):

1. the scene: one sRGB image held still for the whole budget ``T`` (moved by the released camera shake,
   ``--shake-std-deg``, over ``--samples`` instants), or a clip (frame files, or ``--clip-frames`` frames of a
   video file) whose frames span ``[0, T]`` uniformly;
2. inverse sRGB gamma, times the light level (``--light``, W/m^2 of an sRGB white) -> photo-electrons per second
   (eq. 4, :func:`gimbal.data.augment.to_irradiance`);
3. the exposures ``dt_i`` starting back to back at ``t_1 = 0`` (Fig. 3), integrated (eq. 5), then the sensor's
   noise and response (eqs. 6-10).

The frames are written as 16-bit PNG or TIFF holding the camera's DN, ``0 .. 2^m - 1`` (not MSB-aligned), which is
what ``gimbal infer`` reads with its default white level ``2^m - 1``; the exposures go beside them
(``exposures.json``, the keys of ``gimbal schedule --json``, and ``exposures_us.txt``, the values for
``--exposures-us``), with a ``README.txt`` recording the command. The same arguments and ``--seed`` give the same
bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gimbal.data.augment import AugmentConfig, augment_full_frames, to_irradiance
from gimbal.data.video import read_frames
from gimbal.errors import DataError, ParamError
from gimbal.inference.frame_files import UsageError, _png16_bytes, output_error, read_frame
from gimbal.inference.infer import US, check_exposures, read_model_schedule, schedule_us, with_timing
from gimbal.io import atomic_path, disk_full_named
from gimbal.sensor.camera import CameraSpec, camera_from_file, camera_names, get_camera
from gimbal.sensor.integrate import integrate_exposures
from gimbal.sensor.model import Sensor
from gimbal.system import load_system

log = logging.getLogger("gimbal.inference.simulate")

DEFAULT_LIGHT_W_M2 = 0.019  # the middle of the training light level U[0.018, 0.02] W/m^2 (augment.white_level)
DEFAULT_SAMPLES = 121  # instants spanning T for a still image (the released code's training window)
FRAME_FORMATS = ("png", "tiff")
#: the shake focal lengths: the training crop's (augment.crop 128: fx = 365 px), so a shake of the default std moves
#: the pixels as much as in training
SIM_AUGMENT = AugmentConfig()


@dataclass
class SimulatedBurst:
    """What :func:`simulate_burst` made.

    Attributes:
        frames: ``(n, C, H, W)`` uint16 raw DN, ``0 .. 2^m - 1``.
        schedule: the shutter schedule in microseconds (:func:`gimbal.inference.infer.schedule_us` keys, plus
        ``camera``).
        camera: the capturing camera.
    """

    frames: np.ndarray
    schedule: dict[str, Any]
    camera: CameraSpec


def resolve_camera(name: str | None, model_camera: CameraSpec | None, experiment: str = "synthetic",
                   budget_us: float | None = None, readout_us: float | None = None) -> CameraSpec:
    """The capture camera: a built-in name (a preset, an alias or an experiment name), a ``gimbal calibrate``
    preset file (``.yaml``/``.yml``, with the timing of ``experiment``), or (``None``) the model's camera; then the
    budget / readout overrides (us). Errors are :class:`UsageError` / :class:`ParamError` naming ``--camera``."""
    if name is not None and Path(name).suffix.lower() in (".yaml", ".yml"):
        base = camera_from_file(name, experiment, "--camera")
    elif name is not None:
        try:
            base = get_camera(name)
        except ParamError as exc:
            raise UsageError(f"--camera {name}: unknown camera; use one of {', '.join(camera_names())} or a "
                             "camera preset file written by `gimbal calibrate` (.yaml)") from exc
    elif model_camera is not None:
        base = model_camera
    else:
        raise UsageError("no camera: give --camera (a built-in name or a preset .yaml) or --model")

    return with_timing(base, budget_us, readout_us)


VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm")
DEFAULT_CLIP_FRAMES = 31  # the pipeline's clips (data: clips.frames)


def read_scene(paths: Sequence[str | os.PathLike[str]], clip_start: int = 0,
               clip_frames: int = DEFAULT_CLIP_FRAMES) -> torch.Tensor:
    """The sRGB frames of ``paths`` as ``(1, T, C, H, W)`` float32 in [0, 1] (integers over their type's maximum,
    floats as they are). Every frame must have the same size and channels. One video file (:data:`VIDEO_EXTS`)
    gives its frames ``[clip_start, clip_start + clip_frames)``."""
    if len(paths) == 1 and Path(paths[0]).suffix.lower() in VIDEO_EXTS:
        if clip_start < 0 or clip_frames < 2:
            raise UsageError(f"--clip-start must be >= 0 and --clip-frames >= 2, got {clip_start} and {clip_frames}")
        if not Path(paths[0]).is_file():
            raise DataError(f"{paths[0]}: video file not found")
        rgb = read_frames(paths[0], clip_start, clip_frames)  # (T, H, W, 3) uint8
        return torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(0, 3, 1, 2)[None].contiguous()
    frames = []
    for p in paths:
        raw = read_frame(p)
        if raw.dtype.kind == "f":
            x = raw.astype(np.float32)
            if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
                raise DataError(f"{p}: floating-point frame values must be in [0, 1] (sRGB), got "
                                f"[{np.nanmin(x):g}, {np.nanmax(x):g}]; scale it or save an 8/16-bit image")
        else:
            x = raw.astype(np.float32) / float(np.iinfo(raw.dtype).max)
        x = x[:, :, None] if x.ndim == 2 else x
        if frames and x.shape != frames[0].shape:
            raise DataError(f"{p}: frame shape {x.shape[1]}x{x.shape[0]}x{x.shape[2]} differs from {paths[0]} "
                            f"({frames[0].shape[1]}x{frames[0].shape[0]}x{frames[0].shape[2]}); give frames of "
                            "one clip")
        frames.append(x)
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].contiguous()


def simulate_burst(
    images: Sequence[str | os.PathLike[str]],
    camera: CameraSpec,
    exposures_us: Sequence[float],
    channels: int = 1,
    light_w_m2: float = DEFAULT_LIGHT_W_M2,
    shake_std_deg: Sequence[float] | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    clip_start: int = 0,
    clip_frames: int = DEFAULT_CLIP_FRAMES,
) -> SimulatedBurst:
    """The raw burst ``camera`` captures of the scene in ``images`` with exposures ``exposures_us`` (see the module
    docstring).

    Args:
        images: one sRGB image (a still scene, shaken over ``samples`` instants), the ``T >= 2`` frames of a clip
            spanning the budget ``T``, or one video file (its frames ``[clip_start, clip_start + clip_frames)`` are
            the clip).
        camera: the capturing camera (timing included).
        exposures_us: the ``n`` exposure durations in microseconds, back to back from ``t = 0``; they must fit the
            camera (:func:`gimbal.inference.infer.check_exposures`).
        channels: 1 (luma, as the paper's camera) or 3 (RGB).
        light_w_m2: irradiance of an sRGB white, W/m^2 (the training light: 0.018-0.02).
        shake_std_deg: per-instant std (roll, pitch, yaw) of the released camera shake, degrees (default: still for
            a clip, the training shake for one image; ``(0, 0, 0)`` keeps it still).
        samples: instants spanning ``T`` for one image (a clip: its frames).
        seed: the shake and the sensor noise; the same seed gives the same burst.
    Returns:
        :class:`SimulatedBurst` with ``frames (n, C, H, W)`` uint16 DN.
    """
    if not images:
        raise UsageError("no input image given")
    if channels not in (1, 3):
        raise UsageError(f"--channels must be 1 (gray, as the paper's camera) or 3 (RGB), got {channels}")
    if not (isinstance(light_w_m2, (int, float)) and math.isfinite(light_w_m2) and light_w_m2 > 0):
        raise UsageError(f"--light must be a positive irradiance in W/m^2 (training: 0.018-0.02), got {light_w_m2}")
    check_exposures(exposures_us, camera)
    still = len(images) == 1 and Path(images[0]).suffix.lower() not in VIDEO_EXTS
    if still and samples < 2:
        raise UsageError(f"--samples must be at least 2 (instants spanning the budget), got {samples}")
    if shake_std_deg is None:
        shake_std_deg = SIM_AUGMENT.shake_std_deg if still else (0.0, 0.0, 0.0)
    shake = tuple(float(s) for s in shake_std_deg)
    if len(shake) != 3 or not all(math.isfinite(s) and s >= 0 for s in shake):
        raise UsageError(f"--shake-std-deg must be three non-negative degrees (roll pitch yaw), got {list(shake)}")
    scene = read_scene(images, clip_start, clip_frames)
    if scene.shape[2] == 1 and channels == 3:
        raise UsageError(f"{images[0]}: a grayscale image cannot give an RGB burst; pass --channels 1 or a colour "
                         "image")
    clip = scene.expand(1, samples, *scene.shape[2:]) if still else scene
    # the evaluation's full-frame scene at scale 1 (center = out_size: no resize), its shake and its light
    augment = dataclasses.replace(SIM_AUGMENT, center=SIM_AUGMENT.crop, out_size=SIM_AUGMENT.crop,
                                  shake_std_deg=shake, white_level=(float(light_w_m2), float(light_w_m2)))
    gen = torch.Generator().manual_seed(int(seed))
    linear = augment_full_frames(clip, augment, gen, channels).linear.double()  # (1, T, C, H, W) in [0, 1]
    irradiance = to_irradiance(linear, camera, augment.white_level, gen)  # e-/s (eq. 4)
    sched = schedule_us(exposures_us, camera)
    durations = torch.tensor(sched["durations_us"], dtype=torch.float64) * US
    starts = torch.tensor(sched["starts_us"], dtype=torch.float64) * US
    mean = integrate_exposures(irradiance, starts, durations, camera.budget_s)  # eq. (5)
    sensor = Sensor(camera, n=len(durations), learn_exposure=False, seed=seed).eval()  # exact Poisson
    with torch.no_grad():
        burst = sensor.capture(mean, durations)  # eqs. (6)-(10): DN / (2^m - 1)
    dn = torch.round(burst[0] * camera.max_dn).clamp(0, camera.max_dn).to(torch.int32).numpy().astype(np.uint16)
    return SimulatedBurst(dn, {"camera": camera.name, **sched}, camera)


def frame_names(n: int, fmt: str) -> list[str]:
    """The file names of a simulated burst: ``frame_1.png`` ... ``frame_n.png`` (capture order)."""
    return [f"frame_{i + 1}.{fmt}" for i in range(n)]


def _frame_bytes(frame: np.ndarray, fmt: str, tmp: Path) -> None:
    """``frame (C, H, W)`` uint16 DN -> 16-bit gray / RGB ``fmt`` file at ``tmp``."""
    arr = np.ascontiguousarray(frame.transpose(1, 2, 0))
    arr = arr[:, :, 0] if arr.shape[2] == 1 else arr
    if fmt == "png":
        tmp.write_bytes(_png16_bytes(arr))
    else:
        import tifffile

        tifffile.imwrite(tmp, arr, photometric="minisblack" if arr.ndim == 2 else "rgb")


def write_burst(out_dir: str | os.PathLike[str], sim: SimulatedBurst, fmt: str = "png",
                command: str | None = None) -> list[Path]:
    """Write ``sim`` into ``out_dir`` (made if missing): the frames (:func:`frame_names`), ``exposures.json``,
    ``exposures_us.txt`` and ``README.txt`` (``command``: the command line that made it). All the files appear
    together, only when every one is written; other files in the folder stay. Returns the frame paths."""
    if fmt not in FRAME_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FRAME_FORMATS)}, got {fmt!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: is a file; give a folder for the burst")
    if not out.parent.is_dir():
        raise UsageError(f"-o {out}: directory {out.parent} does not exist; create it first or write elsewhere")
    sched = sim.schedule
    names = frame_names(len(sim.frames), fmt)
    exposures = " ".join(f"{d:g}" for d in sched["durations_us"])
    n, c, h, w = sim.frames.shape
    readme = (f"A raw burst simulated by `gimbal simulate-burst`: {n} frames of {w}x{h} "
              f"({'gray' if c == 1 else 'RGB'}), 16-bit {fmt.upper()} files holding the {sim.camera.bits}-bit DN "
              f"(0-{sim.camera.max_dn}) of camera '{sim.camera.name}', in capture order.\n"
              f"Exposures (us, back to back from t = 0, {sched['readout_us']:g} us readouts, budget "
              f"T = {sched['budget_us']:g} us): {exposures}\n")
    if command:
        readme += f"\nMade with:\n\n    {command}\n"
    readme += ("\nMerge it:\n\n    gimbal infer --frames " + " ".join(str(out / nm) for nm in names)
               + f" --exposures-us {exposures} --camera {sim.camera.name} --model models/gimbal.pt -o out.png\n")
    payload: dict[str, bytes | np.ndarray] = {nm: frame for nm, frame in zip(names, sim.frames, strict=True)}
    payload["exposures.json"] = (json.dumps(sched, indent=2, sort_keys=True) + "\n").encode()
    payload["exposures_us.txt"] = (exposures + "\n").encode()
    payload["README.txt"] = readme.encode()
    made = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            for name, data in payload.items():
                path = out / name
                try:
                    tmp = stack.enter_context(atomic_path(path))
                except OSError as exc:
                    raise output_error(path, exc) from exc
                with disk_full_named(path, lambda d=data: len(d) if isinstance(d, bytes) else d.nbytes):
                    if isinstance(data, bytes):
                        tmp.write_bytes(data)
                    else:
                        _frame_bytes(data, fmt, tmp)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return [out / nm for nm in names]


def simulate_files(images: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                   model: str | os.PathLike[str] | None = None, exposures_us: Sequence[float] | None = None,
                   camera: str | None = None, experiment: str = "synthetic", budget_us: float | None = None,
                   readout_us: float | None = None, channels: int | None = None,
                   light_w_m2: float = DEFAULT_LIGHT_W_M2, shake_std_deg: Sequence[float] | None = None,
                   samples: int = DEFAULT_SAMPLES, seed: int = 0, fmt: str = "png",
                   command: str | None = None, clip_start: int = 0,
                   clip_frames: int = DEFAULT_CLIP_FRAMES) -> list[Path]:
    """The ``gimbal simulate-burst`` command: the schedule from ``model`` (its learned exposures, camera and channel
    count) or ``exposures_us``, the camera from ``camera`` (default: the model's), then :func:`simulate_burst` and
    :func:`write_burst`. Returns the frame paths."""
    if (model is None) == (exposures_us is None):
        raise UsageError("give the schedule either as --model (a trained model's exposures) or as --exposures-us, "
                         "not both" if model is not None else
                         "no schedule: give --model (a trained model's exposures) or --exposures-us")
    if fmt not in FRAME_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FRAME_FORMATS)}, got {fmt!r}")
    model_camera = None
    if model is not None:
        sched = read_model_schedule(model)
        system = load_system(model)
        exposures_us = [float(d) for d in sched["durations_us"]]
        model_camera = system.sensor.camera
        channels = system.net.channels if channels is None else channels
    cam = resolve_camera(camera, model_camera, experiment, budget_us, readout_us)
    sim = simulate_burst(images, cam, exposures_us, 1 if channels is None else channels, light_w_m2,
                         shake_std_deg, samples, seed, clip_start, clip_frames)
    paths = write_burst(out_dir, sim, fmt, command)
    log.info("wrote %s (%s)", ", ".join(str(p) for p in paths), "exposures " + " ".join(
        f"{d:g}" for d in sim.schedule["durations_us"]) + " us")
    return paths
