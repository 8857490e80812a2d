"""The ``gimbal`` command: inference on real bursts, the learned shutter schedule, camera calibration, simulated
raw bursts, the merge as ONNX.

Subcommands::

    gimbal infer --frames f1.png f2.png f3.png --exposures-us 872 234 583 \\
                 --model models/gimbal.pt -o out.png [--output-linear out.tiff]
    gimbal schedule --model models/gimbal.pt [--json] [--plot schedule.png|.svg|.pdf]
    gimbal calibrate EMVA1288descriptor.txt --pixel-um 3.45 [--wavelength-nm 525] -o cameras/camera.yaml
    gimbal simulate-burst scene.png --model models/gimbal.pt -o my_burst   # or --camera C --exposures-us ...
    gimbal export --onnx gimbal.onnx --model models/gimbal.pt            # then infer --backend onnx
    gimbal plan --camera jetcam19m --lux 0.5 --gyro-dps 40 --focal-px 730 [--json]   # from a trained grid
    dvc exp run -n medium $(gimbal tier medium)                         # a named tier's params (tiers/*.yaml)

Also ``python -m gimbal.cli ...``. Errors print one line ``error: ...`` on stderr; the exit
status is 2 for usage errors (inconsistent arguments, exposures outside the camera's limits)
and 1 for data errors (missing/unreadable/mismatched files, bad model file, an output folder that
cannot be written, a full disk, frames too large for the memory); 130 after Ctrl-C, 143 after
SIGTERM. A refused or stopped run writes no output. An unexpected error prints ``internal error``
and leaves its traceback in a log file (``--debug`` prints it instead).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gimbal.cli_utils import run_guarded
from gimbal.errors import ParamError
from gimbal.inference.infer import DEFAULT_MAX_MEMORY_GB
from gimbal.inference.simulate import DEFAULT_CLIP_FRAMES, DEFAULT_LIGHT_W_M2, DEFAULT_SAMPLES, FRAME_FORMATS
from gimbal.inference.tiling import MAX_FLOW_PX
from gimbal.sensor.camera import camera_names

EXIT_DATA = 1
EXIT_USAGE = 2
OUT_OF_MEMORY_FIX = ("free memory, or give smaller inputs: crop or downscale the frames, or a smaller "
                     "--max-memory-gb for infer")


class _StderrHandler(logging.Handler):
    """Prints ``message`` (info) or ``warning: message`` to the *current* ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = self.format(record)
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname.lower()}: {msg}"
        print(msg, file=sys.stderr)


_HANDLER = _StderrHandler()


def _add_output_flags(parser: argparse.ArgumentParser, quiet_help: str = "print warnings and errors only") -> None:
    """``-q/--quiet`` and ``--debug``, the same on every subcommand."""
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    parser.add_argument("--debug", action="store_true", help="on an unexpected error, print the traceback")

def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("gimbal")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _infer(args: argparse.Namespace) -> int:
    from gimbal.inference.infer import infer_files

    infer_files(
        frames=args.frames,
        exposures_us=args.exposures_us,
        model=args.model,
        output=args.output,
        output_linear=args.output_linear,
        camera=args.camera,
        bits=args.bits,
        white_level=args.white_level,
        black_level=args.black_level,
        budget_us=args.budget_us,
        readout_us=args.readout_us,
        device=args.device,
        convert_channels=args.convert_channels,
        max_memory_gb=args.max_memory_gb,
        max_flow_px=args.max_flow_px,
        backend=args.backend,
        gain=args.gain,
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from gimbal.inference.onnx_merge import export_onnx

    export_onnx(args.model, args.onnx, args.opset)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    import shlex

    from gimbal.inference.simulate import simulate_files

    simulate_files(args.images, args.output, model=args.model, exposures_us=args.exposures_us, camera=args.camera,
                   experiment=args.experiment, budget_us=args.budget_us, readout_us=args.readout_us,
                   channels=args.channels, light_w_m2=args.light, shake_std_deg=args.shake_std_deg,
                   samples=args.samples, seed=args.seed, fmt=args.format,
                   command=shlex.join(["gimbal", *args.argv]), clip_start=args.clip_start,
                   clip_frames=args.clip_frames)
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from gimbal.inference.infer import read_model_schedule
    from gimbal.sensor.plot import plot_format

    if args.plot is not None:  # before any work: an unknown suffix is not written as a PNG under that name
        try:
            plot_format(args.plot)
        except ParamError as exc:
            raise ParamError(f"--plot {exc}") from None
    sched = read_model_schedule(args.model)
    if args.plot is not None:
        from gimbal.sensor.plot import plot_schedule

        label = str(sched.get("variant") or Path(args.model).stem)
        plot_schedule(sched, args.plot, labels=[label], title=f"{label}: shutter schedule")
    if args.json:
        print(json.dumps(sched, indent=2, sort_keys=True))
    else:
        kind = "learned" if sched.get("learned") else "fixed"
        print(f"model {args.model}: variant {sched.get('variant')}, camera {sched.get('camera')}, "
              f"{kind} exposures, n={sched['n']}")
        print(f"budget T {sched['budget_us']:.1f} us, readout {sched['readout_us']:.1f} us, "
              f"min exposure {sched['min_exposure_us']:.1f} us, idle {sched['idle_us']:.1f} us")
        print(f"{'frame':>5}  {'start_us':>10}  {'exposure_us':>11}  {'readout_at_us':>13}")
        for i, (t, d, r) in enumerate(zip(sched["starts_us"], sched["durations_us"], sched["readout_starts_us"],
                                          strict=True)):
            print(f"{i + 1:>5}  {t:>10.1f}  {d:>11.1f}  {r:>13.1f}")
    if args.plot is not None:
        logging.getLogger("gimbal").info("wrote %s", args.plot)
    return 0


def _plan(args: argparse.Namespace) -> int:
    from gimbal.planning.plan import dbar_from_vibration, ebar_from_light, load_grid, plan, resolve_camera, summary

    camera = resolve_camera(args.camera, args.experiment)
    grid = load_grid(args.grid, args.cells)
    focal = args.focal_px
    if args.focal_mm is not None:
        if focal is not None:
            raise ParamError("give the focal length as one of --focal-mm or --focal-px, not both")
        focal = args.focal_mm * 1e-3 / camera.pixel_area_m2 ** 0.5
    ebar = ebar_from_light(camera, grid.budget_us * 1e-6, ebar=args.ebar, lux=args.lux,
                           luminance_cd_m2=args.luminance, f_number=args.f_number, transmission=args.transmission)
    dbar = dbar_from_vibration(dbar=args.dbar, gyro_dps=args.gyro_dps, angle_std_deg=args.angle_std_deg,
                               focal_px=focal, budget_s=grid.budget_us * 1e-6, frames=grid.window_frames)
    inputs = {k: v for k, v in (("ebar", args.ebar), ("lux", args.lux), ("luminance_cd_m2", args.luminance),
                                ("f_number", args.f_number), ("dbar_px", args.dbar), ("gyro_dps", args.gyro_dps),
                                ("angle_std_deg", args.angle_std_deg), ("focal_px", focal)) if v is not None}
    result = plan(grid, ebar, dbar, camera, clamp=args.clamp, inputs=inputs)
    if result["distance"]["extrapolated"]:
        logging.getLogger("gimbal").warning("extrapolated: %s", result["distance"]["why"])
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else summary(result))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Check the outputs before the work (none is a directory, the folder exists), then calibrate; the preset and
    its two figures are written all or none, so a refused or failed run (bad data, an unwritable folder, a full
    disk) writes nothing."""
    from gimbal.calibration import calibrate_files, format_table
    from gimbal.inference.frame_files import output_error

    out = Path(args.output)
    for path in (out, out.with_name(f"{out.stem}_ptc.png"), out.with_name(f"{out.stem}_snr.png")):
        if path.is_dir():
            raise ParamError(f"-o {out}: {path} is a directory; give the preset's file name, e.g. "
                             f"{path / 'camera.yaml' if path == out else out.with_name('camera.yaml')}")
    if not out.parent.is_dir():
        raise ParamError(f"-o {out}: directory {out.parent} does not exist; create it first or write elsewhere")
    try:
        res = calibrate_files(args.descriptor, out, args.pixel_um, args.wavelength_nm, args.name,
                              allow_outside=args.allow_outside)
    except OSError as exc:
        if exc.filename is not None and Path(os.fsdecode(exc.filename)).parent.resolve() != out.parent.resolve():
            raise  # not one of the outputs (an input image): the error path names that file
        raise output_error(out, exc) from exc
    if not args.quiet:
        print(format_table(res.calibration, res.preset, args.pixel_um, args.wavelength_nm))
    logging.getLogger("gimbal").info("wrote %s, %s, %s", res.preset_path, res.ptc_path, res.snr_path)
    return 0


def _tier(args: argparse.Namespace) -> int:
    from gimbal.pipeline import tier_overrides
    from gimbal.tiers import set_flags

    overrides = tier_overrides(args.name, args.params)
    flags = set_flags(overrides)
    if args.list:
        print("\n".join(f"{k}: {v}" for k, v in overrides.items()))
    else:
        print(" ".join(flags))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``gimbal`` argument parser with its ``infer``, ``export``, ``simulate-burst``, ``schedule``, ``plan``
    and ``calibrate`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="gimbal",
        description="Digital Gimbal: merge a real burst with a trained model, show its learned shutter schedule, "
                    "calibrate a camera from EMVA 1288 data, simulate the raw burst a camera captures of an image, "
                    "or export the merge to ONNX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser(
        "infer", help="merge a burst of n frames into one stabilized image",
        description="Merge a burst of n frames (captured back to back with the given exposure times) into one "
                    "image with a trained model. Frames: 8/16-bit PNG or TIFF (gray or RGB), or .npy arrays "
                    "(H, W) / (H, W, C). Integer values are DN with white level 2^bits - 1 (bits: the camera's "
                    "ADC depth, capped at the file's bit depth); floats are taken as already in [0, 1]. Data "
                    "stored MSB-aligned in 16-bit files need --white-level 65472 (10-bit) or 65520 (12-bit).",
    )
    p.add_argument("--frames", nargs="+", required=True, metavar="FILE", help="frame files in capture order")
    p.add_argument("--exposures-us", nargs="+", required=True, type=float, metavar="US",
                   help="exposure time of each frame in microseconds, same order as --frames (each at least 0.1 us "
                        "and the camera's shortest exposure; with the readouts within its budget)")
    p.add_argument("--model", required=True, type=Path, help="trained model (models/<variant>.pt)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="merged image (display/gamma space): .png/.tif 16-bit, .jpg 8-bit, .npy float")
    p.add_argument("--output-linear", type=Path, default=None,
                   help="merged image in linear units (1.0 = white at a full-budget exposure): .tiff/.png 16-bit, "
                        ".npy float; another file than -o")
    p.add_argument("--camera", default=None, metavar="NAME",
                   help=f"capture camera preset (default: the model's); one of {', '.join(camera_names())}")
    p.add_argument("--bits", type=int, default=None,
                   help="bit depth of the stored values (default: the camera's ADC bits, at most the file's)")
    p.add_argument("--white-level", type=float, default=None,
                   help="stored value of a saturated pixel (overrides --bits), e.g. 65472 for MSB-aligned 10-bit")
    p.add_argument("--black-level", type=float, default=0.0, help="stored value of black (sensor pedestal), subtracted first (default: 0)")
    p.add_argument("--budget-us", type=float, default=None, help="override the camera's exposure budget T (us)")
    p.add_argument("--readout-us", type=float, default=None, help="override the camera's readout time (us)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--convert-channels", action="store_true",
                   help="convert frames to the model's channels (RGB -> luminance, gray -> RGB) instead of failing")
    p.add_argument("--max-memory-gb", type=float, default=DEFAULT_MAX_MEMORY_GB, metavar="GB",
                   help="memory budget of the network (1e9 bytes): larger frames are merged in overlapping tiles "
                        f"(default: {DEFAULT_MAX_MEMORY_GB:g}); frames and output come on top")
    p.add_argument("--max-flow-px", type=float, default=MAX_FLOW_PX, metavar="PX",
                   help=f"largest motion (pixels) the tile overlap allows for (default: {MAX_FLOW_PX:g})")
    p.add_argument("--gain", type=float, default=1.0,
                   help="digital gain on the burst before the network, for a model trained at another light level "
                        "(`gimbal plan` prints it; default: 1)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the model with PyTorch (a .pt --model) or onnxruntime (a .onnx --model from "
                        "`gimbal export --onnx`); default: torch")
    _add_output_flags(p)
    p.set_defaults(func=_infer)

    e = sub.add_parser(
        "export", help="write a trained merge as an ONNX graph (for onnxruntime, `gimbal infer --backend onnx`)",
        description="Export the merge of a trained model (eq. 14 exposure normalization, flow network, KPN) to ONNX "
                    "for onnxruntime: inputs burst (B, n, C, H, W) float32 raw DN in [0, 1] and exposures_us (n,) "
                    "float32 (the exposures are inputs, not baked in); outputs image and linear (B, C, H, W) and "
                    "flows (B, n-1, 2, H, W); batch, height and width dynamic. The camera, schedule and params "
                    "travel in the file's metadata. The export is checked against PyTorch before it is written.",
    )
    e.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="ONNX file to write (.onnx)")
    e.add_argument("--model", type=Path, required=True, help="trained model (models/<variant>.pt)")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    _add_output_flags(e)
    e.set_defaults(func=_export)

    b = sub.add_parser(
        "simulate-burst", help="the raw burst a camera would capture of an image or clip (to try infer on)",
        description="Simulate the raw burst a camera captures of a scene with a shutter schedule, with the "
                    "project's sensor model (exact Poisson and read noise, response, gain, PRNU, the camera's ADC "
                    "bits): one sRGB image (held still and moved by the camera shake of training) or the frames of a "
                    "clip spanning the exposure budget. Writes frame_1..frame_n as 16-bit PNG/TIFF holding the DN "
                    "(what `gimbal infer` reads with its defaults), exposures.json, exposures_us.txt and README.txt "
                    "into the output folder. The same arguments and --seed give the same files.",
    )
    b.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                   help="one sRGB image (8/16-bit PNG, TIFF, JPEG...), the frames of a clip in time order, or one "
                        "video file (.mp4, .mkv, .avi, .mov, .webm)")
    b.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder to write the burst into")
    b.add_argument("--model", type=Path, default=None,
                   help="take the schedule (learned exposures), camera and channels of this trained model")
    b.add_argument("--exposures-us", nargs="+", type=float, default=None, metavar="US",
                   help="or give the exposures in microseconds (back to back from t = 0, within the budget)")
    b.add_argument("--camera", default=None, metavar="NAME|PRESET",
                   help=f"camera: one of {', '.join(camera_names())}, or a preset file from `gimbal calibrate` "
                        "(.yaml; default: the model's)")
    b.add_argument("--experiment", default="synthetic", help="timing of a preset file's camera: synthetic, indoor "
                                                              "or outdoor (default: synthetic)")
    b.add_argument("--budget-us", type=float, default=None, help="override the camera's exposure budget T (us)")
    b.add_argument("--readout-us", type=float, default=None, help="override the camera's readout time (us)")
    b.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="1 gray or 3 RGB (default: the model's; 1 without a model)")
    b.add_argument("--light", type=float, default=DEFAULT_LIGHT_W_M2, metavar="W/M2",
                   help=f"irradiance of an sRGB white at the sensor, W/m^2 (default {DEFAULT_LIGHT_W_M2:g}, the "
                        "middle of the training light)")
    b.add_argument("--shake-std-deg", nargs=3, type=float, default=None, metavar=("ROLL", "PITCH", "YAW"),
                   help="per-instant std of the camera shake in degrees (default: the training shake for one image, "
                        "none for a clip; 0 0 0 keeps the camera still)")
    b.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"instants spanning the budget for one image (default {DEFAULT_SAMPLES})")
    b.add_argument("--clip-start", type=int, default=0, help="a video's first frame of the clip (default 0)")
    b.add_argument("--clip-frames", type=int, default=DEFAULT_CLIP_FRAMES,
                   help=f"a video's frames spanning the budget (default {DEFAULT_CLIP_FRAMES})")
    b.add_argument("--seed", type=int, default=0, help="seed of the shake and the sensor noise (default 0)")
    b.add_argument("--format", choices=FRAME_FORMATS, default="png", help="frame files: png or tiff (16-bit)")
    _add_output_flags(b)
    b.set_defaults(func=_simulate)

    s = sub.add_parser("schedule", help="print a model's learned shutter schedule in microseconds",
                       description="Print the shutter schedule (exposure start times and durations, microseconds) "
                                   "stored in a trained model.")
    s.add_argument("--model", required=True, type=Path, help="trained model (models/<variant>.pt)")
    s.add_argument("--json", action="store_true", help="print the schedule as JSON (for camera drivers)")
    s.add_argument("--plot", type=Path, default=None, metavar="FILE",
                   help="also draw the timeline (Fig. 3 style) to FILE: .png, .svg or .pdf")
    _add_output_flags(s)
    s.set_defaults(func=_schedule)

    p = sub.add_parser(
        "plan", help="the exposure schedule for a camera, a light level and a vibration level (from a trained grid)",
        description="Read a trained grid (the Fig. 9 sweep's cells.json: the learned schedule at light x shake cells "
                    "for one camera) and answer for one working point: the schedule (us), the merge model to use "
                    "(the nearest cell's network), the PSNR expected there and how far the point is from the cells. "
                    "Light: --ebar (photo-electrons per pixel at full exposure), --lux (illuminance at the sensor) or "
                    "--luminance with --f-number; vibration: --dbar (blur in pixels at full exposure), --gyro-dps "
                    "(rms angular rate about pitch and yaw, averaged over the budget) or --angle-std-deg (std of the "
                    "angle turned over the budget), with --focal-mm or --focal-px. docs/plan.md states the "
                    "conversions.")
    p.add_argument("--camera", required=True, help=f"a built-in camera ({', '.join(camera_names())}) or a preset file "
                                                   "from gimbal calibrate")
    p.add_argument("--experiment", default="synthetic", help="the timing a preset file takes (default: synthetic)")
    p.add_argument("--grid", type=Path, default=Path("sweeps/fig9/cells.json"), help="the trained grid's cells.json")
    p.add_argument("--cells", type=Path, default=None, help="the grid's cell folders (default: cells/ beside --grid)")
    light = p.add_argument_group("light (one of)")
    light.add_argument("--ebar", type=float, help="mean photo-electrons per pixel at full exposure (e-)")
    light.add_argument("--lux", type=float, help="illuminance at the sensor (lux)")
    light.add_argument("--luminance", type=float, metavar="CD_M2", help="scene luminance (cd/m^2), with --f-number")
    light.add_argument("--f-number", type=float, help="the lens's f-number N (for --luminance)")
    light.add_argument("--transmission", type=float, default=1.0, help="the lens's transmission (default 1)")
    vib = p.add_argument_group("vibration (one of)")
    vib.add_argument("--dbar", type=float, help="blur diameter at full exposure (pixels)")
    vib.add_argument("--gyro-dps", type=float, help="rms angular rate about pitch and yaw over the budget (deg/s)")
    vib.add_argument("--angle-std-deg", type=float, help="std of the angle turned over the budget (deg)")
    vib.add_argument("--focal-mm", type=float, help="the lens's focal length (mm; with the camera's pixel pitch)")
    vib.add_argument("--focal-px", type=float, help="the lens's focal length in the camera's pixels")
    p.add_argument("--clamp", action="store_true", help="outside the grid, plan at its edge (marked extrapolated) "
                                                        "instead of refusing")
    p.add_argument("--json", action="store_true", help="print JSON (for camera drivers)")
    _add_output_flags(p)
    p.set_defaults(func=_plan)

    t = sub.add_parser(
        "tier", help="print a named tier's params as `dvc exp run` flags: dvc exp run -n NAME $(gimbal tier NAME)",
        description="Print the -S key=value flags of a named tier (tiers/NAME.yaml: overrides of params.yaml) for "
                    "`dvc exp run`, after checking that params.yaml with them applied parses.",
    )
    t.add_argument("name", help="a tier in tiers/ (e.g. medium, paper) or a path to a tier .yaml")
    t.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file the tier overrides")
    t.add_argument("--list", action="store_true", help="print one 'key: value' per line instead of flags")
    _add_output_flags(t)
    t.set_defaults(func=_tier)

    c = sub.add_parser(
        "calibrate", help="a camera preset (sensor.camera) from the camera's EMVA 1288 data",
        description="Estimate a camera's constants from its EMVA 1288 release 4.0 data set (photon transfer method: "
                    "system gain, dark noise, dark current, saturation capacity, PRNU/DSNU, quantum efficiency) and "
                    "write a camera preset that training reads (params: sensor.camera), with the photon transfer and "
                    "SNR curves beside it (<stem>_ptc.png, <stem>_snr.png). EMVA 1288 does not measure timing: the "
                    "exposure budget, readout, shortest exposure and idle slot stay the experiment's "
                    "(sensor.experiment, sensor.overrides).",
    )
    c.add_argument("descriptor", type=Path, help="EMVA 1288 release 4.0 descriptor file (images relative to it)")
    c.add_argument("--pixel-um", type=float, required=True, metavar="UM",
                   help="pixel pitch in micrometres (square pixels; the preset's pixel_area_m2)")
    c.add_argument("--wavelength-nm", type=float, default=525.0, metavar="NM",
                   help="wavelength of the light the data were taken with (default: 525, EMVA's)")
    c.add_argument("-o", "--output", type=Path, required=True, help="camera preset to write (.yaml)")
    c.add_argument("--name", default=None, help="camera name in reports (default: the output file's stem)")
    c.add_argument("--allow-outside", action="store_true",
                   help="read images that the descriptor names outside its own folder (absolute paths or '..'); "
                        "without it such a descriptor is refused")
    _add_output_flags(c, quiet_help="print warnings and errors only (no table)")
    c.set_defaults(func=_calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gimbal`` command; returns the exit status (0 ok, 1 data error, 2 usage error, 130 Ctrl-C,
    143 SIGTERM). Every failure is one line ``error: ...`` on stderr (:func:`gimbal.cli_utils.run_guarded`, the
    stages' error path): an unexpected one says ``internal error`` and leaves its traceback in a log file."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.quiet)
    return run_guarded(lambda: args.func(args), debug=args.debug, usage_status=EXIT_USAGE,
                       interrupted="interrupted; nothing was written", terminated="nothing was written",
                       out_of_memory=OUT_OF_MEMORY_FIX, name=args.command)


if __name__ == "__main__":
    sys.exit(main())
