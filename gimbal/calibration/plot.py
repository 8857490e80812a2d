"""Figures of an EMVA 1288 calibration: the photon transfer curve and the SNR curve.

Matplotlib with the Agg backend, written atomically as PNG (like :mod:`gimbal.evaluation.plots` and
:mod:`gimbal.sensor.plot`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gimbal.calibration.emva import LINEAR_FRACTION, Calibration
from gimbal.io import atomic_path

__all__ = ["plot_photon_transfer", "plot_snr"]


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str]) -> Path:  # type: ignore[no-untyped-def]
    out = Path(path)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    return out


def plot_photon_transfer(cal: Calibration, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Temporal variance against mean signal (both less the dark pair's), the fit line (slope K), the linear
    range and the saturation point; below, the fit's relative residuals. Written as PNG to ``path``."""
    plt = _pyplot()
    x, y, fit = cal.signal_dn, cal.variance_dn2, cal.fit_mask
    sat = cal.saturation_index
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 5.6), dpi=120, sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(x[~fit], y[~fit], "o", color="tab:gray", markersize=4, alpha=0.7, label="not fitted")
    ax.plot(x[fit], y[fit], "o", color="tab:blue", markersize=4, label=f"fitted ({int(fit.sum())} points)")
    xs = np.array([0.0, float(x[sat])])
    k = cal.gain_dn_per_e
    ax.plot(xs, k * xs, "-", color="tab:orange", linewidth=1.5,
            label=f"fit: K = {k:.4g} DN/e-, R$^2$ = {cal.gain.r2:.4f}")
    ax.axvspan(0.0, LINEAR_FRACTION * float(x[sat]), color="tab:blue", alpha=0.06,
               label=f"linear range (0-{LINEAR_FRACTION:.0%} of saturation)")
    ax.plot([x[sat]], [y[sat]], "*", color="tab:red", markersize=14,
            label=f"saturation: {x[sat]:.0f} DN, $\\mu_{{e.sat}}$ = {cal.saturation_e:.0f} e-")
    ax.set_ylabel(r"$\sigma^2_y - \sigma^2_{y.dark}$ [DN$^2$]")
    ax.set_xlim(left=0.0)
    ax.set_ylim(bottom=0.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Photon transfer (EMVA 1288)")
    rel = 100.0 * (y[fit] - k * x[fit]) / (k * x[fit])
    axr.axhline(0.0, color="tab:orange", linewidth=1)
    axr.plot(x[fit], rel, "o", color="tab:blue", markersize=3)
    lim = max(1.0, float(np.max(np.abs(rel))) * 1.2)
    axr.set_ylim(-lim, lim)
    axr.set_ylabel("residual [%]")
    axr.set_xlabel(r"$\mu_y - \mu_{y.dark}$ [DN]")
    axr.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_snr(cal: Calibration, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """SNR against photons per pixel (log-log): measured temporal SNR of every bright pair, the linear model
    with the calibrated constants (temporal, and with the non-uniformities), the ideal sqrt(mu_p) and the
    saturation point. Written as PNG to ``path``."""
    plt = _pyplot()
    p = cal.photons
    snr = cal.measured_snr()
    sat = cal.saturation_index
    shown = (np.arange(p.size) <= sat) & (snr > 0)
    # absolute sensitivity threshold: the model's SNR = 1, eta mu_p = (1 + sqrt(1 + 4 sigma2_y.dark / K^2)) / 2
    p_min = (1 + np.sqrt(1 + 4 * cal.dark_var_dn2 / cal.gain_dn_per_e**2)) / 2 / cal.quantum_efficiency
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=120)
    grid = np.geomspace(min(0.5 * p_min, float(p[shown].min())), float(p[sat]), 200)
    ax.plot(grid, np.sqrt(grid), ":", color="tab:gray", label=r"ideal: $\sqrt{\mu_p}$")
    ax.plot(grid, cal.snr_model(grid), "-", color="tab:orange", linewidth=1.5,
            label=f"model, temporal: $\\eta$ = {cal.quantum_efficiency:.3f}, $\\sigma_d$ = {cal.read_noise_e:.2f} e-")
    ax.plot(grid, cal.snr_model(grid, nonuniformity=True), "--", color="tab:green", linewidth=1.2,
            label=f"model, with PRNU {100 * cal.spatial.prnu:.2f} % and DSNU {cal.spatial.dsnu_e:.2f} e-")
    hidden = p.size - int(shown.sum())
    ax.plot(p[shown], snr[shown], "o", color="tab:blue", markersize=4,
            label="measured (pairs)" + (f"; {hidden} beyond saturation not shown" if hidden else ""))
    ax.plot([p_min], [1.0], "v", color="black", markersize=7,
            label=f"threshold (SNR = 1): $\\mu_{{p.min}}$ = {p_min:.3g} photons")
    ax.axvline(float(p[sat]), color="tab:red", linestyle="--", linewidth=1,
               label=f"saturation: $\\mu_{{p.sat}}$ = {p[sat]:.0f} photons")
    ax.axhline(1.0, color="black", linewidth=0.6, alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"photons per pixel $\mu_p$")
    ax.set_ylabel("SNR")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "Signal-to-noise ratio (EMVA 1288)")
    fig.tight_layout()
    return _save(fig, path)
