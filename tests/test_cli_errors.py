"""The `gimbal` command's one error path (shared with the stages), and model files that are only data.

Every failure of `gimbal infer`, `schedule` and `calibrate` is one line `error: ...` naming the file and the fix,
with nothing written: an output folder that cannot be written, an output that is a directory, a full disk (writes
that really go to /dev/full), a frame whose header claims more pixels than the memory holds, a malformed model
file, Ctrl-C and SIGTERM, and a bug (`internal error` and a log file). A model file is checked by its checksum,
never names a path that loading follows, and exposures are checked against a valid range up front.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from test_infer import EXPOSURES_US, infer_args, synthetic_burst, tiny_params, write_frames

from gimbal.calibration.simulate import simulate_dataset
from gimbal.checkpoint import save_checkpoint
from gimbal.cli import main
from gimbal.errors import DataError
from gimbal.sensor.camera import PRESET_FILE_FIELDS, get_camera
from gimbal.system import GimbalSystem, load_system, save_system

CAMERA = get_camera("jetcam19m").replace(
    name="simulated", gain_dn_per_e=0.3, read_noise_e=6.0, dark_current_e_per_s=400.0, quantum_efficiency=0.62,
    full_well_e=11_000.0, prnu=0.05, bits=12, tau1_e=None)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    params = tiny_params(3)
    path = tmp_path_factory.mktemp("model") / "rgb.pt"
    save_system(path, GimbalSystem.from_params(params), params, "gimbal")
    return path


@pytest.fixture(scope="module")
def descriptor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small EMVA 1288 data set (32 x 32 .npy images) that calibrates."""
    return simulate_dataset(tmp_path_factory.mktemp("emva") / "data", CAMERA, width=32, height=32,
                            image_format="npy", seed=3).descriptor


@pytest.fixture
def frames(tmp_path: Path) -> list[str]:
    return write_frames(tmp_path / "in", synthetic_burst())


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one `error:` line on stderr (and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` read-only. As root, permissions do not stop writes: there the refusal the kernel gives other
    users (EACCES on creating a file or folder in it) is what creating a temp in it raises."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def refuse(real):  # type: ignore[no-untyped-def]
        def make(*args, **kwargs):  # type: ignore[no-untyped-def]
            where = Path(kwargs.get("dir") or tempfile.gettempdir())
            if where.resolve() == folder.resolve():
                raise PermissionError(errno.EACCES, "Permission denied",
                                      str(where / f"{kwargs.get('prefix', '')}x{kwargs.get('suffix', '')}"))
            return real(*args, **kwargs)
        return make

    monkeypatch.setattr(tempfile, "mkstemp", refuse(real_mkstemp))
    monkeypatch.setattr(tempfile, "mkdtemp", refuse(real_mkdtemp))


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic output's temp file becomes a link to /dev/full: its writes fail with a real ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):  # type: ignore[no-untyped-def]
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(name, os.O_WRONLY), name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


# ----------------------------------------------------------------------------- calibrate
def test_calibrate_onto_a_directory_writes_nothing(descriptor: Path, tmp_path: Path, capsys) -> None:
    """The two figures were written before the preset failed on the directory; now nothing is written."""
    out = tmp_path / "cam.yaml"
    out.mkdir()
    assert main(["calibrate", str(descriptor), "--pixel-um", "5", "-q", "-o", str(out)]) == 2
    line = one_error(capsys)
    assert str(out) in line and "is a directory" in line and "file name" in line, line
    assert listing(tmp_path) == ["cam.yaml"] and listing(out) == []


def test_calibrate_into_a_read_only_folder_writes_nothing(descriptor: Path, tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    try:
        assert main(["calibrate", str(descriptor), "--pixel-um", "5", "-q", "-o", str(ro / "cam.yaml")]) == 1
        line = one_error(capsys)
        assert f"{ro / 'cam.yaml'}: cannot write in folder {ro}" in line and "permissions" in line, line
        assert listing(ro) == []
    finally:
        ro.chmod(0o755)


def test_calibrate_on_a_full_disk_writes_nothing(descriptor: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cam.yaml").write_text("name: the previous preset\n")
    full_disk(monkeypatch)
    assert main(["calibrate", str(descriptor), "--pixel-um", "5", "-q", "-o", str(out / "cam.yaml")]) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: no space left on device writing {out / 'cam.yaml'}") and "free some space" in line
    assert listing(out) == ["cam.yaml"] and (out / "cam.yaml").read_text() == "name: the previous preset\n"


# ----------------------------------------------------------------------------- infer: outputs
def test_infer_into_a_read_only_folder_writes_nothing(model: Path, frames, tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    try:
        assert main(infer_args(model, frames, ro / "out.png")) == 1
        line = one_error(capsys)
        assert f"{ro / 'out.png'}: cannot write in folder {ro}" in line, line
        assert listing(ro) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("ext", [".png", ".npy"])
def test_infer_on_a_full_disk_writes_neither_output(model: Path, frames, tmp_path: Path, capsys, monkeypatch,
                                                    ext: str) -> None:
    out, lin = tmp_path / f"out{ext}", tmp_path / "lin.tiff"
    full_disk(monkeypatch)
    assert main(infer_args(model, frames, out, EXPOSURES_US, "--output-linear", str(lin))) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: no space left on device writing {out}; needs about"), line
    assert listing(tmp_path) == ["in"]  # neither output, no temp


def test_same_file_for_both_outputs_is_refused(model: Path, frames, tmp_path: Path, capsys) -> None:
    """-o and --output-linear naming one file: one merge overwrote the other."""
    out = tmp_path / "out.tiff"
    assert main(infer_args(model, frames, out, EXPOSURES_US, "--output-linear", str(tmp_path / "." / "out.tiff"))) == 2
    line = one_error(capsys)
    assert "-o" in line and "--output-linear" in line and "same file" in line and str(out) in line, line
    assert listing(tmp_path) == ["in"]


def test_outputs_appear_together_when_the_run_succeeds(model: Path, frames, tmp_path: Path, capsys) -> None:
    out, lin = tmp_path / "out.png", tmp_path / "lin.npy"
    assert main(infer_args(model, frames, out, EXPOSURES_US, "--output-linear", str(lin), "-q")) == 0
    assert listing(tmp_path) == ["in", "lin.npy", "out.png"]
    assert np.load(lin).shape == (19, 23, 3)


# ----------------------------------------------------------------------------- infer: frames larger than the memory
def _npy_header_only(path: Path, shape: tuple[int, ...], dtype: str = "<u2") -> None:
    """A .npy file whose header declares ``shape`` but holds no data."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})


def _tiff_claiming(path: Path, width: int, height: int) -> None:
    """A 1 x 1 16-bit TIFF whose ImageWidth / ImageLength tags are rewritten to ``width`` x ``height``."""
    tifffile.imwrite(path, np.zeros((1, 1), np.uint16))
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        spots = [(tags[name].valueoffset, tags[name].dtype, value)
                 for name, value in (("ImageWidth", width), ("ImageLength", height))]
    data = bytearray(path.read_bytes())
    for offset, dtype, value in spots:
        fmt = "<H" if int(dtype) == 3 else "<I"
        data[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["npy", "tiff"])
def test_a_header_claiming_60000_squared_is_refused_before_reading(model: Path, frames, tmp_path: Path, capsys,
                                                                   kind: str) -> None:
    big = tmp_path / f"big.{kind}"
    if kind == "npy":
        _npy_header_only(big, (60000, 60000, 3))
    else:
        _tiff_claiming(big, 60000, 60000)
        with tifffile.TiffFile(big) as tif:
            assert tif.series[0].shape == (60000, 60000)
    paths = [frames[0], str(big), frames[2]]
    out = tmp_path / "out.png"
    start = time.perf_counter()
    assert main(infer_args(model, paths, out)) == 1
    assert time.perf_counter() - start < 30
    line = one_error(capsys)
    assert line.startswith(f"error: {big}: its header declares a 60000 x 60000 image"), line
    assert re.search(r"needs about [\d.]+ GB of memory but only [\d.]+ GB is available", line), line
    assert "crop or downscale the frames" in line
    assert not out.exists()


def test_the_memory_check_follows_the_memory_available(model: Path, frames, tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    """Ordinary frames are refused the same way when the process may allocate less than they need."""
    from gimbal.inference import imageheader

    out = tmp_path / "out.png"
    # the three 23 x 19 RGB 16-bit frames and their working copies need about 0.12 MB
    monkeypatch.setattr(imageheader, "available_memory_bytes", lambda: 50_000)
    assert main(infer_args(model, frames, out)) == 1
    assert "its header declares a 23 x 19 image of 3 channel(s) at 16 bits" in one_error(capsys)
    monkeypatch.setattr(imageheader, "available_memory_bytes", lambda: 500_000)
    assert main(infer_args(model, frames, out)) == 0
    assert out.is_file()


def test_calibrate_refuses_an_image_larger_than_the_memory(descriptor: Path, tmp_path: Path, capsys) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(descriptor.parent, data)
    image = data / "images" / "image00004.npy"
    _npy_header_only(image, (60000, 60000))
    (tmp_path / "out").mkdir()
    assert main(["calibrate", str(data / descriptor.name), "--pixel-um", "5", "-q",
                 "-o", str(tmp_path / "out" / "cam.yaml")]) == 1
    line = one_error(capsys)
    assert f"{image}: its header declares a 60000 x 60000 image" in line, line
    assert listing(tmp_path / "out") == []


# ----------------------------------------------------------------------------- the one error path
def _raising(exc: BaseException):  # type: ignore[no-untyped-def]
    def infer_files(**kwargs):  # type: ignore[no-untyped-def]
        raise exc
    return infer_files


@pytest.mark.parametrize(("exc", "words"), [
    (MemoryError("Unable to allocate 26.8 GiB for an array with shape (60000, 60000, 3) and data type float64"),
     ["out of memory (Unable to allocate 26.8 GiB", "crop or downscale", "--max-memory-gb"]),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 43200000000 bytes."), ["out of memory", "can't allocate memory"]),
    (PermissionError(errno.EACCES, "Permission denied", "/srv/out/.out.123-456@host.abc.tmp.png"),
     ["/srv/out/out.png: permission denied"]),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/srv/out/lin.tiff"), ["/srv/out/lin.tiff: is a directory"]),
    (OSError(errno.ENOSPC, "No space left on device"), ["no space left on device writing a file", "free some space"]),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out.png"), ["/mnt/ro/out.png: read-only file system"]),
])
def test_errors_are_one_line_with_the_fix(model: Path, frames, tmp_path: Path, capsys, monkeypatch,
                                          exc: BaseException, words: list[str]) -> None:
    import gimbal.inference.infer

    monkeypatch.setattr(gimbal.inference.infer, "infer_files", _raising(exc))
    assert main(infer_args(model, frames, tmp_path / "out.png")) == 1
    line = one_error(capsys)
    assert all(w in line for w in words) and "internal error" not in line, line


def test_a_bug_is_an_internal_error_with_a_log(model: Path, frames, tmp_path: Path, capsys, monkeypatch) -> None:
    import gimbal.inference.infer

    monkeypatch.setenv("GIMBAL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(gimbal.inference.infer, "infer_files", _raising(KeyError("n")))
    assert main(infer_args(model, frames, tmp_path / "out.png")) == 1
    line = one_error(capsys)
    assert line.startswith("error: internal error: KeyError: 'n' (traceback in "), line
    log = Path(line.split("traceback in ")[1].split(";")[0])
    assert log.parent == tmp_path / "logs" and log.name.startswith("gimbal-infer-")
    assert "Traceback" in log.read_text() and "KeyError" in log.read_text()
    with pytest.raises(KeyError):
        main([*infer_args(model, frames, tmp_path / "out.png"), "--debug"])


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_with_one_line(model: Path, frames, tmp_path: Path, capsys, monkeypatch, request,
                                               signum: int, status: int) -> None:
    """SIGTERM exited 143 with no word; both signals now stop the run with one line, nothing written."""
    import gimbal.inference.infer

    real = gimbal.inference.infer.reconstruct_burst

    def signalled(*args, **kwargs):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler interrupts this
        return real(*args, **kwargs)

    monkeypatch.setattr(gimbal.inference.infer, "reconstruct_burst", signalled)
    # a shell starts a background job (`cmd &`) with SIGINT ignored, and Python keeps that: give this process
    # Python's own Ctrl-C handler, as an interactive run has, so the test does not depend on how pytest was started
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous_int))
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out.png"
    assert main(infer_args(model, frames, out)) == status
    line = one_error(capsys)
    expected = "error: stopped by SIGTERM; nothing was written" if signum == signal.SIGTERM else \
        "error: interrupted; nothing was written"
    assert line == expected
    assert listing(tmp_path) == ["in"]
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handler is gone afterwards


# ----------------------------------------------------------------------------- model files
def _model_state(model: Path) -> dict:
    state = torch.load(model, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if k != "tensors_sha256"}


def test_schedule_on_malformed_stored_exposures_names_the_file(model: Path, tmp_path: Path, capsys) -> None:
    """A stored schedule without 'n' was a KeyError traceback."""
    state = _model_state(model)
    state["exposures"] = {k: v for k, v in state["exposures"].items() if k != "n"}
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, state)  # a valid checksum: the schedule itself is wrong
    assert main(["schedule", "--model", str(bad)]) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: {bad}: the stored shutter schedule ('exposures') is malformed: no 'n'"), line
    state["exposures"]["n"] = 3
    state["exposures"]["durations_us"] = ["872", 234.0, 583.0]
    save_checkpoint(bad, state)
    assert main(["schedule", "--model", str(bad), "--json"]) == 1
    assert "'durations_us' is ['872', 234.0, 583.0], not a list of n = 3 finite numbers" in one_error(capsys)


def test_a_flipped_byte_in_the_checksum_key_is_refused(model: Path, tmp_path: Path, frames, capsys) -> None:
    """The file loaded as one from before checksums, unchecked, so flipped weights went through."""
    from model_fixtures import flip_tensor_bytes

    bad = tmp_path / "bad.pt"
    data = bytearray(model.read_bytes())
    at = data.index(b"tensors_sha256")
    data[at + len("tensors_sha25")] ^= 0x01  # 'tensors_sha256' -> 'tensors_sha257'
    bad.write_bytes(bytes(data))
    flip_tensor_bytes(bad)  # and the weights are damaged too
    with pytest.raises(DataError, match="checksum entry is named 'tensors_sha257'"):
        load_system(bad)
    for argv in (infer_args(bad, frames, tmp_path / "out.png"), ["schedule", "--model", str(bad)]):
        assert main(argv) == 1
        line = one_error(capsys)
        assert line.startswith(f"error: {bad}: corrupt: its checksum entry is named 'tensors_sha257'"), line
    assert not (tmp_path / "out.png").exists()


def test_a_model_file_without_a_checksum_is_refused(model: Path, tmp_path: Path, capsys) -> None:
    old = tmp_path / "old.pt"
    torch.save(_model_state(model), old)
    with pytest.raises(DataError, match=r"no 'tensors_sha256' entry, so its tensors cannot be checked"):
        load_system(old)
    assert main(["schedule", "--model", str(old)]) == 1
    assert f"error: {old}: no 'tensors_sha256' entry" in one_error(capsys)


def test_stored_params_that_are_not_a_mapping_name_the_model_file(model: Path, tmp_path: Path, frames,
                                                                  capsys) -> None:
    """Was a usage error (exit 2) that did not name the model file."""
    state = _model_state(model)
    state["params"] = ["seed", 0]
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, state)
    assert main(infer_args(bad, frames, tmp_path / "out.png")) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: {bad}: the stored params are list, not a mapping of param groups"), line
    state["params"] = {**tiny_params(3), "model": {"channels": "three"}}
    save_checkpoint(bad, state)
    assert main(infer_args(bad, frames, tmp_path / "out.png")) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: {bad}: the stored params do not build a model (") and "model.channels" in line


def test_a_stored_camera_path_is_never_opened(model: Path, tmp_path: Path, frames, capsys, monkeypatch) -> None:
    """`sensor.camera: /etc/passwd` in a model file made infer open and YAML-parse that path."""
    from gimbal.sensor import camera

    opened: list[str] = []
    real = camera.read_camera_file
    monkeypatch.setattr(camera, "read_camera_file", lambda path, *a: opened.append(str(path)) or real(path, *a))
    state = _model_state(model)
    state["params"] = {**state["params"], "sensor": {"camera": "/etc/passwd"}}
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, state)
    assert main(infer_args(bad, frames, tmp_path / "out.png")) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: {bad}: the stored params name a camera preset file (sensor.camera: "
                           "'/etc/passwd')") and "never opens a path" in line and "re-train" in line, line
    assert opened == []


def test_a_camera_preset_is_stored_as_its_values(tmp_path: Path) -> None:
    """Training with `sensor.camera: <preset file>` stores the camera's values: the model loads, with the same
    camera, after the preset file is gone, and names no path."""
    preset = tmp_path / "mycam.yaml"
    fields = {k: getattr(CAMERA, k) for k in PRESET_FILE_FIELDS}
    preset.write_text(yaml.safe_dump({**fields, "prnu": CAMERA.prnu}))
    params = {**tiny_params(1), "sensor": {"camera": str(preset), "overrides": {"readout_s": 3e-4}}}
    system = GimbalSystem.from_params(params)
    model = tmp_path / "m.pt"
    save_system(model, system, params, "gimbal")
    preset.unlink()
    assert str(preset).encode() not in model.read_bytes()
    loaded = load_system(model)
    cam = loaded.sensor.camera
    assert cam == system.sensor.camera  # what evaluate compares with the params' camera
    assert cam.readout_s == 3e-4 and cam.tau1_e is None and cam.tau1 == pytest.approx(0.9 * 11_000.0)


# ----------------------------------------------------------------------------- exposures
@pytest.mark.parametrize("bad", ["1e-9", "-5", "nan"])
def test_an_implausible_exposure_is_refused_up_front(model: Path, frames, tmp_path: Path, capsys, bad: str) -> None:
    """1e-9 us was blamed on the model file ("the merge reaches 1.49e+18 ... the model file is the likely cause")."""
    exposures = [EXPOSURES_US[0], float(bad), EXPOSURES_US[2]]
    assert main(infer_args(model, frames, tmp_path / "out.png", exposures)) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: --exposures-us {float(bad):g}: exposure times must be positive microseconds "
                           "of at least 0.1 us"), line
    assert "model" not in line and not (tmp_path / "out.png").exists()


def test_the_exposure_range_of_the_camera_is_named(model: Path, frames, tmp_path: Path, capsys) -> None:
    assert main(infer_args(model, frames, tmp_path / "out.png", [872.0, 234.0, 300.0], "--camera", "indoor")) == 2
    line = one_error(capsys)
    assert "--exposures-us" in line and "each must be in [500, 3800] us for camera 'indoor" in line, line


# ----------------------------------------------------------------------------- progress
def test_tiled_merges_show_a_progress_bar(model: Path, tmp_path: Path, capsys) -> None:
    """An 8000 x 8000 merge printed nothing for minutes; each tile now advances a bar on stderr (not with -q)."""
    from gimbal.inference.tiling import reconstruct_tiled

    system = load_system(model)
    burst = torch.rand(1, 3, 3, 24, 24)
    m = system.net.multiple
    out = reconstruct_tiled(system, burst, None, tile=8 * m, overlap=4 * m, progress=True)
    err = capsys.readouterr().err
    assert out.tiles == 4 and re.search(r"merge: 100%.* 4/4 \[", err), err
    reconstruct_tiled(system, burst, None, tile=8 * m, overlap=4 * m, progress=False)
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- the README's recovery table
def test_the_recovery_rows_say_what_the_code_prints(model: Path, frames, tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    """The rows for a model without its checksum, a stored camera path, a frame too large for the memory and an
    unwritable output folder match the lines the command prints."""
    from test_stage_faults import _recovery_rows, _says

    printed: dict[str, str] = {}
    old = tmp_path / "old.pt"
    torch.save(_model_state(model), old)
    main(["schedule", "--model", str(old)])
    printed["no 'tensors_sha256' entry"] = one_error(capsys)
    state = _model_state(model)
    state["params"] = {**state["params"], "sensor": {"camera": "/etc/passwd"}}
    save_checkpoint(tmp_path / "path.pt", state)
    main(infer_args(tmp_path / "path.pt", frames, tmp_path / "out.png"))
    printed["stored params name a camera preset file"] = one_error(capsys)
    big = tmp_path / "big.npy"
    _npy_header_only(big, (60000, 60000, 3))
    main(infer_args(model, [frames[0], str(big), frames[2]], tmp_path / "out.png"))
    printed["its header declares"] = one_error(capsys)
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)
    try:
        main(infer_args(model, frames, ro / "out.png"))
    finally:
        ro.chmod(0o755)
    printed["cannot write in folder"] = one_error(capsys)
    rows = _recovery_rows()
    for key, line in printed.items():
        matching = [row for row in rows if key in row]
        assert matching and any(_says(row, line.removeprefix("error: ")) for row in matching), (key, line, matching)
