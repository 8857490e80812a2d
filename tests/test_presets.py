"""Camera preset files (``sensor.camera``) as data DVC tracks.

* every stage that reads the ``sensor`` params depends on ``cameras/``, so a changed preset re-runs it (checked on
  ``dvc.yaml``, and end to end on a one-stage DVC pipeline that reads its preset through gimbal);
* in DVC's temporary experiment copy (``dvc exp run --temp``, ``dvc queue``), a preset that git does not track is
  missing: the error says so and what to do.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gimbal.errors import ParamError
from gimbal.sensor.camera import PRESETS_DIR
from gimbal.sensor.model import SensorConfig

ROOT = Path(__file__).resolve().parents[1]
PRESET = {"name": "mycam", "wavelength_m": 5.25e-7, "pixel_area_m2": 1.19e-11, "quantum_efficiency": 0.6,
          "dark_current_e_per_s": 10.0, "read_noise_e": 6.0, "gain_dn_per_e": 0.3, "full_well_e": 11000.0, "bits": 12}


def write_preset(path: Path, **changes: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**PRESET, **changes}))
    return path


def test_every_stage_reading_the_sensor_params_depends_on_the_presets_folder():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    readers = {name: st for name, st in stages.items() if "sensor" in (st.get("params") or [])}
    assert {"train_gimbal", "train_kpn", "train_deblurgan", "train_dmphn", "evaluate"} <= set(readers)
    assert [name for name, st in readers.items() if PRESETS_DIR not in st["deps"]] == []
    assert (ROOT / PRESETS_DIR).is_dir()  # a DVC dependency must exist


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_changed_preset_content_reruns_a_stage_that_depends_on_the_folder(tmp_path):
    """A one-stage pipeline shaped like the training stages (deps: cameras, params: sensor) re-runs when the preset's
    content changes though the param (its path) stays the same."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run(dvc, "config", "core.analytics", "false")
    preset = write_preset(tmp_path / PRESETS_DIR / "mycam.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"sensor": {"camera": f"{PRESETS_DIR}/mycam.yaml"}}))
    reader = ("import yaml; from gimbal.sensor.model import SensorConfig; "
              "c = SensorConfig(**yaml.safe_load(open('params.yaml'))['sensor']).spec(); "
              "open('out.txt', 'w').write(f'{c.name} {c.bits}')")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": f"{sys.executable} -c \"{reader}\"", "deps": [PRESETS_DIR], "params": ["sensor"],
        "outs": ["out.txt"]}}}))
    run(dvc, "repro", "-q")
    assert (tmp_path / "out.txt").read_text() == "mycam 12"
    assert "changed" not in run(dvc, "status")
    write_preset(preset, bits=10)  # the same path, other content
    assert "modified:" in run(dvc, "status") and PRESETS_DIR in run(dvc, "status")
    run(dvc, "repro", "-q")
    assert (tmp_path / "out.txt").read_text() == "mycam 10"


def test_preset_missing_from_dvc_temp_copy_says_git_add(tmp_path, monkeypatch):
    """`dvc exp run --temp` runs in <repo>/.dvc/tmp/exps/<tmp>/, a copy of what git tracks: an untracked preset is
    there in the repository but not in the copy."""
    repo = tmp_path / "repo"
    write_preset(repo / PRESETS_DIR / "mycam.yaml")
    copy = repo / ".dvc" / "tmp" / "exps" / "tmpk2x9"
    (copy / PRESETS_DIR).mkdir(parents=True)
    monkeypatch.chdir(copy)
    with pytest.raises(ParamError) as info:
        SensorConfig(camera=f"{PRESETS_DIR}/mycam.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"sensor.camera: {PRESETS_DIR}/mycam.yaml: "), msg
    assert all(w in msg for w in ("not tracked by git", f"git add {PRESETS_DIR}/mycam.yaml", "--temp")), msg

    monkeypatch.chdir(repo)  # in the repository itself the file is found
    assert SensorConfig(camera=f"{PRESETS_DIR}/mycam.yaml").spec().name == "mycam"
    with pytest.raises(ParamError) as info:  # a file missing outside a DVC copy: the usual advice
        SensorConfig(camera=f"{PRESETS_DIR}/other.yaml")
    assert "git add" not in str(info.value) and "gimbal calibrate" in str(info.value)


def test_preset_outside_the_folder_warns_in_a_pipeline(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    write_preset(tmp_path / "elsewhere.yaml")
    write_preset(tmp_path / PRESETS_DIR / "mycam.yaml")
    monkeypatch.chdir(tmp_path)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("gimbal.sensor")
    logger.addHandler(handler)
    try:
        SensorConfig(camera=f"{PRESETS_DIR}/mycam.yaml")
        assert records == []
        SensorConfig(camera="elsewhere.yaml")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and f"move it to {PRESETS_DIR}/" in records[0].getMessage()
