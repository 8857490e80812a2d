"""The same bytes on any machine: the samples stage and the locked environment.

The ``samples`` stage is the root of the data pipeline, so any byte it writes differently on another machine
(another core count, another CPU) changes every later stage. ``make install`` installs the environment from
``requirements.lock`` (every package pinned with hashes), which must cover what ``pyproject.toml`` names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from gimbal.data import samples
from gimbal.data.video import X264_ASM_X86_64, encode_frames, frames_sha256, write_video

REPO = Path(__file__).resolve().parents[1]
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
