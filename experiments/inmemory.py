"""Train and evaluate every method from clips held in memory (an ``.npz``), for a machine without the video stack.

The DVC stages read DALI/PyAV shards; a GPU machine lent without PyAV, DALI or DVC can still run the same library
code (:class:`~gimbal.system.GimbalSystem`, :func:`~gimbal.train.make_irradiance`, :class:`DeblurGANv2`,
:func:`~gimbal.evaluate.evaluate_methods`) on clips decoded beforehand::

    python experiments/inmemory.py dump clips.npz                      # here: decode the shards (mono uint8)
    python experiments/inmemory.py train clips.npz out gimbal -S model.kpn_depth=4 ...   # one method per process
    python experiments/inmemory.py evaluate clips.npz out -S ...      # the eval.json table of every method
    python experiments/inmemory.py score-deblurgan clips.npz out      # DeblurGAN-v2 against its input only
    python experiments/inmemory.py time-step clips.npz out gimbal -S ... # seconds per training step of these params

``-S group.key=value`` overrides ``params.yaml`` exactly as ``dvc exp run -S`` does (values parsed as YAML).
Differences from the stages: clips are drawn uniformly at random per step (no shard order, no
``train.samples_per_clip`` reuse), no dvclive logs or checkpoints; the learning curve is printed as JSON lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gimbal.baselines.deblurgan import DeblurGANv2  # noqa: E402
from gimbal.baselines.dmphn import DMPHN  # noqa: E402
from gimbal.config import parse_config  # noqa: E402
from gimbal.data.augment import AugmentConfig  # noqa: E402
from gimbal.data.irradiance import make_irradiance  # noqa: E402
from gimbal.evaluate import MODEL_VARIANTS, SINGLE_IMAGE, evaluate_methods  # noqa: E402
from gimbal.metrics import psnr  # noqa: E402
from gimbal.runtime import Seeds, step_noise_seed  # noqa: E402
from gimbal.data.irradiance import Scenes  # noqa: E402
from gimbal.display import Display  # noqa: E402
from gimbal.system import GimbalSystem, build_sensor, full_exposure_image, load_system, save_system  # noqa: E402
from gimbal.train import validate  # noqa: E402


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


def _out_of_time(method: str, step: int, t0: float, max_seconds: float | None) -> bool:
    """Whether ``max_seconds`` have passed since ``t0`` (and say so, with the step reached)."""
    if max_seconds is None or time.time() - t0 <= max_seconds:
        return False
    print(json.dumps({"method": method, "stopped_at_step": step, "max_seconds": max_seconds}), flush=True)
    return True


def _train_step(system: GimbalSystem, opt: torch.optim.Optimizer, clips: torch.Tensor, aug: AugmentConfig,
                gen: torch.Generator, step: int) -> None:
    """One step as the train stage takes it: augment (no autograd), capture, reconstruct, eq. 18 loss, Adam."""
    with torch.inference_mode():
        scenes = make_irradiance(clips, aug, system.sensor.camera, 1, gen, exposure=system.sensor.exposure)
    result = system(scenes.irradiance.clone(), step, srgb=scenes.srgb.clone())
    opt.zero_grad(set_to_none=True)
    result.loss.backward()
    opt.step()


def train(npz: Path, out: Path, method: str, params: dict[str, Any], device: str,
          max_seconds: float | None = None) -> None:
    data = np.load(npz)
    train_clips = torch.from_numpy(data["train"]).to(device)
    val_clips = torch.from_numpy(data["val"]).to(device)
    cfg = parse_config(params)
    tcfg, seed, aug = cfg.train, cfg.seed, cfg.augment
    torch.manual_seed(seed)
    pick, gen = torch.Generator().manual_seed(seed + 3), torch.Generator().manual_seed(Seeds.for_rank(seed).data)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if method in SINGLE_IMAGE:
        dcfg = getattr(cfg.baselines, method)
        sensor = build_sensor(cfg, learn_exposure=False).to(device).eval()
        display = Display.for_camera(cfg.eval.target, sensor.camera, aug.white_level)
        model = (DeblurGANv2 if method == "deblurgan" else DMPHN)(dcfg, cfg.model.channels, seed, device=device)
        for step in range(dcfg.steps):
            if _out_of_time(method, step, t0, max_seconds):
                break
            idx = torch.randint(0, len(train_clips), (dcfg.batch_size,), generator=pick)
            with torch.no_grad():
                scenes = make_irradiance(train_clips[idx], aug, sensor.camera, 1, gen)
                sensor.set_seed(step_noise_seed(seed, step))  # as the train_deblurgan stage
                blurred = full_exposure_image(sensor, scenes.irradiance, display)
                sharp = display.ground_truth(scenes.irradiance, scenes.srgb, sensor.camera).to(blurred.dtype)
            losses = model.training_step(blurred, sharp)
            if (step + 1) % tcfg.val_every == 0:
                print(json.dumps({"method": method, "step": step + 1, "secs": round(time.time() - t0),
                                  "mse": round(losses["mse"], 6)}), flush=True)
        model.save(out / f"{method}.pt")
        return
    system = GimbalSystem.from_config(parse_config(params), method).to(device)
    system.sensor.set_seed(seed + 1)
    groups = [{"params": list(system.net.parameters()), "lr": tcfg.lr}]
    exposure = [p for p in system.sensor.parameters() if p.requires_grad]
    if exposure:
        groups.append({"params": exposure, "lr": tcfg.exposure_lr or tcfg.lr})
    opt = torch.optim.Adam(groups)
    val = fixed_set(val_clips, params, system.sensor.camera, seed + 10_000, min(tcfg.val_clips, len(val_clips)),
                    full_frame=False)
    for step in range(tcfg.steps):
        if _out_of_time(method, step, t0, max_seconds):
            break
        idx = torch.randint(0, len(train_clips), (tcfg.batch_size,), generator=pick)
        _train_step(system, opt, train_clips[idx], aug, gen, step)
        if (step + 1) % tcfg.val_every == 0 or step + 1 == tcfg.steps or step == 0:
            scores = validate(system, val, seed + 10_000, torch.device(device))
            print(json.dumps({"method": method, "step": step + 1, "secs": round(time.time() - t0),
                              "val_psnr": round(scores["psnr"], 3),
                              "val_middle_frame": round(scores["middle_frame_psnr"], 3),
                              "exposures_us": [round(x) for x in system.sensor.schedule_us()["durations_us"]]}),
                  flush=True)
    save_system(out / f"{method}.pt", system, params, method)


def evaluate(npz: Path, out: Path, params: dict[str, Any], device: str) -> dict[str, Any]:
    test = torch.from_numpy(np.load(npz)["test"]).to(device)
    cfg = parse_config(params).eval
    systems = {v: load_system(out / f"{v}.pt", device) for v in MODEL_VARIANTS}
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
    """Seconds of each of ``steps`` training steps of ``method`` (augmentation + sensor + forward + backward +
    Adam, batch ``train.batch_size``; the first includes warm-up): what a CPU run of these params costs."""
    clips = torch.from_numpy(np.load(npz)["train"]).to(device)
    tcfg = parse_config(params).train
    system = GimbalSystem.from_config(parse_config(params), method).to(device)
    opt = torch.optim.Adam(system.parameters(), tcfg.lr)
    aug, gen, times = parse_config(params).augment, torch.Generator().manual_seed(0), []
    for step in range(steps):
        t0 = time.perf_counter()
        _train_step(system, opt, clips[: tcfg.batch_size], aug, gen, step)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"method": method, "device": device, "threads": torch.get_num_threads(),
                      "seconds_per_step": [round(t, 3) for t in times]}), flush=True)
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
    parser.add_argument("method", nargs="?", choices=[*MODEL_VARIANTS, "deblurgan"])
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
