"""EMVA 1288 release 4.0 (linear) estimates from a data set: the photon transfer method.

The linear camera model of the standard, per pixel and exposure (units: photons p, electrons e-, DN)::

    mu_y - mu_y.dark       = K eta mu_p                                  (mean, eq. "responsivity" R = K eta)
    sigma2_y - sigma2_y.dark = K (mu_y - mu_y.dark)                       (photon transfer: shot noise)
    sigma2_y.dark          = K^2 (sigma_d^2 + mu_I t_exp) + sigma2_q,  sigma2_q = 1/12 DN^2

What :func:`calibrate` computes, point by point of the descriptor (:mod:`gimbal.calibration.descriptor`):

* **Temporal statistics of a pair** A, B: ``mu_y = (<A> + <B>) / 2`` and
  ``sigma2_y = < ((A - B) - (<A> - <B>))^2 > / 2`` (the difference removes the fixed pattern).
* **Saturation**: the bright point of maximum temporal variance ``sigma2_y`` (points sorted by photons);
  ``mu_p.sat`` its photons and the saturation capacity ``mu_e.sat = eta mu_p.sat``.
* **System gain K** (DN/e-): least squares through the origin of ``sigma2_y - sigma2_y.dark`` against
  ``mu_y - mu_y.dark`` over the standard's linear range, 0-70 % of the saturation signal (at least
  :data:`MIN_FIT_POINTS` points), each bright point minus the dark pair of its own exposure time.
* **Quantum efficiency** ``eta = R / K``: R the slope (through the origin) of ``mu_y - mu_y.dark`` against
  ``mu_p`` over the same range, i.e. the slope of mean electrons against photons.
* **Temporal dark noise** ``sigma_d = sqrt(sigma2_y.dark - sigma2_q) / K`` (e-). With three or more dark
  exposure times ``sigma2_y.dark`` is the intercept at ``t_exp = 0`` of a line fitted to the dark variances
  (so ``sigma_d`` is the read noise without the dark current's shot noise, what the sensor model adds as
  ``read_noise_e``); otherwise their mean. Below 0.24 DN^2 the dark noise is dominated by quantization:
  as the standard says, 0.24 DN^2 is used and the result is an upper limit.
* **Dark current** ``mu_I`` (e-/s): slope of the dark mean against exposure time, over K (needs three or
  more dark exposure times; else not measured and written as 0).
* **Non-uniformities** from a spatial stack of L images (or, without one, from a pair, L = 2): the averaged
  image's spatial variance less the temporal part, ``s2_y = var(<y>) - sigma2_y.stack / L``;
  ``DSNU = sqrt(s2_y.dark) / K`` (e-) and ``PRNU = sqrt(s2_y - s2_y.dark) / (mu_y - mu_y.dark)`` (a fraction).
  With several bright stacks, the one whose photons are nearest half the saturation's.

What the standard requires of the data, and is refused here (a :class:`~gimbal.errors.DataError` naming the
descriptor line): the two images of a pair (and consecutive images of a stack) must differ, unless every pixel
holds one value (saturated); the bright stack must lie below :data:`STACK_HIGH_FRACTION` of the saturation
signal (EMVA takes it near 50 %) with no more than :data:`CLIPPED_FRACTION` of its pixels at the top code; the
quantum efficiency the photon counts give must lie in [:data:`MIN_PLAUSIBLE_QE`, 1]. A stack outside
:data:`STACK_LOW_FRACTION` - :data:`LINEAR_FRACTION` of saturation and a quantum efficiency below :data:`LOW_QE`
are warnings (:attr:`Calibration.warnings`). Image files themselves are checked by
:func:`~gimbal.calibration.descriptor.load_image` (bit depth, whole DN).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gimbal.calibration.descriptor import Descriptor, Point, load_image
from gimbal.errors import DataError

__all__ = [
    "CLIPPED_FRACTION",
    "DARK_VAR_FLOOR_DN2",
    "LINEAR_FRACTION",
    "LOW_QE",
    "MIN_FIT_POINTS",
    "MIN_PLAUSIBLE_QE",
    "SIGMA2_Q_DN2",
    "STACK_HIGH_FRACTION",
    "STACK_LOW_FRACTION",
    "Calibration",
    "LinearFit",
    "PairStats",
    "Spatial",
    "calibrate",
    "fit_line",
    "pair_stats",
    "stack_stats",
]

SIGMA2_Q_DN2 = 1.0 / 12.0
"""Variance of the quantization noise, DN^2."""
DARK_VAR_FLOOR_DN2 = 0.24
"""Below this dark variance (DN^2) quantization dominates: the standard gives an upper limit of sigma_d."""
LINEAR_FRACTION = 0.7
"""The K and QE fits use the bright points up to this fraction of the saturation signal (EMVA: 0-70 %)."""
MIN_FIT_POINTS = 5
"""Fewest bright pairs in the linear range that a fit accepts."""
SATURATED_DARK_FRACTION = 0.01
"""A dark pair with more than this fraction of its pixels at ``2^bits - 1`` is taken as saturated."""
STACK_HIGH_FRACTION = 0.9
"""A bright stack above this fraction of the saturation signal is refused: the full well compresses its PRNU."""
CLIPPED_FRACTION = 0.001
"""A bright stack with more than this fraction of its pixels at ``2^bits - 1`` is clipped: refused."""
STACK_LOW_FRACTION = 0.3
"""A bright stack below this fraction of the saturation signal gets a warning (EMVA: near 50 %)."""
MIN_PLAUSIBLE_QE = 0.01
"""A quantum efficiency below this is refused: the photon counts of the 'b' lines are off (too large)."""
LOW_QE = 0.1
"""A quantum efficiency below this gets a warning."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairStats:
    """Temporal statistics of one point (a pair of images).

    Attributes:
        point: the descriptor point.
        mean_dn: ``mu_y``, mean of both images, DN.
        var_dn2: ``sigma2_y``, temporal variance from the pair difference, DN^2.
        at_max_fraction: fraction of pixels at ``2^bits - 1`` in the two images.
    """

    point: Point
    mean_dn: float
    var_dn2: float
    at_max_fraction: float


@dataclass(frozen=True)
class LinearFit:
    """A least-squares line ``y = slope x + intercept`` and its quality.

    Attributes:
        slope, intercept: the line (``intercept`` 0 for a fit through the origin).
        r2: coefficient of determination ``1 - SS_res / SS_tot`` (SS_tot about the mean, also through the origin).
        n: number of points.
        rms_residual: root mean square of ``y - fit`` (units of y).
        max_rel_residual: largest ``|y - fit| / |fit|`` over the points (a fraction).
    """

    slope: float
    intercept: float
    r2: float
    n: int
    rms_residual: float
    max_rel_residual: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.slope * np.asarray(x, dtype=np.float64) + self.intercept


@dataclass(frozen=True)
class Spatial:
    """Spatial non-uniformity estimates.

    Attributes:
        source: where they come from, e.g. ``"b 25000000 ns ... (line 203): stack of L = 16"``.
        images: L, images averaged.
        signal_dn: ``mu_y - mu_y.dark`` of the bright stack, DN.
        s2_dn2, s2_dark_dn2: spatial variances of the bright and dark averaged images less their temporal
            part, DN^2.
        prnu: PRNU as a fraction (standard deviation of the gain over the pixels / mean).
        dsnu_e: DSNU in e- (standard deviation of the dark signal over the pixels).
    """

    source: str
    images: int
    signal_dn: float
    s2_dn2: float
    s2_dark_dn2: float
    prnu: float
    dsnu_e: float


@dataclass(frozen=True)
class Calibration:
    """The EMVA 1288 estimates of one data set and the data they come from (see the module docstring).

    Arrays are per bright pair, sorted by photons: ``photons`` ``(P,)`` mu_p, ``signal_dn`` ``(P,)``
    ``mu_y - mu_y.dark``, ``variance_dn2`` ``(P,)`` ``sigma2_y - sigma2_y.dark``, ``fit_mask`` ``(P,)`` the
    points of the K / QE fits. ``notes`` say how a value was obtained (an upper limit, a missing measurement);
    ``warnings`` name data that EMVA 1288 would have taken otherwise (a stack far from half saturation, a low
    quantum efficiency).
    """

    descriptor: Descriptor
    bright: tuple[PairStats, ...]
    dark: tuple[PairStats, ...]
    photons: np.ndarray
    signal_dn: np.ndarray
    variance_dn2: np.ndarray
    fit_mask: np.ndarray
    saturation_index: int
    saturation_reached: bool
    gain: LinearFit
    responsivity: LinearFit
    dark_mean_fit: LinearFit | None
    dark_var_fit: LinearFit | None
    dark_var_dn2: float
    read_noise_upper_limit: bool
    spatial: Spatial
    notes: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def gain_dn_per_e(self) -> float:
        """System gain K, DN/e-."""
        return self.gain.slope

    @property
    def quantum_efficiency(self) -> float:
        """eta = R / K, electrons per photon."""
        return self.responsivity.slope / self.gain.slope

    @property
    def read_noise_e(self) -> float:
        """Temporal dark noise sigma_d, e- (an upper limit when :attr:`read_noise_upper_limit`)."""
        return math.sqrt(self.dark_var_dn2 - SIGMA2_Q_DN2) / self.gain.slope

    @property
    def dark_current_e_per_s(self) -> float:
        """mu_I, e-/s (0 when not measured or negative)."""
        if self.dark_mean_fit is None:
            return 0.0
        return max(self.dark_mean_fit.slope, 0.0) / self.gain.slope

    @property
    def saturation_photons(self) -> float:
        """mu_p.sat: photons per pixel at saturation."""
        return float(self.photons[self.saturation_index])

    @property
    def saturation_e(self) -> float:
        """Saturation capacity mu_e.sat = eta mu_p.sat, e-."""
        return self.quantum_efficiency * self.saturation_photons

    @property
    def bits(self) -> int:
        """ADC bit depth (the descriptor's ``n`` line)."""
        return self.descriptor.bits

    def snr_model(self, photons: np.ndarray, nonuniformity: bool = False) -> np.ndarray:
        """Model SNR of the linear camera at ``photons`` (mu_p, any shape), below saturation.

        Temporal: ``eta mu_p / sqrt(sigma2_y.dark / K^2 + eta mu_p)``; with ``nonuniformity`` the spatial terms
        ``DSNU^2 + PRNU^2 (eta mu_p)^2`` join the noise (the total SNR of one image).
        """
        mu_e = self.quantum_efficiency * np.asarray(photons, dtype=np.float64)
        noise2 = self.dark_var_dn2 / self.gain.slope**2 + mu_e
        if nonuniformity:
            noise2 = noise2 + self.spatial.dsnu_e**2 + (self.spatial.prnu * mu_e) ** 2
        return mu_e / np.sqrt(noise2)

    def measured_snr(self) -> np.ndarray:
        """``(P,)`` measured temporal SNR of the bright pairs: ``(mu_y - mu_y.dark) / sigma_y`` (NaN where a
        saturated pair has no temporal noise)."""
        sigma = np.sqrt([b.var_dn2 for b in self.bright])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sigma > 0, self.signal_dn / np.where(sigma > 0, sigma, 1.0), np.nan)


def fit_line(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, through_origin: bool = False
             ) -> LinearFit:
    """Least-squares line through ``(x, y)`` (``(n,)`` each, n >= 2); see :class:`LinearFit`."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"fit_line needs two (n,) arrays with n >= 2, got {x.shape} and {y.shape}")
    if through_origin:
        slope, intercept = float(np.dot(x, y) / np.dot(x, x)), 0.0
    else:
        slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    pred = slope * x + intercept
    res = y - pred
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res**2)) / ss_tot if ss_tot > 0 else 1.0
    nz = np.abs(pred) > 0
    max_rel = float(np.max(np.abs(res[nz]) / np.abs(pred[nz]))) if nz.any() else math.inf
    return LinearFit(slope, intercept, r2, int(x.size), float(np.sqrt(np.mean(res**2))), max_rel)


def pair_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean (DN) and temporal variance (DN^2) of a pair of images ``(H, W)`` of one operating point."""
    diff = a - b
    return float((a.mean() + b.mean()) / 2), float(np.mean((diff - diff.mean()) ** 2) / 2)


def stack_stats(images: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean (DN) and spatial variance less its temporal part (DN^2) of the average of ``L`` images ``(H, W)``.

    ``s2_y = var_pixels(<y>) - mean_pixels(var_L(y)) / L`` (both unbiased), computed in one pass (Welford).
    """
    mean = np.zeros_like(images[0], dtype=np.float64)
    m2 = np.zeros_like(mean)
    for k, img in enumerate(images, start=1):
        delta = img - mean
        mean += delta / k
        m2 += delta * (img - mean)
    n = len(images)
    temporal = float(np.mean(m2 / (n - 1)))
    return float(mean.mean()), float(mean.var(ddof=1)) - temporal / n


def _check_distinct(desc: Descriptor, point: Point, k: int, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse images ``k - 1`` and ``k`` of ``point`` when they are identical. Uniform images (every pixel one
    value: a camera clipped at its top code or at a digital saturation level) may be identical."""
    if np.array_equal(a, b) and a.min() != a.max():
        first, second = point.images[k - 1], point.images[k]
        raise DataError(f"{desc.path}: line {point.line}: images {first.name} and {second.name} of "
                        f"{point.describe()} are identical; a pair (or stack) is distinct exposures taken one after "
                        "the other, whose difference is the temporal noise: list different images")


def _load_pair(desc: Descriptor, point: Point) -> PairStats:
    a, b = (load_image(p, desc, point) for p in point.images)
    _check_distinct(desc, point, 1, a, b)
    mean, var = pair_stats(a, b)
    at_max = float((np.count_nonzero(a >= desc.max_dn) + np.count_nonzero(b >= desc.max_dn)) / (2 * a.size))
    return PairStats(point, mean, var, at_max)


def _ns(t: float) -> float:
    return round(t * 1e9, 3)


def _check_dark(desc: Descriptor, d: PairStats) -> None:
    if d.at_max_fraction > SATURATED_DARK_FRACTION or d.mean_dn > 0.5 * desc.max_dn:
        raise DataError(
            f"{d.point.images[0]}: the dark pair {d.point.describe()} of {desc.path} is saturated ("
            f"{d.at_max_fraction:.1%} of its pixels at {desc.max_dn} DN, mean {d.mean_dn:.1f} DN); dark images are "
            "taken without light: cover the sensor, lower the black level, and check that the 'd' lines list the "
            "dark images")


def _load_stack(desc: Descriptor, point: Point) -> list[np.ndarray]:
    images = []
    for k, p in enumerate(point.images):
        images.append(load_image(p, desc, point))
        if k:
            _check_distinct(desc, point, k, images[-2], images[-1])
    return images


def _spatial(desc: Descriptor, k: float, sat_signal: float, sat_photons: float, reached: bool,
             bright: Sequence[PairStats], darks: dict[float, PairStats], fit_mask: np.ndarray,
             warnings: list[str]) -> Spatial:
    stacks = [p for p in desc.points if p.spatial and not p.dark]
    dark_stacks = {_ns(p.texp_s): p for p in desc.points if p.spatial and p.dark}
    if stacks:  # the one nearest half the saturation (EMVA: about 50 %)
        point = min(stacks, key=lambda p: abs(math.log(p.photons / (0.5 * sat_photons))))
        dark_point = dark_stacks.get(_ns(point.texp_s)) or (darks[_ns(point.texp_s)].point
                                                            if _ns(point.texp_s) in darks else None)
        if dark_point is None:
            raise DataError(f"{desc.path}: line {point.line}: the spatial stack {point.describe()} has no dark "
                            "stack or dark pair at its exposure time; add a 'd' point with that exposure time")
        source = f"{point.describe()}: stack of L = {len(point.images)}"
    else:  # no stacks: the bright pair of the linear range nearest 50 % of saturation, L = 2
        idx = np.flatnonzero(fit_mask)
        signals = np.array([bright[i].mean_dn - darks[_ns(bright[i].point.texp_s)].mean_dn for i in idx])
        point = bright[int(idx[np.argmin(np.abs(signals - 0.5 * sat_signal))])].point
        dark_point = darks[_ns(point.texp_s)].point
        source = f"{point.describe()}: pair, L = 2 (no spatial stack in the descriptor)"
    images = _load_stack(desc, point)
    mean, s2 = stack_stats(images)
    mean_dark, s2_dark = stack_stats(_load_stack(desc, dark_point))
    signal = mean - mean_dark
    if signal <= 0:
        raise DataError(f"{desc.path}: line {point.line}: the spatial stack {point.describe()} is not brighter than "
                        "its dark images; check the 'b' and 'd' lines")
    if stacks:
        clipped = sum(np.count_nonzero(img >= desc.max_dn) for img in images) / (len(images) * images[0].size)
        level = signal / sat_signal
        if clipped > CLIPPED_FRACTION:
            raise DataError(f"{desc.path}: line {point.line}: the spatial stack {point.describe()} is clipped: "
                            f"{clipped:.1%} of its pixels at the ADC's top code {desc.max_dn} DN, which hides the "
                            "PRNU; EMVA 1288 takes the stack at about 50 % of saturation: record it there")
        where = (f"the spatial stack {point.describe()} is at {level:.0%} of the saturation signal ({signal:.1f} of "
                 f"{sat_signal:.1f} DN above dark)")
        if level > STACK_HIGH_FRACTION and reached:
            raise DataError(f"{desc.path}: line {point.line}: {where}, where the filling wells compress the PRNU; "
                            "EMVA 1288 takes the stack at about 50 % of saturation: record it there")
        if level > LINEAR_FRACTION:
            warnings.append(f"{where}, beyond the linear range (0-{LINEAR_FRACTION:.0%}); EMVA 1288 takes it at about "
                            "50 %" + ("" if reached else " (saturation not reached: the level is an upper bound)"))
        elif level < STACK_LOW_FRACTION:
            warnings.append(f"the spatial stack {point.describe()} is at {level:.0%} of the saturation signal; "
                            "EMVA 1288 takes it at about 50 %, where the PRNU is best measured")
    prnu = math.sqrt(max(s2 - s2_dark, 0.0)) / signal
    return Spatial(source, len(point.images), signal, s2, s2_dark, prnu, math.sqrt(max(s2_dark, 0.0)) / k)


def _check_qe(desc: Descriptor, gain: LinearFit, responsivity: LinearFit, warnings: list[str]) -> None:
    """Refuse a quantum efficiency outside [MIN_PLAUSIBLE_QE, 1]; warn below LOW_QE (the photon counts)."""
    eta = responsivity.slope / gain.slope
    how = f"eta = R / K = {responsivity.slope:.4g} DN/p / {gain.slope:.4g} DN/e-"
    counts = ("the photon counts of the 'b' lines must be the mean photons per pixel during each exposure "
              "(not per second, per unit area or per sensor)")
    if eta > 1:
        raise DataError(f"{desc.path}: quantum efficiency {eta:.4g} is above 1 ({how}): the photon counts are too "
                        f"small; {counts}: check them")
    if eta < MIN_PLAUSIBLE_QE:
        raise DataError(f"{desc.path}: quantum efficiency {eta:.3g} is implausibly low ({how}): "
                        f"the photon counts look about {0.5 / eta:.3g} times too large for an eta of 0.5; {counts}: "
                        "check them")
    if eta < LOW_QE:
        warnings.append(f"quantum efficiency {eta:.3g} is low for a camera ({how}); check the photon counts of the "
                        "'b' lines (mean photons per pixel during each exposure)")


def calibrate(desc: Descriptor) -> Calibration:
    """EMVA 1288 release 4.0 estimates of the data set ``desc`` (see the module docstring).

    Raises:
        DataError naming the file: an image is missing, unreadable, of the wrong size, bit depth or type; no dark
        pairs; a bright exposure time without a dark pair; a saturated dark pair; identical images in a pair or
        stack; fewer than :data:`MIN_FIT_POINTS` bright pairs below saturation in the linear range; a photon
        transfer curve without positive slope; an implausible quantum efficiency; a bright stack beyond the linear
        range or clipped. Warnings (logged, and in :attr:`Calibration.warnings`): a low quantum efficiency, a
        stack far below half the saturation.
    """
    temporal = [p for p in desc.points if not p.spatial]
    if not any(p.dark for p in temporal):
        raise DataError(f"{desc.path}: no dark pairs; the photon transfer method subtracts the dark signal: add a "
                        "'d <texp_ns>' point with two images taken without light for every exposure time")
    if not any(not p.dark for p in temporal):
        raise DataError(f"{desc.path}: no bright pairs; add 'b <texp_ns> <photons>' points with two images each, "
                        "from dark to beyond saturation")
    darks: dict[float, PairStats] = {}
    for p in sorted((p for p in temporal if p.dark), key=lambda p: p.texp_s):
        d = _load_pair(desc, p)
        _check_dark(desc, d)
        darks.setdefault(_ns(p.texp_s), d)
    bright_points = sorted((p for p in temporal if not p.dark), key=lambda p: (p.photons, p.texp_s))
    missing = sorted({_ns(p.texp_s) for p in bright_points} - set(darks))
    if missing:
        have = ", ".join(f"{t:g}" for t in sorted(darks))
        raise DataError(f"{desc.path}: no dark pair at exposure time(s) {', '.join(f'{t:g}' for t in missing)} ns "
                        f"of bright points (dark pairs at {have} ns); add a 'd' point for each exposure time")
    bright = tuple(_load_pair(desc, p) for p in bright_points)
    dark_of = [darks[_ns(b.point.texp_s)] for b in bright]
    photons = np.array([b.point.photons for b in bright])
    signal = np.array([b.mean_dn - d.mean_dn for b, d in zip(bright, dark_of, strict=True)])
    variance = np.array([b.var_dn2 - d.var_dn2 for b, d in zip(bright, dark_of, strict=True)])
    notes: list[str] = []

    sat = int(np.argmax([b.var_dn2 for b in bright]))
    reached = sat < len(bright) - 1
    if not reached:
        notes.append("saturation not reached (the variance still rises at the brightest point): the saturation "
                     "capacity is a lower bound; add brighter points")
    fit_mask = (np.arange(len(bright)) <= sat) & (signal <= LINEAR_FRACTION * signal[sat]) & (signal > 0)
    n_fit = int(fit_mask.sum())
    if n_fit < MIN_FIT_POINTS:
        raise DataError(
            f"{desc.path}: only {n_fit} of {len(bright)} bright pairs lie below saturation in the linear range "
            f"(0-{LINEAR_FRACTION:.0%} of the saturation signal, {LINEAR_FRACTION * signal[sat]:.1f} DN above dark); "
            f"the EMVA 1288 fits need at least {MIN_FIT_POINTS}: add bright points (exposure times or "
            "illuminations) between dark and saturation")
    gain = fit_line(signal[fit_mask], variance[fit_mask], through_origin=True)
    if not gain.slope > 0:
        raise DataError(f"{desc.path}: the photon transfer curve has no positive slope (K = {gain.slope:.3g} DN/e-); "
                        "check that the bright pairs are two exposures of the same, constant illumination")
    responsivity = fit_line(photons[fit_mask], signal[fit_mask], through_origin=True)

    t = np.array([d.point.texp_s for d in darks.values()])
    mean_dark = np.array([d.mean_dn for d in darks.values()])
    var_dark = np.array([d.var_dn2 for d in darks.values()])
    dark_mean_fit = dark_var_fit = None
    if len(t) >= 3:
        dark_mean_fit = fit_line(t, mean_dark)
        dark_var_fit = fit_line(t, var_dark)
        dark_var = dark_var_fit.intercept
        if dark_mean_fit.slope < 0:
            notes.append("the dark signal falls with exposure time: dark current written as 0")
    else:
        dark_var = float(var_dark.mean())
        notes.append(f"dark pairs at {len(t)} exposure time(s): dark current not measured (written as 0; it needs "
                     "3 or more) and the dark noise includes its shot noise")
    upper = dark_var < DARK_VAR_FLOOR_DN2
    if upper:
        dark_var = DARK_VAR_FLOOR_DN2
        notes.append(f"dark variance below {DARK_VAR_FLOOR_DN2} DN^2 (quantization-limited): the dark noise is an "
                     "upper limit")
    warnings: list[str] = []
    _check_qe(desc, gain, responsivity, warnings)
    spatial = _spatial(desc, gain.slope, float(signal[sat]), float(photons[sat]), reached, bright, darks, fit_mask,
                       warnings)
    if spatial.images == 2:
        notes.append("no spatial stack: PRNU and DSNU estimated from one pair (L = 2), less precise")
    for w in warnings:
        _log.warning("%s: %s", desc.path, w)
    return Calibration(desc, bright, tuple(darks.values()), photons, signal, variance, fit_mask, sat, reached, gain,
                       responsivity, dark_mean_fit, dark_var_fit, float(dark_var), upper, spatial, tuple(notes),
                       tuple(warnings))
