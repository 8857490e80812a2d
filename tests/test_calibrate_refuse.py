"""`gimbal calibrate` refuses data that EMVA 1288 cannot measure from, and warns by name where it can.

Each refusal is one ``error:`` line naming the descriptor (and its line, or the image) and the fix, with exit
status 1 and nothing written (no preset, no figure). The data sets come from gimbal's simulator
(:mod:`gimbal.calibration.simulate`) and, where it can make the case, from the independent `emva1288` package's
camera simulator; each is valid as made (the first test) and then broken the way a user might break it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from gimbal.calibration import calibrate, read_descriptor
from gimbal.calibration.simulate import simulate_dataset
from gimbal.cli import main
from gimbal.errors import DataError
from gimbal.inference.frame_files import read_frame
from gimbal.sensor.camera import get_camera

REPO = Path(__file__).resolve().parents[1]
CAMERA = get_camera("jetcam19m").replace(
    name="simulated", gain_dn_per_e=0.3, read_noise_e=6.0, dark_current_e_per_s=400.0, quantum_efficiency=0.62,
    full_well_e=11_000.0, prnu=0.05, bits=12, tau1_e=None)
SOURCES = ("gimbal", "emva1288")
Cap = pytest.CaptureFixture[str]


def make_set(source: str, out: Path, *, bits: int = 12, stack_at: float = 0.5, gain: float | None = None,
             steps: int = 12) -> Path:
    """A small valid data set (16 x 16, ``steps`` exposure times, 4-image stacks); returns its descriptor."""
    if source == "gimbal":
        cam = CAMERA.replace(bits=bits, gain_dn_per_e=gain or (0.3 if bits > 8 else 0.02))
        return simulate_dataset(out, cam, steps=steps, stack_images=4, width=16, height=16, image_format="npy",
                                stack_at=stack_at, seed=5).descriptor
    generator = pytest.importorskip("emva1288.camera.dataset_generator", reason="pip install emva1288==1.0.2")
    from emva1288.camera.routines import Qe

    h = w = 16
    rng = np.random.default_rng(7)
    prnu = 1.0 + 0.02 * rng.standard_normal((h, w))
    prnu /= prnu.mean()
    k = gain or (0.25 if bits > 8 else 0.015)
    gen = generator.DatasetGenerator(
        steps=12, L=4, image_format="tif", outdir=str(out), width=w, height=h, bit_depth=bits, K=k, K_min=k,
        K_max=1.0, blackoffset=10, blackoffset_min=0, blackoffset_max=255, blackoffset_steps=256,
        qe=Qe(qe=np.full((h, w, 1), 0.6), wavelength=np.array([525.0]), width=w, height=h), temperature=30,
        temperature_ref=30, dark_current_ref=300.0, dark_signal_0=10.0, sigma2_dark_0=49.0, u_esat=12_000.0,
        prnu=prnu, exposure_min=1e6, exposure_max=50e6, seed=11)
    return Path(gen.descriptor_path)


@pytest.fixture(scope="module", params=SOURCES)
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_set(request.param, tmp_path_factory.mktemp(request.param) / "data").parent


@pytest.fixture
def data(base: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid data set to break; returns its descriptor."""
    shutil.copytree(base, tmp_path / "data")
    return tmp_path / "data" / "EMVA1288descriptor.txt"


# ----------------------------------------------------------------------------- helpers
def lines_of(desc: Path) -> list[str]:
    return desc.read_text().splitlines()


def write_lines(desc: Path, lines: list[str]) -> None:
    desc.write_text("\n".join(lines) + "\n")


def image(desc: Path, line: str) -> Path:
    return desc.parent / line.split(None, 1)[1].replace("\\", "/")


def point_at(desc: Path, cmd: str, count: int = 2) -> int:
    """Index (0-based) of the first ``cmd`` ('b' or 'd') line with exactly ``count`` images."""
    lines = lines_of(desc)
    for i, ln in enumerate(lines):
        if ln.startswith(cmd + " "):
            n = 0
            while i + 1 + n < len(lines) and lines[i + 1 + n].startswith("i "):
                n += 1
            if n == count:
                return i
    raise AssertionError(f"no '{cmd}' point with {count} images in {desc}")


def refused(desc: Path, tmp_path: Path, capsys: Cap, *patterns: str,
            extra: tuple[str, ...] = ()) -> str:
    """Run ``gimbal calibrate`` on ``desc``: exit 1, one error line matching ``patterns``, nothing written."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    capsys.readouterr()
    rc = main(["calibrate", str(desc), "--pixel-um", "5", "-o", str(out / "cam.yaml"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for pattern in patterns:
        assert re.search(pattern, err[0]), (pattern, err[0])
    assert list(out.iterdir()) == []  # no preset, no PNG
    return err[0]


def rewrite_images(desc: Path, convert, suffix: str) -> None:  # type: ignore[no-untyped-def]
    """Every image of ``desc`` through ``convert`` into a ``.npy`` file with ``suffix``; the 'i' lines follow."""
    out = []
    for ln in lines_of(desc):
        if ln.startswith("i "):
            src = image(desc, ln)
            dst = src.with_name(src.stem + suffix + ".npy")
            np.save(dst, convert(read_frame(src)))
            ln = "i images\\" + dst.name
        out.append(ln)
    write_lines(desc, out)


def scale_photons(desc: Path, factor: float) -> None:
    write_lines(desc, [f"b {ln.split()[1]} {float(ln.split()[2]) * factor:.6g}" if ln.startswith("b ") else ln
                       for ln in lines_of(desc)])


# ----------------------------------------------------------------------------- the valid sets
def test_the_valid_sets_calibrate(data: Path, tmp_path: Path, capsys: Cap) -> None:
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", str(data), "--pixel-um", "5", "-q", "-o", str(out)]) == 0
    assert out.is_file() and (tmp_path / "cam_ptc.png").is_file() and (tmp_path / "cam_snr.png").is_file()
    cal = calibrate(read_descriptor(data))
    assert cal.spatial.images == 4  # 4 images: a stack
    assert 0.2 < cal.gain_dn_per_e < 0.35 and 0.5 < cal.quantum_efficiency < 0.7


# ----------------------------------------------------------------------------- pairs and stacks
@pytest.mark.parametrize("cmd", ["b", "d"])
def test_a_pair_listing_one_image_twice(data: Path, tmp_path: Path, capsys: Cap, cmd: str) -> None:
    lines = lines_of(data)
    at = point_at(data, cmd)
    lines[at + 2] = lines[at + 1]
    write_lines(data, lines)
    refused(data, tmp_path, capsys, "listed twice", f"line {at + 3}", f"point of line {at + 1}",
            re.escape(str(data)))


@pytest.mark.parametrize("cmd", ["b", "d"])
def test_a_pair_of_two_identical_files(data: Path, tmp_path: Path, capsys: Cap, cmd: str) -> None:
    lines = lines_of(data)
    at = point_at(data, cmd)
    first, second = image(data, lines[at + 1]), image(data, lines[at + 2])
    shutil.copyfile(first, second)
    refused(data, tmp_path, capsys, "are identical", f"line {at + 1}", first.name, second.name,
            "list different images")


def test_a_stack_with_two_identical_images(data: Path, tmp_path: Path, capsys: Cap) -> None:
    lines = lines_of(data)
    at = point_at(data, "b", count=4)
    shutil.copyfile(image(data, lines[at + 2]), image(data, lines[at + 3]))
    refused(data, tmp_path, capsys, "are identical", f"line {at + 1}")


def test_saturated_uniform_pairs_may_repeat(tmp_path: Path) -> None:
    """A camera that clips at a digital saturation level gives identical, uniform pairs beyond it: not refused."""
    desc = make_set("gimbal", tmp_path / "data")
    lines = lines_of(desc)
    last = max(i for i, ln in enumerate(lines) if ln.startswith("b ") and not lines[i + 3].startswith("i "))
    for ln in lines[last + 1:last + 3]:
        np.save(image(desc, ln), np.full((16, 16), 3500, dtype=np.uint16))
    calibrate(read_descriptor(desc))


def test_a_third_image_line_after_a_pair(data: Path, tmp_path: Path, capsys: Cap) -> None:
    lines = lines_of(data)
    at = point_at(data, "b")
    stray = lines[point_at(data, "b", count=4) + 1]
    write_lines(data, lines[:at + 3] + [stray] + lines[at + 3:])
    refused(data, tmp_path, capsys, f"line {at + 1}: the point has 3 images", "exactly 2", "4 or more",
            "stray 'i' line")


# ----------------------------------------------------------------------------- image type
@pytest.mark.parametrize("source", SOURCES)
def test_8bit_images_under_a_12bit_n_line(source: str, tmp_path: Path, capsys: Cap) -> None:
    desc = make_set(source, tmp_path / "data", bits=8)
    if source == "gimbal":
        assert read_frame(image(desc, lines_of(desc)[3])).dtype == np.uint8
    write_lines(desc, [re.sub(r"^n 8 ", "n 12 ", ln) for ln in lines_of(desc)])
    refused(desc, tmp_path, capsys, "8-bit image", "says 12 bits", re.escape(str(desc)) + r": line \d+",
            "16-bit file")


def test_float_images_normalised_to_one(data: Path, tmp_path: Path, capsys: Cap) -> None:
    rewrite_images(data, lambda a: (a / 4095.0).astype(np.float32), "_norm")
    refused(data, tmp_path, capsys, "floating-point image", "not whole DN", "normalised", "raw integer values",
            r"0 \.\. 4095")


def test_float_images_of_whole_dn_are_accepted(data: Path) -> None:
    reference = calibrate(read_descriptor(data))
    rewrite_images(data, lambda a: a.astype(np.float64), "_f64")
    cal = calibrate(read_descriptor(data))
    assert cal.gain_dn_per_e == pytest.approx(reference.gain_dn_per_e)


# ----------------------------------------------------------------------------- the spatial stack
def test_a_stack_beyond_the_full_well(tmp_path: Path, capsys: Cap) -> None:
    desc = make_set("gimbal", tmp_path / "data", stack_at=1.1)
    at = point_at(desc, "b", count=4)
    refused(desc, tmp_path, capsys, f"line {at + 1}: the spatial stack", r"\d+% of the saturation signal",
            "about 50 % of saturation")


def test_a_stack_clipped_at_the_top_code(tmp_path: Path, capsys: Cap) -> None:
    """K = 0.6 DN/e- reaches 4095 DN at about 6700 e-, before the 11000 e- full well: the ADC clips."""
    desc = make_set("gimbal", tmp_path / "data", gain=0.6, stack_at=0.7, steps=30)
    refused(desc, tmp_path, capsys, "is clipped", r"\d+(\.\d)?% of its pixels at the ADC's top code 4095 DN")


@pytest.mark.parametrize(("stack_at", "says"), [(0.8, "beyond the linear range"), (0.15, "at about 50 %")])
def test_a_stack_away_from_half_saturation_is_a_warning(tmp_path: Path, capsys: Cap, stack_at: float,
                                                        says: str) -> None:
    desc = make_set("gimbal", tmp_path / "data", stack_at=stack_at)
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", str(desc), "--pixel-um", "5", "-q", "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "the spatial stack" in err[0] and says in err[0]
    assert "# warning: the spatial stack" in out.read_text()


def test_emva1288s_own_stack_position_is_a_warning(base: Path) -> None:
    """emva1288's generator takes its stack in the middle of the exposure range, here above 70 % of saturation:
    measured (its saturation is a hard clip, so the PRNU holds), with a warning."""
    cal = calibrate(read_descriptor(base / "EMVA1288descriptor.txt"))
    if base.parent.name.startswith("emva"):
        assert any("the spatial stack" in w and "beyond the linear range" in w for w in cal.warnings)
    else:
        assert cal.warnings == ()


# ----------------------------------------------------------------------------- photon counts
def test_photon_counts_1000x_too_large(data: Path, tmp_path: Path, capsys: Cap) -> None:
    scale_photons(data, 1000.0)
    refused(data, tmp_path, capsys, r"quantum efficiency 0\.000\d+ is implausibly low", "times too large",
            "mean photons per pixel during each exposure")


def test_photon_counts_too_small(data: Path, tmp_path: Path, capsys: Cap) -> None:
    scale_photons(data, 0.5)
    refused(data, tmp_path, capsys, r"quantum efficiency 1\.\d+ is above 1", "too small")


def test_photon_counts_20x_too_large_is_a_warning(data: Path) -> None:
    scale_photons(data, 20.0)
    cal = calibrate(read_descriptor(data))
    assert any(re.search(r"quantum efficiency 0\.0[23]\d* is low", w) for w in cal.warnings), cal.warnings


# ----------------------------------------------------------------------------- images outside the folder
@pytest.mark.parametrize("how", ["..\\..\\outside.npy", "../outside.npy", "images/../../outside.npy", "absolute",
                                 "C:\\data\\outside.npy"])
def test_images_outside_the_descriptor_folder_are_refused(data: Path, tmp_path: Path, capsys: Cap, how: str) -> None:
    lines = lines_of(data)
    at = point_at(data, "b")
    outside = tmp_path / "outside.npy"  # a valid image next to the data set's folder
    np.save(outside, read_frame(image(data, lines[at + 1])))
    lines[at + 1] = f"i {outside if how == 'absolute' else how}"
    write_lines(data, lines)
    word = "is absolute" if how == "absolute" or how.startswith("C:") else "leads outside the descriptor's folder"
    refused(data, tmp_path, capsys, f"line {at + 2}: image path", word, "--allow-outside")


def test_allow_outside_reads_them(data: Path, tmp_path: Path, capsys: Cap) -> None:
    lines = lines_of(data)
    at = point_at(data, "b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for k in (1, 2):
        src = image(data, lines[at + k])
        shutil.move(src, elsewhere / src.name)
        lines[at + k] = f"i ..\\elsewhere\\{src.name}"
    write_lines(data, lines)
    refused(data, tmp_path, capsys, "leads outside")
    out = tmp_path / "cam.yaml"
    assert main(["calibrate", str(data), "--pixel-um", "5", "-q", "--allow-outside", "-o", str(out)]) == 0
    assert out.is_file()


@pytest.mark.skipif(os.name == "nt", reason="symlinks")
def test_a_symlink_out_of_the_folder_is_refused(data: Path, tmp_path: Path, capsys: Cap) -> None:
    lines = lines_of(data)
    at = point_at(data, "b")
    src = image(data, lines[at + 1])
    moved = tmp_path / src.name
    shutil.move(src, moved)
    src.symlink_to(moved)
    refused(data, tmp_path, capsys, "leads outside")


# ----------------------------------------------------------------------------- descriptor syntax
def test_the_docs_descriptor_example_parses_as_shown(tmp_path: Path) -> None:
    text = (REPO / "docs/calibration.md").read_text()
    block = text[text.index("**1. The data set.**"):].split("```")[1]
    desc = tmp_path / "EMVA1288descriptor.txt"
    desc.write_text(block.lstrip("\n"))
    d = read_descriptor(desc)
    assert (d.version, d.bits, d.width, d.height) == ("4.0", 12, 2048, 1536)
    assert [(p.line, p.dark, len(p.images), p.texp_s, p.photons) for p in d.points] == [
        (3, False, 2, pytest.approx(1e-3), 545.5), (6, True, 2, pytest.approx(1e-3), 0.0),
        (10, False, 4, pytest.approx(15e-3), 7719.27)]
    assert d.points[0].images == (tmp_path / "images" / "image0.png", tmp_path / "images" / "image1.png")
    assert d.points[2].images[-1] == tmp_path / "images" / "image163.png"


def test_comments_start_at_a_hash_after_whitespace(tmp_path: Path) -> None:
    desc = tmp_path / "d.txt"
    desc.write_text("# a data set\nv 4.0 # release\nn 12 4 4\t# bits\nd 1000  # dark\ni img#1.npy # first\n"
                    "i images\\b c.npy\n")
    d = read_descriptor(desc)
    assert d.bits == 12 and d.points[0].images == (tmp_path / "img#1.npy", tmp_path / "images" / "b c.npy")


# ----------------------------------------------------------------------------- camera preset values
VALID = {"name": "cam", "gain_dn_per_e": 0.3, "read_noise_e": 6.0, "dark_current_e_per_s": 400.0,
         "full_well_e": 11000.0, "prnu": 0.05, "quantum_efficiency": 0.62, "bits": 12, "pixel_area_m2": 2.5e-11,
         "wavelength_m": 5.25e-07}


@pytest.mark.parametrize(("key", "value", "says"), [
    ("gain_dn_per_e", ".inf", "'gain_dn_per_e' must be a finite number"),
    ("wavelength_m", ".inf", "'wavelength_m' must be a finite number"),
    ("read_noise_e", ".nan", "'read_noise_e' must be a finite number"),
    ("full_well_e", "-.inf", "'full_well_e' must be a finite number"),
    ("pixel_area_m2", "1.0e+300", r"pixel_area_m2 must be in \[1e-14, 1e-06\] m\^2"),
    ("wavelength_m", "5.25", r"wavelength_m must be in \[1e-07, 2e-05\] m"),
    ("gain_dn_per_e", "5000.0", r"gain_dn_per_e must be at most 2\^bits - 1 = 4095"),
    ("pixel_area_m2", "1e-11", r"'pixel_area_m2' must be a number, got '1e-11' \(YAML reads .* write it as 1\.0e-11"),
])
def test_preset_values_are_checked_like_params(tmp_path: Path, key: str, value: str, says: str) -> None:
    from gimbal.config import parse_config
    from gimbal.errors import ParamError

    path = tmp_path / "cam.yaml"
    text = yaml.safe_dump(VALID, sort_keys=False)
    path.write_text(re.sub(rf"^{key}: .*$", f"{key}: {value}", text, flags=re.M))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sensor"]["camera"] = str(path)
    with pytest.raises(ParamError, match=says) as info:
        parse_config(params)
    msg = str(info.value)
    assert msg.startswith(f"sensor.camera: {path}: ") and "\n" not in msg


def test_a_refusal_is_a_data_error_naming_the_descriptor(data: Path) -> None:
    """The same refusals through the API: DataError (what the CLI prints as its one line)."""
    scale_photons(data, 1000.0)
    with pytest.raises(DataError, match=re.escape(str(data))):
        calibrate(read_descriptor(data))


# ----------------------------------------------------------------------------- the written files: all or none
def test_output_onto_a_directory_writes_nothing(data: Path, tmp_path: Path, capsys: Cap) -> None:
    from gimbal.calibration import calibrate_files
    from gimbal.errors import ParamError

    out = tmp_path / "out"
    (out / "cam.yaml").mkdir(parents=True)
    with pytest.raises(ParamError, match="is a directory"):
        calibrate_files(data, out / "cam.yaml", pixel_um=5.0)
    assert sorted(p.name for p in out.iterdir()) == ["cam.yaml"] and not any((out / "cam.yaml").iterdir())


def test_a_failure_while_writing_leaves_no_file(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gimbal.calibration.plot as plot
    from gimbal.calibration import calibrate_files

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plot, "plot_snr", broken)  # the second of the three files fails
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError):
        calibrate_files(data, out / "cam.yaml", pixel_um=5.0)
    assert list(out.iterdir()) == []  # not the photon transfer figure either, and no temp file
