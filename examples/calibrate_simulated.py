"""The calibration example of docs/calibration.md: simulate an EMVA 1288 data set of a camera with known constants, run
``gimbal calibrate`` on it, and compare the preset with the constants.

The camera is a made-up small-pixel CMOS sensor (3.45 um pixels, 12 bits), unlike jetcam19m. The data set is
an exposure-time series (1-40 ms, 40 bright and 40 dark pairs, 16-image stacks, 64 x 64 pixels, 16-bit PNG) of
:func:`gimbal.calibration.simulate.simulate_dataset`; the preset and its two figures go to ``--out``.

Usage: ``python examples/calibrate_simulated.py [--data tmp/emva_example] [--out docs/calibration] [--seed 0]``
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml

from gimbal.calibration.simulate import simulate_dataset
from gimbal.cli import main as gimbal_main
from gimbal.sensor.camera import get_camera

PIXEL_UM = 3.45
EXAMPLE = get_camera("jetcam19m").replace(
    name="example_camera", gain_dn_per_e=0.36, read_noise_e=2.4, dark_current_e_per_s=60.0,
    quantum_efficiency=0.68, full_well_e=10_500.0, prnu=0.03, bits=12, tau1_e=None,
    pixel_area_m2=(PIXEL_UM * 1e-6) ** 2, wavelength_m=525e-9)


def run(data: Path, out: Path, seed: int) -> int:
    """Simulate into ``data``, calibrate into ``out``; print the table and the recovery errors. Returns 0."""
    sim = simulate_dataset(data, EXAMPLE, dsnu_e=1.5, image_format="png", seed=seed)
    preset_path = out / "example_camera.yaml"
    cmd = ["calibrate", str(sim.descriptor), "--pixel-um", str(PIXEL_UM), "-o", str(preset_path)]
    print("$ gimbal " + " ".join(cmd))
    status = gimbal_main(cmd)
    if status:
        return status
    preset = yaml.safe_load(preset_path.read_text())
    truth = {
        "gain_dn_per_e": sim.truth["gain_dn_per_e"],
        "read_noise_e": sim.truth["read_noise_e"],
        "dark_current_e_per_s": sim.truth["dark_current_e_per_s"],
        "quantum_efficiency": sim.truth["quantum_efficiency"],
        "full_well_e": sim.truth["saturation_e"],
        "prnu": math.sqrt(12.0) * sim.truth["prnu_std"],
    }
    print(f"\n{'preset key':<22}{'simulated':>12}{'calibrated':>12}{'error':>9}")
    for key, value in truth.items():
        est = float(preset[key])
        print(f"{key:<22}{value:>12.5g}{est:>12.5g}{100 * (est - value) / value:>+8.1f}%")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("tmp/emva_example"), help="folder of the simulated data set")
    parser.add_argument("--out", type=Path, default=Path("docs/calibration"), help="folder of the preset and figures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.exit(run(args.data, args.out, args.seed))
