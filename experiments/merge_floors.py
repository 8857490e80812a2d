"""How much a merge without alignment can give on the embedded data: the middle frame against the plain mean of the
exposure-normalized uniform burst, with and without noise, and how far the window's first frame is from the middle.

    python experiments/merge_floors.py [--shards data/shards] [--clips 16]

Scenes: the test split, as the training crops (``augment`` group of ``params.yaml``), uniform exposures
(``gimbal_uniform``), exact Poisson noise; PSNR in dB against the ground truth (display space).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gimbal.config import parse_config  # noqa: E402
from gimbal.data.irradiance import fixed_irradiance_set  # noqa: E402
from gimbal.display import power_gamma as gamma  # noqa: E402
from gimbal.display import sensor_ground_truth as ground_truth
from gimbal.metrics import psnr  # noqa: E402
from gimbal.sensor.integrate import integrate_exposures  # noqa: E402
from gimbal.system import GimbalSystem  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, default=Path("data/shards"))
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--split", default="val", choices=["train", "val", "test"], help="choose on val; test only to report")
    args = ap.parse_args()
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    system = GimbalSystem.from_params(params, "gimbal_uniform").eval()
    cam, sensor = system.sensor.camera, system.sensor
    batches = fixed_irradiance_set(args.shards, args.split, args.clips, 4, parse_config(params).augment, cam, 1,
                                   10_000, "torch")
    dt, t0 = sensor.exposure.durations(torch.float64), sensor.exposure.starts(torch.float64)
    gen = torch.Generator().manual_seed(1)
    scores: dict[str, list[float]] = {k: [] for k in ("middle", "mean", "middle_noise_free", "mean_noise_free",
                                                      "first_frame_noise_free")}
    with torch.no_grad():
        for scenes in batches:
            irr = scenes.irradiance
            gt = ground_truth(irr, cam)  # the floors were measured against the sensor-domain target
            noisy = sensor.normalize(sensor(irr, generator=gen).burst, dt)
            clean = integrate_exposures(irr.double(), t0, dt, cam.budget_s) * cam.gain_dn_per_e / cam.max_dn
            clean = (clean * cam.budget_s / dt.view(1, -1, 1, 1, 1)).float()
            first = (irr[:, 0] * cam.budget_s * cam.gain_dn_per_e / cam.max_dn)
            for key, img in (("middle", noisy[:, 1]), ("mean", noisy.mean(1)), ("middle_noise_free", clean[:, 1]),
                             ("mean_noise_free", clean.mean(1)), ("first_frame_noise_free", first)):
                scores[key] += psnr(gamma(img.clamp(0, 1)), gt, reduction="none").tolist()
    n = len(scores["middle"])
    print(f"{n} {args.split} crops, uniform exposures {[round(x) for x in sensor.schedule_us()['durations_us']]} us")
    for key, vals in scores.items():
        print(f"{key:24s} {sum(vals) / n:6.2f} dB")


if __name__ == "__main__":
    main()
