"""The scored image space (gimbal.display): the authors' sRGB target and display curve, the floors' gain.

Expected values are computed by hand from the released constants (transform.py: threshold 0.0031308,
a 0.055, mult 12.92, gamma 2.4, eps 0.001) or checked against an independent implementation (kornia's
IEC 61966-2-1 sRGB curve), never by calling the code under test twice.
"""

from __future__ import annotations

import math

import kornia
import pytest
import torch
from test_train import tiny_params

from gimbal.config import parse_config
from gimbal.display import Display, power_gamma, sensor_ground_truth, srgb_encode
from gimbal.errors import ParamError, ShapeError
from gimbal.metrics import psnr
from gimbal.sensor.camera import get_camera
from gimbal.system import GimbalSystem, build_sensor, full_exposure_image


def test_srgb_curve_known_values() -> None:
    """Values worked out by hand from the released formula ``1.055 (x + 0.001)^(1/2.4) - 0.055`` / ``12.92 x``."""
    x = torch.tensor([0.0, 0.002, 0.25, 0.5, 1.0, 1.7, -0.3], dtype=torch.float64)
    # 0.251^(1/2.4) = exp(ln(0.251) / 2.4) = exp(-0.575959) = 0.562165 -> 1.055 * 0.562165 - 0.055 = 0.538084
    # 0.501^(1/2.4) = exp(-0.287979) = 0.749779 -> 0.736015;  1.001^(1/2.4) = 1.000417 -> 1.000439
    expected = torch.tensor([0.0, 0.02584, 0.538084, 0.736015, 1.000439, 1.000439, 0.0], dtype=torch.float64)
    torch.testing.assert_close(srgb_encode(x), expected, atol=2e-6, rtol=0)


def test_srgb_curve_is_close_to_the_standard_and_jumps_at_the_threshold() -> None:
    """Against kornia's IEC sRGB curve (independent): the released eps shifts values above 0.05 by < 0.003 and the
    curve jumps by about 0.0117 at the threshold (0.0404 -> 0.0521), a documented quirk of the released code."""
    x = torch.linspace(0.05, 1.0, 50, dtype=torch.float64)
    standard = kornia.color.linear_rgb_to_rgb(x.view(1, 1, -1).expand(3, 1, -1)).view(3, -1)[0]
    assert float((srgb_encode(x) - standard).abs().max()) < 3e-3
    below, above = srgb_encode(torch.tensor([0.0031308, 0.0031309], dtype=torch.float64))
    assert float(below) == pytest.approx(0.04045, abs=1e-5) and float(above) == pytest.approx(0.05214, abs=1e-4)


def test_hand_computed_psnr_against_the_srgb_target() -> None:
    """A 2x2 merge of linear value 0.25 scored against an sRGB target of 0.5: display 0.538084, MSE 0.00145,
    PSNR 10 log10(1 / 0.0014505) = 28.385 dB."""
    net_linear = torch.full((1, 1, 2, 2), 0.25)
    target = torch.full((1, 1, 2, 2), 0.5)
    display = Display("srgb", 2.0)
    assert float(psnr(display.encode(net_linear), target)) == pytest.approx(28.385, abs=2e-3)
    # the floors get the gain first: 0.25 DN x 2 = 0.5 linear -> 0.736015
    assert float(display.floor(net_linear).mean()) == pytest.approx(0.736015, abs=2e-6)


def test_floor_gain_maps_a_fully_exposed_white_to_one() -> None:
    """The floors' gain under ``srgb``: a static sRGB white at the mean white level, fully exposed for T, gives
    DN 1 / gain. Worked out from the camera constants (eq. 4: photons = E A t lambda / (h c), x QE, x K)."""
    cam = get_camera("JetCam19M")
    white = 0.019  # W/m^2, the mean of [0.018, 0.02]
    h, c = 6.62607015e-34, 299792458.0
    # JetCam19M (DESIGN.md): pixel 10 um, QE 0.528236, 520 nm
    assert cam.pixel_area_m2 == pytest.approx(1e-10) and cam.wavelength_m == pytest.approx(520e-9)
    electrons = white * 1e-10 * cam.budget_s * 520e-9 / (h * c) * 0.528236
    dn = electrons * cam.gain_dn_per_e / cam.max_dn
    display = Display.for_camera("srgb", cam, (0.018, 0.02))
    assert display.floor_gain == pytest.approx(1.0 / dn, rel=1e-6)
    assert 0.4 < dn < 0.7  # the released light level fills about half the ADC (the gain the network must learn)
    assert Display.for_camera("sensor", cam, (0.018, 0.02)).floor_gain == 1.0


def test_full_exposure_floor_of_a_white_scene_is_white() -> None:
    """End to end through the simulated camera: a static white scene, noise and all, lands at display ~1."""
    params = tiny_params()
    params["augment"]["white_level"] = [0.019, 0.019]
    cfg = parse_config(params)
    sensor = build_sensor(cfg, learn_exposure=False).eval()
    cam = sensor.camera
    rate = float(cam.electron_rate(0.019))
    irr = torch.full((1, 9, 1, 32, 32), rate)
    display = Display.for_camera("srgb", cam, (0.019, 0.019))
    sensor.set_seed(0)
    floor = full_exposure_image(sensor, irr, display)
    assert float(floor.mean()) == pytest.approx(1.0, abs=0.02)


def test_targets_and_errors() -> None:
    cam = get_camera("JetCam19M")
    irr = torch.full((2, 5, 1, 4, 4), 1000.0 / cam.budget_s)  # 1000 e- over the budget
    srgb = torch.rand(2, 1, 4, 4)
    assert torch.equal(Display("srgb").ground_truth(irr, srgb, cam), srgb)  # the sRGB frame itself
    expected = (1000.0 * cam.gain_dn_per_e / cam.max_dn) ** (1 / 2.2)
    torch.testing.assert_close(Display("sensor").ground_truth(irr, None, cam), torch.full((2, 1, 4, 4), expected))
    torch.testing.assert_close(sensor_ground_truth(irr, cam), torch.full((2, 1, 4, 4), expected))
    with pytest.raises(ShapeError, match="needs the scene's sRGB middle frame"):
        Display("srgb").ground_truth(irr, None, cam)
    with pytest.raises(ShapeError, match="does not match"):
        Display("srgb").ground_truth(irr, srgb[:, :, :2], cam)
    with pytest.raises(ParamError, match="eval.target"):
        Display("linear")  # type: ignore[arg-type]
    params = tiny_params()
    params["eval"]["target"] = "gamma"
    with pytest.raises(ParamError, match="eval.target"):
        parse_config(params)


def test_system_uses_the_configured_target() -> None:
    """``eval.target`` picks the network's display curve, the floors' gain and the loss target."""
    torch.manual_seed(0)
    params = tiny_params()
    irr = 2e5 * (0.2 + torch.rand(2, 17, 1, 16, 16))
    srgb = torch.rand(2, 1, 16, 16)
    system = GimbalSystem.from_params(params)
    assert system.display.target == "srgb" and system.display.floor_gain > 1.5
    out = system(irr, srgb=srgb)
    assert torch.equal(out.target, srgb)
    torch.testing.assert_close(out.image, srgb_encode(out.net.linear))
    params["eval"]["target"] = "sensor"
    system = GimbalSystem.from_params(params)
    out = system(irr)
    assert system.display.floor_gain == 1.0
    torch.testing.assert_close(out.image, power_gamma(out.net.linear))
    assert math.isfinite(float(out.loss))
