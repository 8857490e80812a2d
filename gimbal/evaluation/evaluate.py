"""Evaluation of every method on one fixed set of held-out test scenes (paper Table 1, Fig. 7).

The scenes are the first ``eval.clips`` clips of the test shards (videos never seen in training), as
whole frames (``eval.full_frame``) resized by the training scale, with the training camera shake,
augmented and scaled to electrons with a generator seeded by ``eval.seed``
(:func:`gimbal.data.irradiance.fixed_irradiance_set`). Every capture uses exact Poisson noise (sensor in eval
mode), and the sensor noise is re-seeded with ``eval.seed`` before each method's captures, so
methods that share an exposure schedule (``gimbal_uniform`` and ``kpn``) see the identical burst and
the single-image methods see the identical full exposure.

The methods are those of the table of methods (:data:`gimbal.methods.TABLE`), read when a function is called:

- ``burst`` methods: the end-to-end model and its variants (``gimbal`` with learned exposures, ``gimbal_uniform``,
  the KPN baseline ``kpn`` on the uniform burst, the Table 3 ablations), each from ``models/<variant>.pt``;
- ``single`` methods: the single-image baselines (DeblurGAN-v2, DMPHN-1-2-4) on the full-exposure image, each
  from ``models/<name>.pt`` through its table entry's loader;
- the floors: ``full_exposure``, the full-exposure image itself (one exposure of the whole budget ``T``), and
  ``middle_frame``, the exposure-normalized middle frame of the learned burst (``middle_frame_centred``: of the timing
  control's burst).

All scores are PSNR / SSIM in display space against the target of ``eval.target`` (:mod:`gimbal.display`;
default: the sRGB middle frame, the authors' target, with outputs through their sRGB-like curve).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gimbal import methods as table
from gimbal.baselines.single import Restorer
from gimbal.data.augment import AugmentConfig
from gimbal.data.irradiance import Scenes, fixed_irradiance_set
from gimbal.data.shards import read_shard_index, shard_clip_kinds, shard_clip_videos
from gimbal.data.sources import scores_by_source
from gimbal.display import Display
from gimbal.errors import DataError, ParamError
from gimbal.eval_config import EvalConfig
from gimbal.evaluation.plots import plot_example_grid, plot_method_scores
from gimbal.evaluation.stats import Interval, bootstrap_mean, paired_difference
from gimbal.io import atomic_dir, write_bytes_atomic, write_json_atomic
from gimbal.metrics import psnr, ssim
from gimbal.planning.working_point import AUTHORS_TRAINING, blur_diameter_px, content_motion_px, mean_electrons
from gimbal.runtime import TrainConfig, resolve_device
from gimbal.sensor.camera import CameraSpec
from gimbal.sensor.exposure import ExposureConfig
from gimbal.sensor.model import Sensor, SensorConfig
from gimbal.sensor.plot import plot_schedule
from gimbal.system import GimbalSystem, full_exposure_image, load_system, middle_frame_image

__all__ = [
    "EvalConfig",
    "EvalResult",
    "evaluate",
    "evaluate_methods",
    "example_columns",
    "load_models",
    "middle_frame_image",
    "summary_metrics",
    "timing_split",
]

log = logging.getLogger(__name__)

LEARNED = "gimbal"
"""The variant whose schedule ``metrics/summary.json`` carries (its burst gives the ``middle_frame`` floor)."""

def example_columns() -> tuple[str, ...]:
    """Panels of an example grid, left to right (paper Fig. 7 order: inputs, baselines, ours, ground truth): the
    methods with a :attr:`~gimbal.methods.Method.panel`, in its order."""
    shown = sorted((m.panel, n) for n, m in table.TABLE.items() if m.panel is not None)
    return (*(n for _, n in shown), "ground_truth")



@dataclass
class EvalResult:
    """Scores of every method on the fixed test scenes.

    Attributes:
        scores: ``scores[method]["psnr" | "ssim"]`` per clip (dB / [0, 1]), clip order of the test set.
        examples: ``examples[method or "ground_truth"]`` ``(k, C, H, W)`` display-space images of the first
            ``k`` clips (CPU).
        schedules: ``schedules[variant]`` exposure schedule in microseconds (``Exposure.to_us``).
        videos: the source video of each clip (clip order), the clusters the intervals resample; empty (or a
            single video): the clips are resampled as if independent.
    """

    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    examples: dict[str, torch.Tensor] = field(default_factory=dict)
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    videos: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """``{method: {"psnr": mean dB, "ssim": mean}}`` in the table's order (rounded to 1e-4)."""
        return {m: {k: round(sum(v) / len(v), 4) for k, v in s.items()} for m, s in self.scores.items()}

    def intervals(self, seed: int = 0) -> dict[str, Any]:
        """The means of :meth:`summary` with 95% bootstrap intervals (``psnr_lo``, ``psnr_hi``, ``ssim_lo``,
        ``ssim_hi``), and under ``margins`` the paired difference of every compared pair
        (:func:`gimbal.methods.compared`)
        whose two methods were scored (``"a-b": {"psnr", "psnr_lo", "psnr_hi", "ssim", "ssim_lo", "ssim_hi"}``),
        from ``seed``. The bootstrap resamples the source videos of :attr:`videos` (all the clips of a video drawn
        together, :mod:`gimbal.evaluation.stats`) when the clips come from at least 2 of them, else the clips;
        ``clips``, ``videos`` (when known) and ``resampled`` (``"videos"`` or ``"clips"``) say which. ``timing_split``:
        ours - uniform split into timing and exposure lengths (:func:`timing_split`), when all three were scored.
        With a single clip no interval exists: only the means are given."""
        n = min(len(s["psnr"]) for s in self.scores.values())
        if n < 2:
            return {**self.summary(), "clips": n}
        if self.videos and len(self.videos) != n:
            raise ParamError(f"evaluate: {len(self.videos)} source videos given for {n} scored clips")
        clusters = self.videos if len(set(self.videos)) >= 2 else None

        metrics = ("psnr", "ssim")
        out: dict[str, Any] = {m: _flat({k: bootstrap_mean(s[k], seed=seed, clusters=clusters) for k in metrics})
                               for m, s in self.scores.items()}
        out["margins"] = {f"{a}-{b}": _flat({k: paired_difference(self.scores[a][k], self.scores[b][k], seed=seed,
                                                                  clusters=clusters)
                                             for k in metrics})
                          for a, b in table.compared() if a in self.scores and b in self.scores}
        split = timing_split(out["margins"])
        if split:
            out["timing_split"] = split
        out["clips"] = n
        if self.videos:
            out["videos"] = len(set(self.videos))
        out["resampled"] = "videos" if clusters else "clips"
        return out


def timing_split(margins: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The split of ours - uniform (:data:`gimbal.methods.TIMING_SPLIT`) from the paired ``margins``: ``total``,
    ``timing`` (centred - uniform) and ``exposure_lengths`` (ours - centred), each its margin (mean and 95% interval)
    with ``"pair": "a-b"``; empty unless all three were scored."""
    keys = {part: f"{a}-{b}" for part, (a, b) in table.TIMING_SPLIT.items()}
    if not all(k in margins for k in keys.values()):
        return {}
    return {part: {"pair": k, **margins[k]} for part, k in keys.items()}


HEADLINE: tuple[tuple[str, str], ...] = (("gimbal", "gimbal_uniform"), ("gimbal", "kpn"), ("gimbal", "middle_frame"),
                                        table.TIMING_SPLIT["timing"], table.TIMING_SPLIT["exposure_lengths"])
"""The compared pairs that ``metrics/summary.json`` carries (the paper's main claims and the split of ours -
uniform into timing and exposure lengths)."""


def summary_metrics(metrics: dict[str, Any], schedule: dict[str, Any] | None = None) -> dict[str, float]:
    """The small flat summary that ``dvc metrics show`` and ``dvc exp show`` lead with (``metrics/summary.json``).

    From ``metrics`` (:meth:`EvalResult.intervals`): ``psnr_<method>`` (dB) and ``ssim_<method>`` of every scored
    method, ``margin_<a>-<b>`` with ``_lo`` / ``_hi`` (the paired PSNR difference in dB and its 95% interval) of the
    :data:`HEADLINE` margins scored; from ``schedule`` (:meth:`Sensor.schedule_us` of :data:`LEARNED`):
    ``exposure_us_<i>`` (i = 1..n) and ``idle_us``. Keys carry no dot, so no other metrics file can clash with them.
    """
    out: dict[str, float] = {}
    for method in (m for m in table.scored() if m in metrics):
        out |= {f"psnr_{method}": metrics[method]["psnr"], f"ssim_{method}": metrics[method]["ssim"]}
    margins = metrics.get("margins", {})
    for name in (f"{a}-{b}" for a, b in HEADLINE if f"{a}-{b}" in margins):
        m = margins[name]
        out |= {f"margin_{name}": m["psnr"], f"margin_{name}_lo": m["psnr_lo"], f"margin_{name}_hi": m["psnr_hi"]}
    if schedule is not None:
        out |= {f"exposure_us_{i}": round(d, 1) for i, d in enumerate(schedule["durations_us"], start=1)}
        out["idle_us"] = round(schedule["idle_us"], 1)
    return out


def _flat(intervals: dict[str, Interval]) -> dict[str, float]:
    """``{metric: Interval}`` -> ``{metric: mean, metric_lo: lo, metric_hi: hi}`` rounded to 1e-4 (metrics files)."""
    out: dict[str, float] = {}
    for metric, ci in intervals.items():
        out |= {metric: round(ci.mean, 4), f"{metric}_lo": round(ci.lo, 4), f"{metric}_hi": round(ci.hi, 4)}
    return out


def _model_file(models_dir: Path, name: str) -> Path:
    path = models_dir / f"{name}.pt"
    if not path.is_file():
        raise DataError(f"{path}: model file not found; train it first with `dvc repro train_{name}`")
    return path


def load_models(
    models_dir: Path, camera: CameraSpec | None = None, device: torch.device | str = "cpu",
    methods: Sequence[str] | None = None,
) -> tuple[dict[str, GimbalSystem], dict[str, Restorer]]:
    """Load ``models/<name>.pt`` of every trained method of the table of methods in ``methods`` (default: all):
    the burst methods with :func:`gimbal.system.load_system`, the single-image ones with their entry's ``load``
    (returned as ``{name: model}``).

    All files are checked before any is loaded: a missing one raises :class:`DataError` naming the file and
    the stage that writes it. With ``camera``, a model trained for another camera raises :class:`DataError`
    too (its noise/brightness would differ).
    """
    models_dir = Path(models_dir)
    trained = table.trained()
    methods = trained if methods is None else methods
    unknown = sorted(set(methods) - set(trained))
    if unknown or not methods:
        raise ParamError(f"evaluate: methods {unknown or list(methods)} are not trained methods; choose from "
                         f"{list(trained)}")
    paths = {name: _model_file(models_dir, name) for name in trained if name in methods}
    systems: dict[str, GimbalSystem] = {}
    for variant in (v for v in table.burst() if v in paths):
        system = load_system(paths[variant], device)
        if camera is not None and system.sensor.camera != camera:
            raise DataError(f"{paths[variant]}: trained for camera {system.sensor.camera.name!r} with other settings "
                            f"than params 'sensor' ({camera.name!r}); re-train it with `dvc repro train_{variant}`")
        systems[variant] = system.eval()
    singles: dict[str, Restorer] = {name: table.TABLE[name].load(paths[name], device)  # type: ignore[misc]
                                    for name in table.single() if name in paths}
    return systems, singles


@torch.no_grad()
def evaluate_methods(
    systems: dict[str, GimbalSystem],
    singles: dict[str, Restorer],
    sensor: Sensor,
    batches: Sequence[Scenes],
    seed: int,
    display: Display,
    examples: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> EvalResult:
    """Score the methods of the table of methods on fixed scene ``batches`` (irradiance ``(b, T_f, C, H, W)`` e-/s and
    sRGB middle frames), against ``display``'s target (floors through ``display.floor``).

    ``systems`` maps burst methods to trained :class:`GimbalSystem` s (trained for ``display``'s target);
    ``singles`` maps single-image methods to trained models (``enhance``). The methods
    scored are these, the ``full_exposure`` floor, and each middle-frame floor (``middle_frame``,
    ``middle_frame_centred``: :attr:`~gimbal.methods.Method.floor_of`) whose burst method is among ``systems``. ``sensor`` captures the full exposure of the single-image methods (and defines the ground
    truth's camera). Each method's captures start from ``set_seed(seed)`` with exact Poisson noise (eval mode),
    so equal schedules give equal bursts.
    ``examples``: keep the first ``examples`` clips' images of every method and the ground truth.
    """
    burst, single = table.burst(), table.single()
    unknown = sorted(set(systems) - set(burst)) + sorted(set(singles) - set(single))
    if unknown:
        raise ParamError(f"evaluate_methods: unknown methods {unknown}")
    variants = [v for v in burst if v in systems]
    wrong = [v for v in variants if systems[v].display.target != display.target]
    if wrong:
        raise ParamError(f"evaluate: models {wrong} were trained for another target than eval.target "
                         f"'{display.target}'; re-train them (dvc repro)")
    middle = {f: table.TABLE[f].floor_of for f in table.floors() if table.TABLE[f].floor_of in systems}
    floors = ["full_exposure", *middle]
    methods = [m for m in table.scored() if m in systems or m in singles or m in floors]
    result = EvalResult(scores={m: {"psnr": [], "ssim": []} for m in methods})
    kept: dict[str, list[torch.Tensor]] = {m: [] for m in (*methods, "ground_truth")}
    sensor = sensor.to(device).eval()
    targets = [display.ground_truth(sc.irradiance, sc.srgb, sensor.camera).to(device) for sc in batches]

    def record(method: str, k: int, images: torch.Tensor) -> None:
        target = targets[k].to(images.dtype)
        result.scores[method]["psnr"] += psnr(images, target, reduction="none").tolist()
        result.scores[method]["ssim"] += ssim(images, target, reduction="none").tolist()
        have = sum(x.shape[0] for x in kept[method])
        if have < examples:
            kept[method].append(images[: examples - have].cpu())

    bar = tqdm(total=(len(variants) + 1) * len(batches), desc="evaluate", disable=not progress,
               dynamic_ncols=True)
    for variant in variants:  # burst methods
        system = systems[variant].to(device).eval()
        system.sensor.set_seed(seed)
        result.schedules[variant] = system.sensor.schedule_us()
        for k, scenes in enumerate(batches):
            captured = system.sensor(scenes.irradiance.to(device))
            record(variant, k, system.reconstruct(captured.burst, captured.durations_s).image)
            for floor in (f for f, of in middle.items() if of == variant):  # its burst's middle frame
                record(floor, k, middle_frame_image(system.sensor, captured.burst, captured.durations_s, display))
            bar.update()
    sensor.set_seed(seed)  # single-image methods: one full exposure, shared
    for k, scenes in enumerate(batches):
        blurred = full_exposure_image(sensor, scenes.irradiance.to(device), display)
        record("full_exposure", k, blurred)
        for name in (n for n in single if n in singles):
            record(name, k, singles[name].enhance(blurred))
        bar.update()
    bar.close()
    for target in targets:
        have = sum(x.shape[0] for x in kept["ground_truth"])
        if have < examples:
            kept["ground_truth"].append(target[: examples - have].cpu())
    result.examples = {m: torch.cat(v) for m, v in kept.items() if v}
    return result


def _test_clip_ids(shards_dir: Path, n: int) -> list[str]:
    """Keys of the first ``n`` test clips in shard order (the order of :func:`fixed_irradiance_set`)."""
    try:
        shards = read_shard_index(shards_dir, "test")["splits"]["test"]["shards"]
        keys = [key for shard in shards for key in shard["keys"]]
    except (DataError, KeyError, TypeError):
        keys = []
    return [keys[i] if i < len(keys) else f"clip_{i}" for i in range(n)]


def _per_clip_csv(result: EvalResult, clip_ids: list[str], kinds: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["clip", "clip_id", "kind", "method", "psnr", "ssim", "video"])
    videos = result.videos or [""] * len(clip_ids)
    for method, s in result.scores.items():
        for i, (p, q) in enumerate(zip(s["psnr"], s["ssim"], strict=True)):
            writer.writerow([i, clip_ids[i], kinds[i], method, f"{p:.4f}", f"{q:.5f}", videos[i]])
    return buf.getvalue().encode()


def working_point(ecfg: EvalConfig, augment: AugmentConfig, channels: int, loader: str, shards_dir: Path,
                  batches: Sequence[Scenes], camera: CameraSpec, videos: Sequence[str], trained: Sequence[str],
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    """The working point of the evaluation and of every trained model, as the paper's Fig. 9 states it
    (:mod:`gimbal.planning.working_point`), rounded for ``metrics/eval.json``:

    - ``test``: the scored scenes (``batches``: the test clips with the camera shake): ``e_bar`` (e- at one exposure
      of ``camera``'s whole budget), ``d_bar_px`` (the shake's blur diameter over the ``window_frames`` frames
      spanning T, network pixels; ``None`` for ``augment.motion`` other than ``shake``), and the content's own
      motion over the same window, measured on the same clips made again without the shake:
      ``content_motion_px`` (the mean over clips of the diameter of the global translation's path) and
      ``content_flow_px`` (of the mean dense displacement from the first frame to the last), and both per source
      video (``by_video``; ``videos``: the video of each clip, in clip order);
    - ``models``: every method of ``trained`` at the working point it was trained at: the params' light and
      shake (every training stage reads them; e-bar of the test scenes at that light) over the training window
      (``augment.window_frames``, default all the clips' frames);
    - ``authors``: d-bar of the authors' released training (:data:`gimbal.planning.working_point.AUTHORS_TRAINING`) over
      its window and over the paper text's 241 frames, by the same definition.
    """
    irradiance = [b.irradiance for b in batches]
    frames = irradiance[0].shape[1]
    train_frames = augment.window_frames or _clip_frames(shards_dir, frames)

    def d_bar(f: int) -> float | None:
        return round(blur_diameter_px(augment, f, seed=ecfg.seed), 3) if augment.motion == "shake" else None

    def mean(values: Sequence[float]) -> float:
        return round(sum(values) / len(values), 3)

    still = dataclasses.replace(augment, shake_std_deg=(0.0, 0.0, 0.0), max_rotation_deg=0.0, min_rotation_deg=0.0)
    still_batches = fixed_irradiance_set(shards_dir, "test", len(videos), ecfg.batch_size, still, camera,
                                         channels, ecfg.seed, loader, device,
                                         window_frames=ecfg.window_frames, full_frame=ecfg.full_frame)
    motion = content_motion_px([b.irradiance for b in still_batches])
    by_video: dict[str, dict[str, list[float]]] = {}
    for video, diameter, flow in zip(videos, motion["diameter_px"], motion["flow_px"], strict=True):
        entry = by_video.setdefault(video, {"content_motion_px": [], "content_flow_px": []})
        entry["content_motion_px"].append(diameter)
        entry["content_flow_px"].append(flow)
    e_bar = round(mean_electrons(irradiance, camera.budget_s), 2)
    model_point = {"e_bar": e_bar, "d_bar_px": d_bar(train_frames), "window_frames": train_frames}
    return {
        "test": {"e_bar": e_bar, "d_bar_px": d_bar(frames), "window_frames": frames,
                 "content_motion_px": mean(motion["diameter_px"]), "content_flow_px": mean(motion["flow_px"]),
                 "by_video": {v: {k: mean(x) for k, x in m.items()} for v, m in by_video.items()}},
        "models": {m: dict(model_point) for m in trained},
        "authors": {name: {"d_bar_px": round(blur_diameter_px(AUTHORS_TRAINING[0], f, seed=ecfg.seed), 3),
                           "window_frames": f}
                    for name, f in (("released_training", AUTHORS_TRAINING[1]), ("paper_window", 241))},
    }


def _clip_frames(shards_dir: Path, default: int) -> int:
    """Frames of every clip of the test shards (the index's ``frames``), ``default`` when the index has none."""
    try:
        return int(read_shard_index(shards_dir, "test")["splits"]["test"]["frames"])
    except (DataError, KeyError, TypeError, ValueError):
        return default


def _by_method_csv(summary: dict[str, dict[str, float]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "label", "psnr", "ssim"])
    for method, s in summary.items():
        writer.writerow([method, table.label(method), s["psnr"], s["ssim"]])
    return buf.getvalue().encode()


def evaluate(
    ecfg: EvalConfig,
    sensor_cfg: SensorConfig,
    exposure: ExposureConfig,
    augment: AugmentConfig,
    channels: int,
    tcfg: TrainConfig,
    shards_dir: Path,
    models_dir: Path = Path("models"),
    metrics_path: Path = Path("metrics/eval.json"),
    per_clip_csv: Path = Path("plots/eval_per_clip.csv"),
    by_method_csv: Path = Path("plots/eval_by_method.csv"),
    bar_plot: Path = Path("plots/psnr_by_method.png"),
    examples_dir: Path = Path("plots/examples"),
    schedule_plot: Path = Path("plots/exposures_eval.png"),
    progress: bool = True,
    methods: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate every method (the trained ones of ``methods``, default all of the table of methods, and the floors)
    on the fixed test scenes and write all outputs atomically.

    Reads the params groups ``eval``, ``sensor`` and ``exposure`` (the camera of the full exposure), ``augment``,
    ``model.channels`` (``channels``) and ``train`` (``loader``, ``device``).

    Writes ``metrics_path`` (``{method: {"psnr", "ssim"}}``, means, with 95% bootstrap intervals over the test
    clips' source videos (the ``video`` of each clip's shard meta), the paired differences of the compared pairs
    under ``margins``, ``clips``, ``videos`` and ``resampled``, :meth:`EvalResult.intervals`; and under
    ``working_point`` the (e-bar, d-bar) of the test scenes and of every trained model with the content's own
    motion, :func:`working_point`), ``summary.json`` beside it (:func:`summary_metrics`: what
    ``dvc metrics show`` shows), ``<metrics_path stem>_by_source.json`` (the same per source kind,
    ``{real | synthetic: {method: ...}}``), ``per_clip_csv`` (clip, clip_id, kind, method, psnr, ssim, video),
    ``by_method_csv`` (method, label, psnr, ssim), ``bar_plot`` (PSNR and SSIM per method with per-clip
    points), ``examples_dir/example_<k>.png`` (Fig. 7 style grids, ``eval.examples`` of them; the directory is
    replaced) and ``schedule_plot`` (learned vs uniform shutter schedule). Returns the metrics written to
    ``metrics_path``.
    """
    device = resolve_device(tcfg.device, "params 'train.device'")
    sensor = Sensor.from_config(sensor_cfg, exposure, False, ecfg.seed)  # fixed schedule, noise seeded by eval.seed
    systems, singles = load_models(Path(models_dir), sensor.camera, device, methods)  # fail fast, before any data
    batches = fixed_irradiance_set(Path(shards_dir), "test", ecfg.clips, ecfg.batch_size, augment, sensor.camera,
                                   channels, ecfg.seed, tcfg.loader, device,
                                   window_frames=ecfg.window_frames, full_frame=ecfg.full_frame)
    n = sum(b.irradiance.shape[0] for b in batches)
    if n < ecfg.clips:
        log.warning("evaluate: the test split has only %d clips (eval.clips = %d)", n, ecfg.clips)
    clip_ids = _test_clip_ids(Path(shards_dir), n)
    kinds = (shard_clip_kinds(Path(shards_dir), "test") + ["real"] * n)[:n]  # source kind of each scored clip
    videos = shard_clip_videos(Path(shards_dir), "test")[:n]  # the clusters of the intervals
    display = Display.for_camera(ecfg.target, sensor.camera, augment.white_level)
    result = evaluate_methods(systems, singles, sensor, batches, ecfg.seed, display, min(ecfg.examples, n), device,
                              progress)
    result.videos = videos
    summary = result.summary()
    metrics = result.intervals(ecfg.seed)
    if metrics.get("resampled") == "clips":
        log.warning("evaluate: the %d test clips come from %d source video(s); the intervals resample clips as if "
                    "independent (score clips of at least 2 videos to resample videos)", n, len(set(videos)))
    metrics["working_point"] = working_point(ecfg, augment, channels, tcfg.loader, Path(shards_dir), batches,
                                             sensor.camera, videos,
                                             [m for m in table.trained() if m in systems or m in singles], device)
    by_source = {k: v for k, v in scores_by_source(result.scores, kinds).items() if k != "all"}

    for method in result.scores:
        m = metrics[method]
        ci = f" [{m['psnr_lo']:.2f}, {m['psnr_hi']:.2f}]" if "psnr_lo" in m else ""
        log.info("%-16s PSNR %6.2f dB%s  SSIM %.4f", method, m["psnr"], ci, m["ssim"])
    for name, m in metrics.get("margins", {}).items():
        log.info("%-28s %+6.2f dB [%+.2f, %+.2f] (paired, 95%%, resampling %s)", name, m["psnr"], m["psnr_lo"],
                 m["psnr_hi"], metrics["resampled"])
    wp = metrics["working_point"]["test"]
    log.info("working point: e-bar %.0f e-, d-bar %s px, content motion %.2f px (dense %.2f px) over %d frames",
             wp["e_bar"], wp["d_bar_px"], wp["content_motion_px"], wp["content_flow_px"], wp["window_frames"])
    write_bytes_atomic(per_clip_csv, _per_clip_csv(result, clip_ids, kinds))
    write_bytes_atomic(by_method_csv, _by_method_csv(summary))
    plot_method_scores(result.scores, bar_plot, labels={m: table.label(m) for m in result.scores},
                       title=f"Test set: {n} clips, seed {ecfg.seed} (exact Poisson noise)")
    with atomic_dir(examples_dir) as tmp:
        k_examples = min(ecfg.examples, n)
        for k in range(k_examples):
            panels = []
            for method in (m for m in example_columns() if m in result.examples):
                caption = table.label(method)
                if method in result.scores:
                    caption += (f"\nPSNR {result.scores[method]['psnr'][k]:.2f} dB, "
                                f"SSIM {result.scores[method]['ssim'][k]:.3f}")
                panels.append((caption, result.examples[method][k]))
            plot_example_grid(panels, tmp / f"example_{k}.png", title=f"test clip {clip_ids[k]}")
    shown = [v for v in (LEARNED, "gimbal_uniform", "gimbal_uniform_centred") if v in result.schedules]
    if shown:
        plot_schedule([result.schedules[v] for v in shown], schedule_plot, labels=[table.label(v) for v in shown],
                      title="Shutter schedules evaluated")
    write_json_atomic(metrics_path.with_name(metrics_path.stem + "_by_source.json"), by_source)
    write_json_atomic(metrics_path, metrics)
    write_json_atomic(metrics_path.with_name("summary.json"), summary_metrics(metrics, result.schedules.get(LEARNED)))
    return metrics
