"""Train and evaluate every method from clips held in memory (an ``.npz``), for a machine without the video stack.

The DVC stages read DALI/PyAV shards; a GPU machine lent without PyAV, DALI or DVC can still run the same library
code (:class:`~gimbal.system.GimbalSystem`, :func:`~gimbal.training.burst.make_irradiance`, :class:`DeblurGANv2`,
:func:`~gimbal.evaluation.evaluate.evaluate_methods`) on clips decoded beforehand::

    python experiments/inmemory.py dump clips.npz                      # here: decode the shards (mono uint8)
    python experiments/inmemory.py train clips.npz out gimbal -S model.kpn_depth=4 ...   # one method per process
    python experiments/inmemory.py evaluate clips.npz out -S ...      # the eval.json table of every method
    python experiments/inmemory.py score-deblurgan clips.npz out      # DeblurGAN-v2 against its input only
    python experiments/inmemory.py time-step clips.npz out gimbal -S ... # seconds per training step of these params

``-S group.key=value`` overrides ``params.yaml`` exactly as ``dvc exp run -S`` does (values parsed as YAML).
Training goes through the stages' one loop (:func:`gimbal.training.loop.fit` with their tasks: validation, the choice on
val, dvclive logs under ``out/dvclive_<method>``, a resumable checkpoint under ``out/checkpoints``). Differences from
the stages: clips are drawn uniformly at random per step (no shard order, no ``train.samples_per_clip`` reuse), the
val clips are the ``.npz``'s, and each validation is also printed as a JSON line; ``--max-seconds`` stops a run and
writes the weights of its last step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gimbal import methods  # noqa: E402
from gimbal.baselines.deblurgan import DeblurGANv2  # noqa: E402
from gimbal.baselines.dmphn import DMPHN  # noqa: E402
from gimbal.baselines.single import RestorerTask  # noqa: E402
from gimbal.checkpoint import run_fingerprint  # noqa: E402
from gimbal.config import parse_config  # noqa: E402
from gimbal.data.irradiance import Scenes, make_irradiance  # noqa: E402
from gimbal.display import Display  # noqa: E402
from gimbal.evaluation.evaluate import evaluate_methods  # noqa: E402
from gimbal.metrics import psnr  # noqa: E402
from gimbal.pipeline import gimbal_run, restorer_run  # noqa: E402
from gimbal.runtime import Dist, Seeds  # noqa: E402
from gimbal.system import build_sensor, full_exposure_image, load_system  # noqa: E402
from gimbal.training.burst import GimbalTask  # noqa: E402
from gimbal.training.loop import FitResult, fit  # noqa: E402


def load_params(overrides: list[str]) -> dict[str, Any]:
    """``params.yaml`` with ``group.key=value`` overrides (nested keys with dots), validated like a stage."""
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for item in overrides:
        key, _, value = item.partition("=")
        node = params
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 3e-3 as a string; dvc's YAML 1.2 reads a number
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        node[last] = parsed
    parse_config(params)  # validated like a stage
    return params


def dump(npz: Path, shards: Path) -> None:
    """Decode the train, val and test shards to ``npz`` (``(N, T, 1, H, W)`` uint8 luma, BT.601)."""
    import kornia

    from gimbal.data.loader import make_loader

    out = {}
    for split in ("train", "val", "test"):
        clips = []
        for batch, _ in make_loader(shards, split, batch_size=1, backend="torch", shuffle=False, seed=0, rank=0,
                                    world_size=1, dtype=torch.uint8):
            luma = kornia.color.rgb_to_grayscale(batch[0].float() / 255.0)
            clips.append((luma * 255).round().clamp(0, 255).to(torch.uint8).numpy())
        out[split] = np.stack(clips)
    np.savez_compressed(npz, **out)


def fixed_set(clips: torch.Tensor, params: dict[str, Any], camera: Any, seed: int, n: int, full_frame: bool,
              window: int | None = None) -> list[Scenes]:
    """Scene batches of the first ``n`` clips of ``clips`` (one split), augmented (no flips) with a generator seeded
    by ``seed``, as :func:`gimbal.data.irradiance.fixed_irradiance_set`."""
    cfg = parse_config(params)
    aug = dataclasses.replace(cfg.augment, flips=False)
    gen = torch.Generator().manual_seed(seed)
    bs = cfg.eval.batch_size
    return [make_irradiance(clips[i: min(i + bs, n)], aug, camera, 1, gen, window, full_frame=full_frame)
            for i in range(0, n, bs)]


class _OutOfTime(Exception):
    """``--max-seconds`` passed before training step ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"out of time at step {step}")
        self.step = step


def _random_batches(clips: torch.Tensor, batch_size: int, seed: int, t0: float, max_seconds: float | None
                    ) -> Iterator[torch.Tensor]:
    """Endless batches of ``batch_size`` clips drawn uniformly at random (generator seeded by ``seed + 3``), one per
    training step; raises :class:`_OutOfTime` once ``max_seconds`` have passed since ``t0``."""
    pick = torch.Generator().manual_seed(seed + 3)
    step = 0
    while True:
        if max_seconds is not None and time.time() - t0 > max_seconds:
            raise _OutOfTime(step)
        yield clips[torch.randint(0, len(clips), (batch_size,), generator=pick)]
        step += 1


def train(npz: Path, out: Path, method: str, params: dict[str, Any], device: str,
          max_seconds: float | None = None) -> None:
    """Train ``method`` through the one training loop (:func:`gimbal.training.loop.fit`, the stages' tasks) on the
    ``.npz``'s train clips, validated on its val clips; writes ``out/<method>.pt``, ``out/train_<method>.json``, its
    dvclive logs and a resumable checkpoint, and prints each validation as a JSON line."""
    data = np.load(npz)
    train_clips = torch.from_numpy(data["train"]).to(device)
    val_clips = torch.from_numpy(data["val"]).to(device)
    params = {**params, "train": {**params["train"], "samples_per_clip": 1, "device": device}}  # a fresh draw per step
    cfg = parse_config(params)
    tcfg, seed = cfg.train, cfg.seed
    out.mkdir(parents=True, exist_ok=True)
    t0, dev = time.time(), torch.device(device)
    paths = {"model_path": out / f"{method}.pt", "metrics_path": out / f"train_{method}.json"}
    if method in methods.single():
        dcfg = getattr(cfg.baselines, method)
        model = (DeblurGANv2 if method == "deblurgan" else DMPHN)(dcfg, cfg.model.channels, seed, device=device)
        task: Any = RestorerTask(restorer_run(cfg), method, model, dcfg.steps, dcfg.batch_size, None, dev, paths["model_path"],
                                 paths["metrics_path"], out / "checkpoints" / method / "last.pt",
                                 {f"baselines.{method}.lr": dcfg.lr}, "loss_g" if method == "deblurgan" else "loss",
                                 (), None)
        n = min(tcfg.val_clips, len(val_clips))
        task.val_sets = {"": fixed_set(val_clips, params, task.sensor.camera, seeds_val(seed), n, False),
                         "frame_": fixed_set(val_clips, params, task.sensor.camera, seeds_val(seed), n, True,
                                             cfg.eval.window_frames)}
        batch_size, extra = dcfg.batch_size, {}
    else:
        task = GimbalTask(gimbal_run(cfg, method), None, Dist(), dev, paths["model_path"], paths["metrics_path"],
                          out / f"exposures_{method}.json", out / f"exposures_{method}.png")
        task.val_batches = fixed_set(val_clips, params, task.system.sensor.camera, seeds_val(seed),
                                     min(tcfg.val_clips, len(val_clips)), full_frame=False)
        batch_size, extra = tcfg.batch_size, {"unlive_warning": task.unlive_warning}
    validate_task = task.validate

    def validate_and_print() -> dict[str, float]:
        scores = validate_task()
        print(json.dumps({"method": method, "secs": round(time.time() - t0),
                          **{k: round(v, 4) for k, v in scores.items()}}), flush=True)
        return scores

    task.validate = validate_and_print
    batches = _random_batches(train_clips, batch_size, seed, t0, max_seconds)
    fingerprint = run_fingerprint({"inmemory": method, "npz": str(npz), "params": params})
    try:
        fit(task, tcfg, Dist(), dev, batches, fingerprint, out / "checkpoints" / method / "last.pt",
            out / f"dvclive_{method}", progress=False, resume_device=dev, **extra)
    except _OutOfTime as stop:  # keep what was trained: the weights of the last step, scored on val
        print(json.dumps({"method": method, "stopped_at_step": stop.step, "max_seconds": max_seconds}), flush=True)
        task.finish(FitResult(0, stop.step, task.validate(), [], []))


def seeds_val(seed: int) -> int:
    """The validation stream's seed (the stages' :attr:`gimbal.runtime.Seeds.validation`)."""
    return Seeds.for_rank(seed).validation


def evaluate(npz: Path, out: Path, params: dict[str, Any], device: str) -> dict[str, Any]:
    test = torch.from_numpy(np.load(npz)["test"]).to(device)
    cfg = parse_config(params).eval
    systems = {v: load_system(out / f"{v}.pt", device) for v in methods.burst()}
    singles = {"deblurgan": DeblurGANv2.from_checkpoint(out / "deblurgan.pt", feature_extractor=torch.nn.Identity(),
                                                        device=device),
               "dmphn": DMPHN.from_checkpoint(out / "dmphn.pt", device=device)}
    sensor = build_sensor(parse_config(params), learn_exposure=False)
    batches = fixed_set(test, params, sensor.camera, cfg.seed, min(cfg.clips, len(test)), cfg.full_frame,
                        cfg.window_frames)
    display = Display.for_camera(cfg.target, sensor.camera, parse_config(params).augment.white_level)
    result = evaluate_methods(systems, singles, sensor, batches, cfg.seed, display, 0, device)
    summary = {"eval": result.intervals(cfg.seed),
               "schedules_us": {v: result.schedules[v]["durations_us"] for v in systems},
               "frame_size": list(batches[0].irradiance.shape[-2:]),
               "clips": sum(b.irradiance.shape[0] for b in batches)}
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def time_steps(npz: Path, method: str, params: dict[str, Any], device: str, steps: int = 4) -> list[float]:
    """Seconds of each of ``steps`` training steps of ``method`` as the one loop takes them
    (:class:`gimbal.training.burst.GimbalTask`: augmentation + sensor + forward + backward + Adam, batch
    ``train.batch_size``, ``train.precision``; the first includes warm-up): what a run of these params costs."""
    clips = torch.from_numpy(np.load(npz)["train"]).to(device)
    params = {**params, "train": {**params["train"], "device": device}}
    task = GimbalTask(gimbal_run(parse_config(params), method), None, Dist(), torch.device(device), None, None, None,
                      None)
    task.system.train()
    batch, times = clips[: task.tcfg.batch_size], []
    for step in range(steps):
        t0 = time.perf_counter()
        task.optimize(step, task.train_step(step, batch))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"method": method, "device": device, "threads": torch.get_num_threads(),
                      "precision": task.tcfg.precision, "seconds_per_step": [round(t, 3) for t in times]}), flush=True)
    return times


def score_deblurgan(npz: Path, out: Path, params: dict[str, Any], device: str, split: str = "val") -> dict[str, Any]:
    """PSNR of ``out/deblurgan.pt`` and of its input, the full exposure, on the evaluation scenes (``eval`` group:
    whole frames unless ``eval.full_frame=false``) of ``split``, with the evaluation's seeded exact-Poisson noise."""
    test = torch.from_numpy(np.load(npz)[split]).to(device)
    cfg = parse_config(params).eval
    model = DeblurGANv2.from_checkpoint(out / "deblurgan.pt", feature_extractor=torch.nn.Identity(), device=device)
    sensor = build_sensor(parse_config(params), learn_exposure=False).to(device).eval()
    display = Display.for_camera(cfg.target, sensor.camera, parse_config(params).augment.white_level)
    n = len(test) if split == "train" else min(cfg.clips, len(test))
    batches = fixed_set(test, params, sensor.camera, cfg.seed, n, cfg.full_frame, cfg.window_frames)
    sensor.set_seed(cfg.seed)
    full, restored = [], []
    with torch.no_grad():
        for scenes in batches:
            blurred = full_exposure_image(sensor, scenes.irradiance, display)
            target = display.ground_truth(scenes.irradiance, scenes.srgb, sensor.camera).to(blurred.dtype)
            full += psnr(blurred, target, reduction="none").tolist()
            restored += psnr(model.enhance(blurred), target, reduction="none").tolist()
    result = {"split": split, "full_exposure": round(sum(full) / len(full), 3),
              "deblurgan": round(sum(restored) / len(restored), 3), "full_frame": cfg.full_frame, "clips": len(full),
              "clips_improved": sum(r > f for r, f in zip(restored, full, strict=True))}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["dump", "train", "evaluate", "score-deblurgan", "time-step"])
    parser.add_argument("npz", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=Path("inmemory_out"))
    parser.add_argument("method", nargs="?", choices=[*methods.burst(), *methods.single()])
    parser.add_argument("-S", "--set", action="append", default=[], help="group.key=value param override")
    parser.add_argument("--shards", type=Path, default=Path("data/shards"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-seconds", type=float, default=None, help="train: stop (and save) after this long")
    parser.add_argument("--split", choices=["train", "val", "test"], default="val",
                        help="score-deblurgan: the clips scored (choose on val; test only for the final report)")
    args = parser.parse_args()
    if args.action == "dump":
        dump(args.npz, args.shards)
        return
    params = load_params(args.set)
    if parse_config(params).model.channels != 1:
        raise SystemExit("inmemory.py: the .npz holds luma clips; model.channels must be 1")
    if args.action == "train":
        if args.method is None:
            parser.error("train needs a method")
        train(args.npz, args.out, args.method, params, args.device, args.max_seconds)
    elif args.action == "time-step":
        time_steps(args.npz, args.method or "gimbal", params, args.device)
    elif args.action == "score-deblurgan":
        score_deblurgan(args.npz, args.out, params, args.device, args.split)
    else:
        evaluate(args.npz, args.out, params, args.device)


if __name__ == "__main__":
    main()
