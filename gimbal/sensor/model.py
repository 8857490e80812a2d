"""The differentiable camera: forward model F of the paper (Section 4, eqs. 4-14).

``Sensor`` turns a dense irradiance clip ``(B, T_f, C, H, W)`` in photo-electrons per second
per pixel (quantum efficiency already applied; see :meth:`CameraSpec.electron_rate`) into a
raw burst ``(B, n, C, H, W)`` of digital numbers scaled to [0, 1] (DN / (2^m - 1)):

1. exposure schedule from logits (eqs. 12-13)       -> ``Exposure``
2. trapezoid integration over each exposure (eq. 5)  -> ``integrate_exposures``
3. Poisson shot + dark noise, read noise (eqs. 6-8)  -> ``shot_noise``, ``read_noise``
4. soft saturation, dark subtraction, m-bit ADC (eqs. 9-11)

In ``train()`` mode the Poisson step is the differentiable GenGS/Gaussian hybrid, with the
temperature annealed by the ``step`` argument; in ``eval()`` mode it is exact
``torch.poisson``. All randomness comes from the module's own seeded generator
(``seed`` / :meth:`Sensor.set_seed`), one per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from gimbal.errors import ParamError, ShapeError
from gimbal.params import get
from gimbal.sensor.camera import CameraSpec, get_camera
from gimbal.sensor.exposure import Exposure, check_schedule
from gimbal.sensor.integrate import check_irradiance, integrate_exposures
from gimbal.sensor.noise import check_gengs_params, gengs_temperature, read_noise, shot_noise
from gimbal.sensor.response import normalize_exposure, quantize, soft_saturation

# Embedded-default (tiny, CPU) values of the sensor/exposure params; paper values in comments.
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "sensor": {
        "camera": "jetcam19m",
        "overrides": {},  # CameraSpec fields to replace, e.g. {budget_s: 0.004}
        "gengs_max_electrons": 100.0,  # paper: 1000
        "n_bins": 170,  # paper: 1200 (must be >= max + 6 sqrt(max) + 10)
        "tau_decay": 1.0e-5,  # paper: tau = max(exp(-1e-5 t), 0.1)
        "tau_min": 0.1,
        "chunk_mb": 64.0,
        "gengs_hard": False,  # paper: soft GenGS; true = straight-through (exact Poisson forward)
    },
    "exposure": {
        "n": 3,  # frames per burst (paper: 3)
        "idle_slot": False,  # True: n+1 softmax slots, the last one idle
        "init_us": None,  # null: equal exposures filling the budget; or a list of n durations in us
    },
}


class SensorOutput(NamedTuple):
    """Result of :meth:`Sensor.forward`."""

    burst: torch.Tensor  # (B, n, C, H, W) DN / (2^m - 1), in [0, 1]
    durations_s: torch.Tensor  # (n,) exposure durations dt_i in seconds
    starts_s: torch.Tensor  # (n,) exposure start times t_i in seconds


class Sensor(nn.Module):
    """Differentiable camera forward model with a learnable exposure schedule.

    Args:
        camera: a :class:`CameraSpec` or a preset name for :func:`get_camera`.
        n: frames per burst.
        slots: ``n`` (budget fully used) or ``n + 1`` (idle slot); default ``n``.
        learn_exposure: learn the exposure logits (else frozen at the initial schedule).
        init_exposures_us: initial durations (n values, microseconds); default uniform.
        gengs_max_electrons: mean electron count below which training uses GenGS (paper 1000).
        n_bins: GenGS support size (paper 1200); must cover ``gengs_max_electrons`` (see ``min_bins``).
        seed: seed of the module's random generator(s).
        tau_decay, tau_min: GenGS temperature tau = max(exp(-tau_decay * step), tau_min).
        chunk_mb: memory bound of one GenGS pixel chunk, in MiB.
        gengs_hard: straight-through GenGS (exact Poisson values forward, relaxed gradient);
            default False = the paper's soft relaxation.
    """

    def __init__(
        self,
        camera: CameraSpec | str = "jetcam19m",
        n: int = 3,
        slots: int | None = None,
        learn_exposure: bool = True,
        init_exposures_us: Sequence[float] | None = None,
        gengs_max_electrons: float = 1000.0,
        n_bins: int = 1200,
        seed: int = 0,
        tau_decay: float = 1e-5,
        tau_min: float = 0.1,
        chunk_mb: float = 64.0,
        gengs_hard: bool = False,
    ) -> None:
        super().__init__()
        self.camera = get_camera(camera) if isinstance(camera, str) else camera
        if not isinstance(self.camera, CameraSpec):
            raise ParamError(f"camera must be a CameraSpec or a preset name, got {type(camera).__name__}")
        check_gengs_params(gengs_max_electrons, n_bins)
        if tau_decay < 0 or not 0 < tau_min <= 1:
            raise ParamError(f"sensor.tau_decay must be >= 0 and sensor.tau_min in (0, 1], got {tau_decay}, {tau_min}")
        if chunk_mb <= 0:
            raise ParamError(f"sensor.chunk_mb must be > 0, got {chunk_mb}")
        cam = self.camera
        self.exposure = Exposure(
            n, cam.budget_s, cam.min_exposure_s, cam.readout_s, slots=slots, learn=learn_exposure,
            init_us=init_exposures_us,
        )
        self.n = n
        self.gengs_max_electrons = float(gengs_max_electrons)
        self.n_bins = int(n_bins)
        self.tau_decay = float(tau_decay)
        self.tau_min = float(tau_min)
        self.chunk_bytes = int(chunk_mb * 2**20)
        self.gengs_hard = bool(gengs_hard)
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_params(cls, params: dict[str, Any], learn_exposure: bool | None = None) -> Sensor:
        """Build from the ``sensor`` and ``exposure`` param groups (plus ``seed`` and ``model.learn_exposure``).

        Missing keys take :data:`DEFAULT_PARAMS`; ``learn_exposure`` overrides ``model.learn_exposure``.
        """
        d_s, d_e = DEFAULT_PARAMS["sensor"], DEFAULT_PARAMS["exposure"]
        overrides = get(params, "sensor.overrides", (dict, type(None)), d_s["overrides"]) or {}
        camera = get_camera(get(params, "sensor.camera", str, d_s["camera"]), **overrides)
        n = get(params, "exposure.n", int, d_e["n"])
        idle = get(params, "exposure.idle_slot", bool, d_e["idle_slot"])
        init_us = get(params, "exposure.init_us", (list, type(None)), d_e["init_us"])
        if init_us is not None and not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in init_us):
            raise ParamError(f"params: 'exposure.init_us' must be a list of numbers (microseconds), got {init_us!r}")
        if learn_exposure is None:
            learn_exposure = get(params, "model.learn_exposure", bool, True)
        return cls(
            camera,
            n=n,
            slots=n + 1 if idle else n,
            learn_exposure=learn_exposure,
            init_exposures_us=init_us,
            gengs_max_electrons=float(
                get(params, "sensor.gengs_max_electrons", (int, float), d_s["gengs_max_electrons"])
            ),
            n_bins=get(params, "sensor.n_bins", int, d_s["n_bins"]),
            seed=get(params, "seed", int, 0),
            tau_decay=float(get(params, "sensor.tau_decay", (int, float), d_s["tau_decay"])),
            tau_min=float(get(params, "sensor.tau_min", (int, float), d_s["tau_min"])),
            chunk_mb=float(get(params, "sensor.chunk_mb", (int, float), d_s["chunk_mb"])),
            gengs_hard=get(params, "sensor.gengs_hard", bool, d_s["gengs_hard"]),
        )

    # ------------------------------------------------------------------ randomness
    def set_seed(self, seed: int) -> None:
        """Reseed: the next forward passes repeat exactly for equal inputs."""
        self.seed = int(seed)
        self._generators.clear()

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            self._generators[key] = g
        return self._generators[key]

    # ------------------------------------------------------------------ model
    def temperature(self, step: int) -> float:
        """GenGS temperature at training step ``step``."""
        return gengs_temperature(step, self.tau_decay, self.tau_min)

    def capture(self, mean_electrons: torch.Tensor, durations_s: torch.Tensor, step: int = 0) -> torch.Tensor:
        """Noise, response and ADC (eqs. 6-11) on mean photo-electrons.

        Args:
            mean_electrons: ``(B, n, C, H, W)`` mean photo-electrons per exposure.
            durations_s: ``(n,)`` exposure durations in seconds (for the dark signal I0 * dt).
            step: training step (GenGS temperature).
        Returns:
            ``(B, n, C, H, W)`` DN / (2^m - 1) in [0, 1].
        """
        cam = self.camera
        if mean_electrons.dim() != 5 or mean_electrons.shape[1] != durations_s.numel():
            raise ShapeError(
                f"mean_electrons must be (B, n, C, H, W) with n = {durations_s.numel()} durations, "
                f"got {tuple(mean_electrons.shape)}"
            )
        gen = self._generator(mean_electrons.device)
        dt = durations_s.to(device=mean_electrons.device, dtype=mean_electrons.dtype).view(1, -1, 1, 1, 1)
        dark = cam.dark_current_e_per_s * dt  # mean dark electrons (eq. 6)
        electrons = shot_noise(
            mean_electrons + dark,
            training=self.training,
            tau=self.temperature(step),
            max_electrons=self.gengs_max_electrons,
            n_bins=self.n_bins,
            generator=gen,
            chunk_bytes=self.chunk_bytes,
            hard=self.gengs_hard,
        )
        electrons = read_noise(electrons, cam.read_noise_e, gen)  # eq. (7)
        electrons = soft_saturation(electrons, cam.tau1, cam.full_well_e)  # eq. (9)
        if cam.dark_subtraction:
            electrons = electrons - dark  # eq. (10)
        dn = quantize(electrons, cam.gain_dn_per_e, cam.bits)  # eq. (11)
        return dn / cam.max_dn

    def forward(self, irradiance: torch.Tensor, step: int = 0) -> SensorOutput:
        """Raw burst from a dense clip.

        Args:
            irradiance: ``(B, T_f, C, H, W)`` photo-electrons / s / pixel; the T_f samples span
                the budget [0, T] uniformly (sample j at j T / (T_f - 1)).
            step: training step, sets the GenGS temperature (ignored in eval mode).
        Returns:
            :class:`SensorOutput` with ``burst (B, n, C, H, W)`` in [0, 1] (same dtype as the
            input), and the schedule ``durations_s``, ``starts_s`` ``(n,)`` in seconds.
        """
        check_irradiance(irradiance)
        dt64 = self.exposure.durations(torch.float64)
        t64 = self.exposure.starts(torch.float64)
        check_schedule(dt64.detach(), t64.detach(), self.camera.budget_s)
        mean = integrate_exposures(irradiance, t64, dt64, self.camera.budget_s)  # eq. (5)
        burst = self.capture(mean, dt64, step)
        return SensorOutput(burst, dt64.to(irradiance.dtype), t64.to(irradiance.dtype))

    def full_exposure(self, irradiance: torch.Tensor, step: int = 0) -> torch.Tensor:
        """One exposure of length T - dt_ro from t = 0 through the same noise and response.

        ``irradiance (B, T_f, C, H, W)`` -> ``(B, C, H, W)`` in [0, 1] (not exposure-normalized:
        multiply by ``T / (T - dt_ro)`` for eq. 14 scaling). Used by the single-image baselines.
        """
        check_irradiance(irradiance)
        cam = self.camera
        dt = torch.tensor([cam.budget_s - cam.readout_s], dtype=torch.float64, device=irradiance.device)
        t0 = torch.zeros(1, dtype=torch.float64, device=irradiance.device)
        mean = integrate_exposures(irradiance, t0, dt, cam.budget_s)
        return self.capture(mean, dt, step)[:, 0]

    def normalize(self, burst: torch.Tensor, durations_s: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. (14): ``Y_i * T / dt_i`` for ``burst (B, n, C, H, W)``.

        ``durations_s (n,)`` defaults to the current schedule (differentiable in the logits).
        """
        if durations_s is None:
            durations_s = self.exposure.durations(torch.float64)
        if burst.dim() != 5 or burst.shape[1] != durations_s.numel():
            raise ShapeError(
                f"burst must be (B, n, C, H, W) with n = {durations_s.numel()} exposures, got {tuple(burst.shape)}"
            )
        return normalize_exposure(burst, durations_s, self.camera.budget_s)

    def schedule_us(self) -> dict[str, Any]:
        """The current exposure schedule in microseconds (see :meth:`Exposure.to_us`)."""
        return self.exposure.to_us()

    def extra_repr(self) -> str:
        return (
            f"camera={self.camera.name}, gengs_max_electrons={self.gengs_max_electrons:g}, n_bins={self.n_bins}, "
            f"gengs_hard={self.gengs_hard}, seed={self.seed}"
        )
