"""The differentiable camera: forward model F of the paper (Section 4, eqs. (4)-(14)).

``Sensor`` turns a dense irradiance clip ``(B, T_f, C, H, W)`` in photo-electrons per second
per pixel (quantum efficiency already applied; see :meth:`CameraSpec.electron_rate`) into a
raw burst ``(B, n, C, H, W)`` of digital numbers scaled to [0, 1] (DN / (2^m - 1)):

1. exposure schedule from logits (eqs. (12)-(13))    -> ``Exposure``
2. trapezoid integration over each exposure (eq. (5)) -> ``integrate_exposures``
3. dark signal (eq. (6)), Poisson shot noise (eq. (7)), read noise (eq. (8)) -> ``shot_noise``, ``read_noise``
4. dark subtraction, response r (eq. (9)), gain, PRNU, m-bit ADC (the quantizer Q, eq. (10)):
   the raw frame ``Y = Q(r(e - e0))`` of eq. (11) -> :meth:`Sensor.capture`

In ``train()`` mode the Poisson step is the differentiable GenGS/Gaussian hybrid, with the
temperature annealed by the ``step`` argument; in ``eval()`` mode it is exact
``torch.poisson``. All randomness comes from the module's own seeded generator
(``seed`` / :meth:`Sensor.set_seed`), one per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from gimbal.errors import ParamError, ShapeError
from gimbal.sensor.camera import CameraSpec, camera_from_file, get_camera, get_experiment
from gimbal.sensor.exposure import Exposure, ExposureConfig, centred_schedule_us, check_schedule
from gimbal.sensor.integrate import check_irradiance, integrate_exposures
from gimbal.sensor.noise import check_gengs_params, gengs_temperature, read_noise, shot_noise
from gimbal.sensor.response import normalize_exposure, prnu_pattern, quantize, soft_saturation


@dataclass(frozen=True)
class SensorConfig:
    """Params group ``sensor`` (Section 4); the embedded default, paper values in comments.

    Attributes:
        experiment: supplement Table 1 configuration (:data:`~gimbal.sensor.camera.EXPERIMENTS`):
            ``synthetic`` | ``indoor`` | ``outdoor`` (a camera preset plus timing plus idle slot).
        camera: path of a camera preset file (``gimbal calibrate`` writes one from EMVA 1288 data), relative
            to the working directory (the repository root for DVC stages); it replaces the experiment's
            camera, whose timing and idle slot stay. ``None``: the experiment's own camera.
        overrides: :class:`CameraSpec` fields to replace, e.g. ``{budget_s: 0.004, readout_s: 5.0e-5}``.
        gengs_max_electrons: GenGS below this mean, Gaussian above (paper: 1000).
        n_bins: GenGS Poisson bins (paper: 1200; >= max + 6 sqrt(max) + 10).
        tau_decay: GenGS temperature tau = max(exp(-tau_decay t), tau_min) (paper: 1e-5; short runs anneal faster).
        tau_min: lowest GenGS temperature (paper: 0.1).
        gengs_hard: exact Poisson forward with the GenGS gradient (GenGS under-disperses at high tau).
        chunk_mb: GenGS memory per chunk, MiB.
    """

    experiment: str = "synthetic"
    camera: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    gengs_max_electrons: float = 100.0
    n_bins: int = 170
    tau_decay: float = 1.0e-2
    tau_min: float = 0.1
    gengs_hard: bool = False
    chunk_mb: float = 64.0

    def __post_init__(self) -> None:
        self.spec()  # an unknown experiment, a bad camera file or override field fails here, naming it

    def spec(self) -> CameraSpec:
        """The run's camera: the experiment's (or the preset file ``camera``) with the experiment's timing,
        then the overrides."""
        if self.camera is None:
            return get_experiment(self.experiment).spec(**self.overrides)
        return camera_from_file(self.camera, self.experiment, "sensor.camera", **self.overrides)


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
        idle_first: with an idle slot, the idle time comes before the first exposure (:class:`Exposure`).
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
        idle_first: bool = False,
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
            init_us=init_exposures_us, idle_first=idle_first,
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
    def from_config(
        cls, sensor: SensorConfig, exposure: ExposureConfig, learn_exposure: bool = True, seed: int = 0
    ) -> Sensor:
        """Build from the ``sensor`` and ``exposure`` param groups.

        ``exposure.idle_slot: null`` takes the experiment's idle slot (supplement Table 1) for learned exposures;
        fixed ones fill the whole budget (:meth:`ExposureConfig.slots`). ``exposure.centre_reference``: equal fixed
        exposures with the reference centred on ``T / 2``, the idle time first (:func:`centred_schedule_us`).
        """
        spec = sensor.spec()
        init_us = exposure.init_us
        if exposure.centre_reference:
            if learn_exposure:
                raise ParamError("params: 'exposure.centre_reference: true' is a fixed schedule; set "
                                 "'model.learn_exposure: false' for that variant")
            init_us = tuple(centred_schedule_us(exposure.n, spec.budget_s, spec.min_exposure_s, spec.readout_s)[0])
        return cls(
            spec,
            n=exposure.n,
            slots=exposure.slots(learn_exposure, get_experiment(sensor.experiment).idle_slot),
            learn_exposure=learn_exposure,
            init_exposures_us=init_us,
            idle_first=exposure.centre_reference,
            gengs_max_electrons=sensor.gengs_max_electrons,
            n_bins=sensor.n_bins,
            seed=seed,
            tau_decay=sensor.tau_decay,
            tau_min=sensor.tau_min,
            chunk_mb=sensor.chunk_mb,
            gengs_hard=sensor.gengs_hard,
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

    def rng_state(self) -> dict[str, Any]:
        """The noise generators' states (for checkpoints): ``{"seed", "states": {device: ByteTensor}}``."""
        return {"seed": self.seed, "states": {k: g.get_state() for k, g in self._generators.items()}}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`rng_state`: the following captures continue the saved noise stream."""
        self.set_seed(int(state["seed"]))
        for key, s in state["states"].items():
            self._generator(torch.device(key)).set_state(s.cpu() if isinstance(s, torch.Tensor) else s)

    # ------------------------------------------------------------------ model
    def temperature(self, step: int) -> float:
        """GenGS temperature at training step ``step``."""
        return gengs_temperature(step, self.tau_decay, self.tau_min)

    def capture(self, mean_electrons: torch.Tensor, durations_s: torch.Tensor, step: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise, response and ADC (eqs. (6)-(11)) on mean photo-electrons: the raw frame of eq. (11),
        ``Y = Q(r(e - e0))``, in the authors' order: + dark mean ``e0 = I0 dt`` (eq. (6)) -> Poisson (eq. (7))
        -> + read noise (eq. (8)) -> - dark mean -> response r (eq. (9)) -> gain K -> PRNU -> round -> clip
        (the quantizer Q, eq. (10)).

        Args:
            mean_electrons: ``(B, n, C, H, W)`` mean photo-electrons per exposure.
            durations_s: ``(n,)`` exposure durations in seconds (for the dark signal I0 * dt).
            step: training step (GenGS temperature).
            generator: noise generator (default: the module's own stream, see :meth:`set_seed`).
        Returns:
            ``(B, n, C, H, W)`` DN / (2^m - 1), in [0, 1].
        """
        cam = self.camera
        if mean_electrons.dim() != 5 or mean_electrons.shape[1] != durations_s.numel():
            raise ShapeError(
                f"mean_electrons must be (B, n, C, H, W) with n = {durations_s.numel()} durations, "
                f"got {tuple(mean_electrons.shape)}"
            )
        gen = generator if generator is not None else self._generator(mean_electrons.device)
        dt = durations_s.to(device=mean_electrons.device, dtype=mean_electrons.dtype).view(1, -1, 1, 1, 1)
        dark = cam.dark_current_e_per_s * dt  # mean dark electrons e0 = I0 dt, eq. (6)
        electrons = shot_noise(
            mean_electrons + dark,
            training=self.training,
            tau=self.temperature(step),
            max_electrons=self.gengs_max_electrons,
            n_bins=self.n_bins,
            generator=gen,
            chunk_bytes=self.chunk_bytes,
            hard=self.gengs_hard,
        )  # eq. (7)
        electrons = read_noise(electrons, cam.read_noise_e, gen)  # eq. (8)
        if cam.dark_subtraction:
            electrons = electrons - dark  # e - e0 before the response: Y = Q(r(e - e0)), eq. (11)
        electrons = soft_saturation(electrons, cam.tau1, cam.full_well_e)  # eq. (9)
        if cam.prnu > 0:
            b, _, c, h, w = electrons.shape
            electrons = electrons * prnu_pattern((b, 1, c, h, w), cam.prnu, gen, electrons.device, electrons.dtype)
        dn = quantize(electrons, cam.gain_dn_per_e, cam.bits)  # eq. (10)
        return dn / cam.max_dn

    def forward(self, irradiance: torch.Tensor, step: int = 0, generator: torch.Generator | None = None
                ) -> SensorOutput:
        """Raw burst from a dense clip.

        Args:
            irradiance: ``(B, T_f, C, H, W)`` photo-electrons / s / pixel; the T_f samples span
                the budget [0, T] uniformly (sample j at j T / (T_f - 1)).
            step: training step, sets the GenGS temperature (ignored in eval mode).
            generator: noise generator (default: the module's own stream).
        Returns:
            :class:`SensorOutput` with ``burst (B, n, C, H, W)`` in [0, 1] (same dtype as the
            input), and the schedule ``durations_s``, ``starts_s`` ``(n,)`` in seconds.
        """
        check_irradiance(irradiance)
        dt64 = self.exposure.durations(torch.float64)
        t64 = self.exposure.starts(torch.float64)
        check_schedule(dt64.detach(), t64.detach(), self.camera.budget_s)
        mean = integrate_exposures(irradiance, t64, dt64, self.camera.budget_s)  # eq. (5)
        burst = self.capture(mean, dt64, step, generator)
        return SensorOutput(burst, dt64.to(irradiance.dtype), t64.to(irradiance.dtype))

    def full_exposure(self, irradiance: torch.Tensor, step: int = 0, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
        """One exposure of the whole budget ``[0, T]`` through the same noise and response.

        ``irradiance (B, T_f, C, H, W)`` -> ``(B, C, H, W)`` in [0, 1] (eqs. (5)-(11) with one exposure); it
        already has the brightness that eq. (14) normalizes bursts to (the authors' released code integrates over
        T as well). Used by the single-image baselines.
        """
        check_irradiance(irradiance)
        cam = self.camera
        dt = torch.tensor([cam.budget_s], dtype=torch.float64, device=irradiance.device)
        t0 = torch.zeros(1, dtype=torch.float64, device=irradiance.device)
        mean = integrate_exposures(irradiance, t0, dt, cam.budget_s)
        return self.capture(mean, dt, step, generator)[:, 0]

    def normalize(self, burst: torch.Tensor, durations_s: torch.Tensor | None = None) -> torch.Tensor:
        """The exposure normalization of eq. (14), ``Y_i * T / dt_i``, with this camera's budget ``T``
        (:func:`~gimbal.sensor.response.normalize_exposure`) for ``burst (B, n, C, H, W)``.

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
