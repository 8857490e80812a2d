"""The differentiable camera of the paper (Section 4, supplement A; eqs. (4)-(14), see docs/equations.md).

Input: a dense irradiance clip ``(B, T_f, C, H, W)`` in photo-electrons per second per pixel
spanning the exposure budget [0, T]. Output: a raw burst ``(B, n, C, H, W)`` float in [0, 1]
(= DN / (2^m - 1)), differentiable w.r.t. the exposure logits.
"""

from gimbal.sensor.camera import EXPERIMENTS, CameraSpec, Experiment, camera_names, get_camera, get_experiment
from gimbal.sensor.exposure import Exposure, ExposureConfig, logits_from_schedule, uniform_schedule_us
from gimbal.sensor.integrate import exposure_weights, integrate_exposures
from gimbal.sensor.model import Sensor, SensorConfig, SensorOutput
from gimbal.sensor.noise import gaussian_poisson, gengs_poisson, gengs_temperature, min_bins, read_noise, shot_noise
from gimbal.sensor.response import normalize_exposure, prnu_pattern, quantize, soft_saturation, ste_round

__all__ = [
    "EXPERIMENTS",
    "CameraSpec",
    "Experiment",
    "Exposure",
    "ExposureConfig",
    "Sensor",
    "SensorConfig",
    "SensorOutput",
    "camera_names",
    "exposure_weights",
    "gaussian_poisson",
    "gengs_poisson",
    "gengs_temperature",
    "get_camera",
    "get_experiment",
    "integrate_exposures",
    "logits_from_schedule",
    "min_bins",
    "normalize_exposure",
    "prnu_pattern",
    "quantize",
    "read_noise",
    "shot_noise",
    "soft_saturation",
    "ste_round",
    "uniform_schedule_us",
]
