"""Faults of the pipeline stages, as a user meets them: a batch larger than the split, a variant no stage trains,
SIGTERM, a failed training that must leave its previous dvclive logs, a killed or full-disk `shards` run, and the
progress of `interpolate`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from shard_fixtures import make_interp, make_shards, training_shards

from gimbal.data.shards import ShardConfig

REPO = Path(__file__).resolve().parents[1]


def _stage(script: str):
    spec = importlib.util.spec_from_file_location(f"stage_{Path(script).stem}_faults", REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # main() runs only under __main__
    return module


def _run(monkeypatch, capsys, script: str, *argv: str) -> tuple[int, str]:
    """Run a stage script as ``python <script> <argv>`` does, in this process; its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / script), run_name="__main__")
    return info.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 train, 2 val, 2 test clips."""
    root = tmp_path_factory.mktemp("fault_shards")
    return training_shards(root)


# -- a batch larger than the split --------------------------------------------------------------------------------
@pytest.mark.parametrize(("script", "key", "argv"), [
    ("stages/train.py", "train.batch_size", ("--variant", "gimbal")),
    ("stages/train_baseline.py", "baselines.dmphn.batch_size", ("--baseline", "dmphn")),
])
def test_a_batch_larger_than_the_train_split_is_one_line_naming_the_key(
        shards: Path, tmp_path: Path, monkeypatch, capsys, script: str, key: str, argv: tuple[str, ...]) -> None:
    """`train.batch_size: 100000` was "DALI could not read/decode the shard (std::bad_alloc)", and the torch
    reader trained on batches of every clip there was, silently."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    node = p
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    node[last] = 100000
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    monkeypatch.chdir(tmp_path)  # outputs (models/, dvclive/, checkpoints/) would go here
    code, err = _run(monkeypatch, capsys, script, "--params", str(params), "--shards", str(shards), *argv)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert f"'{key}' = 100000 is more than the 2 clips of the 'train' split" in lines[0]
    assert f"lower '{key}' to at most 2" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


def test_check_batch_size_warns_when_each_rank_gets_fewer(shards: Path, caplog) -> None:
    from gimbal.data.loader import check_batch_size
    from gimbal.errors import ParamError

    assert check_batch_size(shards, "train", 2, "train.batch_size") == 2
    assert not caplog.records
    assert check_batch_size(shards, "train", 2, "train.batch_size", world_size=2) == 2
    assert "each of the 2 ranks reads about 1 of the 2 clips" in caplog.text
    with pytest.raises(ParamError, match=r"'train\.batch_size' = 3 is more than the 2 clips"):
        check_batch_size(shards, "train", 3, "train.batch_size", world_size=2)


# -- a variant that no stage trains ---------------------------------------------------------------------------------
def test_a_variant_no_stage_trains_is_refused_by_the_report_stage(tmp_path: Path, monkeypatch, capsys) -> None:
    """`dvc exp run -S '+variants.foo={model: {use_flow: false}}'` reported "Ran experiment" with nothing trained:
    no stage depended on the new key. The report stage depends on the whole `variants` group and refuses it."""
    from gimbal.errors import ParamError

    report = _stage("stages/report.py")
    report.check_variants(yaml.safe_load((REPO / "params.yaml").read_text())["variants"], REPO / "dvc.yaml")
    with pytest.raises(ParamError, match=r"'variants\.foo' is trained by no stage .*has no train_foo.*add a stage "
                                         r"train_foo .*`--variant foo`"):
        report.check_variants({"gimbal": {}, "foo": {"model": {"use_flow": False}}}, REPO / "dvc.yaml")
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    pipeline["stages"]["train_foo"] = {**pipeline["stages"]["train_gimbal_no_flow"],
                                       "cmd": "python stages/train.py --variant foo"}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    with pytest.raises(ParamError, match=r"'variants\.foo' is trained \(stage train_foo\) but not scored"):
        report.check_variants({"foo": {}}, tmp_path / "dvc.yaml")

    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["variants"]["foo"] = {"model": {"use_flow": False}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    code, err = _run(monkeypatch, capsys, "stages/report.py", "--params", str(tmp_path / "params.yaml"),
                     "--pipeline", str(REPO / "dvc.yaml"), "--eval", str(tmp_path / "none.json"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "variants.foo" in err


def test_variants_methods_table_and_train_stages_agree() -> None:
    """Each variant of params.yaml has its train_<name> stage and is scored by evaluate, and back; the report
    stage, which checks a new variant, re-runs when any variant changes."""
    from gimbal import methods
    from gimbal.config import default_variants

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    trained = {name[len("train_"):] for name, s in stages.items() if "stages/train.py --variant" in s["cmd"]}
    for name in trained:
        assert stages[f"train_{name}"]["cmd"].endswith(f"--variant {name}")
        assert f"variants.{name}" in stages[f"train_{name}"]["params"]
        assert f"models/{name}.pt" in stages["evaluate"]["deps"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())["variants"]
    assert trained == set(methods.burst()) == set(default_variants()) == set(params)
    assert "variants" in stages["report"]["params"]


# -- SIGTERM ----------------------------------------------------------------------------------------------------------
_SLEEPER = '''
import sys, time
from pathlib import Path
from gimbal.checkpoint import Resumable
from gimbal.cli_utils import run_stage, stage_parser
from gimbal.training.loop import interrupted

def main(cfg, args):
    run = Resumable(Path(args.ready).with_name("last.pt"), "fp", None)
    run.saved_step = 2
    Path(args.ready).write_text("ready")
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        raise interrupted("train toy", 3, run) from None

if __name__ == "__main__":
    parser = stage_parser("toy stage")
    parser.add_argument("--ready")
    run_stage(main, parser, ("seed",))
'''


def test_sigterm_stops_a_stage_with_one_line(tmp_path: Path) -> None:
    """SIGTERM (sent by `timeout`, `kill` and schedulers) exited 143 with no word; now it is one line naming the
    signal and where a rerun resumes."""
    script = tmp_path / "toy_stage.py"
    script.write_text(_SLEEPER)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, str(script), "--params", str(REPO / "params.yaml"), "--ready", str(ready)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("INFO ")]
    assert proc.returncode == 143
    assert lines == [f"error: stopped by SIGTERM; train toy: interrupted at step 3; `dvc repro` resumes from step 2 "
                     f"({tmp_path / 'last.pt'})"]


# -- a failed training leaves its previous dvclive logs ---------------------------------------------------------------
def test_a_training_that_fails_before_its_first_step_leaves_dvclive_as_it_was(shards: Path, tmp_path: Path) -> None:
    """A training that failed at the train shard index (after validation data was read, before step 1) emptied
    `dvclive/train_gimbal/` (10 files -> 0)."""
    import shutil

    from test_train import tiny_params

    from gimbal.config import parse_config
    from gimbal.errors import DataError
    from gimbal.pipeline import train

    broken = tmp_path / "shards"
    shutil.copytree(shards, broken)
    index = json.loads((broken / "train" / "index.json").read_text())
    (broken / "train" / "index.json").write_text(json.dumps({**index, "format": 2}))
    live = tmp_path / "live"
    (live / "plots" / "metrics" / "train").mkdir(parents=True)
    files = {live / "metrics.json": '{"step": 5}\n', live / "plots" / "metrics" / "train" / "loss.tsv": "step\tloss\n"}
    for path, text in files.items():
        path.write_text(text)
    with pytest.raises(DataError, match="not a gimbal shard index"):
        train(parse_config(tiny_params()), "gimbal", shards_dir=broken, model_path=tmp_path / "model.pt",
              metrics_path=tmp_path / "metrics.json", exposures_path=tmp_path / "exposures.json",
              schedule_plot=tmp_path / "schedule.png", live_dir=live, checkpoint_path=tmp_path / "ckpt" / "last.pt")
    assert {p for p in live.rglob("*") if p.is_file()} == set(files)
    assert all(path.read_text() == text for path, text in files.items())


# -- interpolate's progress -------------------------------------------------------------------------------------------
def test_interpolate_progress_advances_per_clip(tmp_path: Path, monkeypatch) -> None:
    """The bar sat at 0/34 until every clip was done: each clip now moves it as it finishes (one worker: the
    second clip starts only after the first one counted)."""
    import threading

    import gimbal.data.interpolate as interp

    clips = [{"id": f"c{k}", "split": "train", "file": f"train/c{k}.mkv", "frames": 3, "fps": 30.0} for k in range(3)]
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "index.json").write_text(json.dumps({"clips": clips}))
    counted: list[int] = []
    moved = threading.Event()

    class Bar:
        def __init__(self, *args, **kwargs) -> None:
            self.n = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def update(self, k: int = 1) -> None:
            self.n += k
            counted.append(self.n)
            moved.set()

    seen_before_start: list[int] = []

    def fake_clip(_interp, clip, src, dst, factor):
        if clip["id"] != "c0":
            moved.wait(timeout=3)  # the bar has counted the clips before this one (or 3 s passed)
            seen_before_start.append(len(counted))
            moved.clear()
        return {**clip, "frames": 17, "frames_sha256": "0" * 64}

    monkeypatch.setattr(interp, "tqdm", Bar)
    monkeypatch.setattr(interp, "_interpolate_clip", fake_clip)
    monkeypatch.setattr(interp, "make_interpolator", lambda method, **kw: None)
    interp.interpolate_clips(tmp_path / "clips", tmp_path / "interp", method="linear", factor=8, workers=1)
    assert counted == [1, 2, 3]
    assert seen_before_start == [1, 2]


# -- shards: a full disk, and a killed run restored from DVC's run cache ------------------------------------------
def test_a_full_disk_during_shards_names_the_file_the_free_space_and_the_size(tmp_path: Path, monkeypatch) -> None:
    """It was "no space left on device writing a file": no file, no size."""
    import errno
    import shutil

    import gimbal.data.shards as shards_module
    from gimbal.errors import DiskFullError

    out, _ = make_shards(tmp_path, ShardConfig(clips_per_shard=2, codec="libx264", crf=0))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, calls = shards_module._write_sample, []

    def fills_the_disk(writer, clip, *args):
        calls.append(clip["id"])
        if len(calls) == 3:  # the first val clip (after 2 train shards): as a tar write raises it, no file name
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(writer, clip, *args)

    monkeypatch.setattr(shards_module, "_write_sample", fills_the_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 995 * 10**6, 5 * 10**6))
    with pytest.raises(DiskFullError) as info:
        shards_module.build_shards(tmp_path / "interp" / "index.json", out, ShardConfig(clips_per_shard=1,
                                   codec="libx264", crf=0), progress=False)
    message = str(info.value)
    assert message.startswith(f"no space left on device writing {out / 'val' / 'shard-00000.tar'} (5 MB free")
    assert re.search(r"the shards need about \d+ MB", message)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # no temp, nothing changed


def _dvc(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    path = f"{Path(dvc).parent}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run([dvc, *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PATH": path, **(env or {})})


_SHARDS_STAGE = '''
import os, signal
import gimbal.data.shards as shards

if os.environ.get("KILL_AFTER_FIRST_SHARD"):  # SIGKILL once the first shard is written: a temp is left behind
    index = shards.write_dali_index
    def write_then_die(*args, **kwargs):
        index(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    shards.write_dali_index = write_then_die
shards.build_shards("interp/index.json", "shards", shards.ShardConfig(clips_per_shard=1), progress=False)
'''


def test_a_killed_shards_run_leaves_no_temp_after_dvc_restores_from_its_run_cache(tmp_path: Path) -> None:
    """After `kill -9` during `shards`, `dvc repro` restored the outputs from DVC's run cache, so the stage never
    ran to remove the 62 MB temp it had left beside them. The temps now live inside the output folders, which DVC
    removes before it restores them."""
    if not (shutil.which("dvc") or (Path(sys.executable).parent / "dvc").exists()):
        pytest.skip("dvc is not installed")
    make_interp(tmp_path / "interp", {"vidA": "train", "vidB": "val", "vidC": "test"}, clips_per_video=2, frames=5)
    (tmp_path / "stage.py").write_text(_SHARDS_STAGE)
    outs = [f"shards/{split}" for split in ("train", "val", "test")]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"shards": {
        "cmd": f"{sys.executable} stage.py", "deps": ["stage.py", "interp"], "outs": outs}}}))
    assert _dvc(tmp_path, "init", "--no-scm", "-q").returncode == 0
    assert _dvc(tmp_path, "repro").returncode == 0  # a complete run: its outputs are in the run cache
    killed = _dvc(tmp_path, "repro", "-f", env={"KILL_AFTER_FIRST_SHARD": "1"})
    assert killed.returncode != 0
    temps = [p for p in tmp_path.rglob("*.tmp") if ".dvc" not in p.parts]
    assert temps and all(str(p.relative_to(tmp_path)).startswith(tuple(outs)) for p in temps), temps  # in the outs
    again = _dvc(tmp_path, "repro")
    assert again.returncode == 0 and "skipping run" in again.stdout + again.stderr  # restored, not run
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") and ".dvc" not in p.parts] == []
    assert all(json.loads((tmp_path / out / "index.json").read_text())["format"] == 3 for out in outs)


# -- the recovery table says what the code prints ---------------------------------------------------------------------
def _recovery_rows() -> list[str]:
    """The first cell of each row of the README's "How to recover" table (wherever it lives: README or docs/)."""
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        lines = doc.read_text().splitlines()
        if "| message | do |" in lines:
            start = lines.index("| message | do |") + 2
            rows = []
            for line in lines[start:]:
                if not line.startswith("|"):
                    break
                rows.append(line[1:].split(" | ")[0])
            return rows
    raise AssertionError("no recovery table (| message | do |) in README.md or docs/")


def _says(row: str, message: str) -> bool:
    """Whether one of the row's backticked messages fits ``message``: its literal parts (between ``...`` and
    ``<placeholder>``s) appear in it in order (backticks inside the message aside: a table cell cannot hold them)."""
    message = message.replace("`", "")
    for span in re.findall(r"`([^`]+)`", row):
        at, ok = 0, True
        for part in (p.strip() for p in re.split(r"\.\.\.|<[^>]+>", span)):
            found = message.find(part, at) if part else at
            if found < 0:
                ok = False
                break
            at = found + len(part)
        if ok:
            return True
    return False


def test_the_recovery_table_says_what_the_code_prints(tmp_path: Path, monkeypatch) -> None:
    """Each row below is produced by the code it names and must match its row of the table (the table said
    "format 2" while the code printed format 3)."""
    import errno

    import torch

    import gimbal.data.shards as shards_module
    from gimbal.checkpoint import read_model_file, save_checkpoint
    from gimbal.config import parse_config
    from gimbal.data.loader import check_batch_size, open_split
    from gimbal.errors import GimbalError

    def message(call) -> str:
        try:
            call()
        except GimbalError as exc:
            return str(exc)
        raise AssertionError(f"{call} raised nothing")

    monkeypatch.chdir(tmp_path)  # the messages name data/... as a stage run from the repository root does
    index, _ = make_interp(Path("data/interp"), {"vidA": "train", "vidB": "val"}, clips_per_video=2, frames=5)
    cfg = ShardConfig(clips_per_shard=1, codec="libx264", crf=0)
    shards_module.build_shards(index, "data/shards", cfg, progress=False)
    printed: dict[str, list[str]] = {}

    tar = Path("data/shards/train/shard-00000.tar")
    data = bytearray(tar.read_bytes())
    data[-2000] ^= 0xFF
    tar.write_bytes(bytes(data))
    printed["shard is corrupt"] = [message(lambda: open_split(Path("data/shards"), "train"))]
    doc = json.loads(Path("data/shards/val/index.json").read_text())
    Path("data/shards/val/index.json").write_text(json.dumps({**doc, "format": 2}))
    printed["shard index of format"] = [message(lambda: open_split(Path("data/shards"), "val"))]

    original = index.read_text()
    clips = json.loads(original)
    clips["clips"][0]["frames_sha256"] = "0" * 64
    index.write_text(json.dumps(clips))
    wrong = message(lambda: shards_module.build_shards(index, "data/out", cfg, progress=False))
    del clips["clips"][0]["frames_sha256"]
    index.write_text(json.dumps(clips))
    printed["decoded frames do not match"] = [wrong, message(lambda: shards_module.build_shards(index, "data/out", cfg,
                                                                                                progress=False))]

    model = Path("models/gimbal.pt")
    save_checkpoint(model, {"format": "x", "config": {}, "w": torch.zeros(8)})
    state = torch.load(model, weights_only=True)
    state["w"][0] = 1.0
    torch.save(state, model)
    printed["tensor checksum mismatch"] = [message(lambda: read_model_file(model, "x", "toy", "train_gimbal"))]

    index.write_text(original)
    printed["'train.batch_size'"] = [message(lambda: check_batch_size("data/shards", "train", 9, "train.batch_size"))]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sensor"]["overrides"] = {"budget_s": "abc"}
    printed["sensor.overrides"] = [message(lambda: parse_config(params))]
    report = _stage("stages/report.py")
    printed["'variants.<name>' is trained by no stage"] = [
        message(lambda: report.check_variants({"foo": {}}, REPO / "dvc.yaml")).replace(str(REPO / "dvc.yaml"),
                                                                                       "dvc.yaml")]

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards_module, "_write_sample", full)
    printed["no space left on device writing data/shards"] = [
        message(lambda: shards_module.build_shards(Path("data/interp/index.json"), "data/shards", cfg, progress=False))]
    from gimbal.checkpoint import Resumable
    from gimbal.training.loop import interrupted

    run = Resumable(Path("checkpoints/gimbal/last.pt"), "fp", None)
    run.saved_step = 2
    printed["stopped by SIGTERM"] = ["stopped by SIGTERM; " + str(interrupted("train gimbal", 3, run))]

    rows = _recovery_rows()
    for key, messages in printed.items():
        matching = [row for row in rows if key in row]
        assert matching, f"no row of the recovery table for {key!r}"
        for text in messages:
            assert any(_says(row, text) for row in matching), (key, text, matching)


def test_dvc_checkout_relink_restores_a_file_corrupted_with_its_size_and_mtime_kept(tmp_path: Path) -> None:
    """The table's fix for a corrupt model or shard: plain `dvc checkout <file>` exits 0 and restores nothing when
    the size and mtime were kept (the README used to give it); `dvc checkout --relink <file>` restores it."""
    if not (shutil.which("dvc") or (Path(sys.executable).parent / "dvc").exists()):
        pytest.skip("dvc is not installed")
    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "gimbal.pt"
    good = os.urandom(50_000)
    model.write_bytes(good)
    stage = {"cmd": "true", "outs": ["models/gimbal.pt"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    assert _dvc(tmp_path, "init", "--no-scm", "-q").returncode == 0
    assert _dvc(tmp_path, "commit", "-f", "-q").returncode == 0
    st = model.stat()
    bad = bytearray(good)
    bad[1000] ^= 0xFF
    model.chmod(0o644)
    model.write_bytes(bytes(bad))
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    plain = _dvc(tmp_path, "checkout", "models/gimbal.pt")
    assert plain.returncode == 0 and model.read_bytes() == bytes(bad)  # nothing restored
    assert _dvc(tmp_path, "checkout", "--relink", "models/gimbal.pt").returncode == 0
    assert model.read_bytes() == good
