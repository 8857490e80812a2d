"""Validation curves (val split) of DVC experiments, for choosing defaults on val.

    python experiments/val_curves.py --variants gimbal,kpn lr1e-3 lr1e-2 workspace > experiments/results/lr_val_curves.json

For each experiment name (``workspace``: the checked-out run) and each of ``--variants`` (the ones the
experiments trained; default all), prints the
``val/psnr`` and ``val/middle_frame_psnr`` curves from its dvclive logs (git-tracked in the experiment's
commit) and the params it overrides, as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VARIANTS = ("gimbal", "gimbal_uniform", "kpn")


def _read(rev: str | None, path: str) -> str | None:
    if rev is None:
        p = Path(path)
        return p.read_text() if p.is_file() else None
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def _curve(text: str | None) -> dict[int, float]:
    if not text:
        return {}
    rows = [line.split("\t") for line in text.strip().splitlines()[1:]]
    return {int(step) + 1: round(float(value), 3) for step, value in rows}


def main(argv: list[str]) -> None:
    variants = VARIANTS
    if argv[:1] == ["--variants"]:
        variants, argv = tuple(argv[1].split(",")), argv[2:]
    names = argv
    if not names:
        sys.exit(__doc__)
    out = {}
    for name in names:
        rev = None
        if name != "workspace":
            refs = subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"],
                                  capture_output=True, text=True, check=True).stdout.splitlines()
            rev = next((line.split()[1] for line in refs if line.split()[0].endswith("/" + name)), None)
            if rev is None:
                sys.exit(f"val_curves: no experiment named {name!r} (see `dvc exp show`)")
        params = _read(rev, "params.yaml")
        runs = {}
        for v in variants:
            psnr = _curve(_read(rev, f"dvclive/train_{v}/plots/metrics/val/psnr.tsv"))
            if psnr:
                runs[v] = {"val_psnr": psnr,
                           "val_middle_frame_psnr": _curve(_read(rev, f"dvclive/train_{v}/plots/metrics/val/middle_frame_psnr.tsv"))}
        train_lr = None
        if params:
            import yaml

            train_lr = yaml.safe_load(params).get("train", {}).get("lr")
        out[name] = {"rev": rev or "workspace", "train.lr": train_lr, "curves": runs}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
