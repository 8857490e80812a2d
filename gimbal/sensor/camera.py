"""Camera parameters of the sensor forward model (paper Section 4, supplement A, Table 1/2).

A :class:`CameraSpec` holds the physical (EMVA-1288 style) and timing parameters of one
camera configuration. Irradiance enters the sensor model already in **photo-electrons per
second per pixel** (quantum efficiency applied); :meth:`CameraSpec.electron_rate` and
:meth:`CameraSpec.photons_to_electrons` convert physical quantities to that unit.

Presets (``get_camera``):

* ``jetcam19m`` - KAYA Instruments JetCam 19 (mono), used by the paper for the synthetic and
  the indoor experiments (aliases ``synthetic``, ``indoor``, ``paper_synthetic``, ``paper_indoor``).
* ``flir_bfs_u3_16s2m`` - FLIR (Teledyne) Blackfly S BFS-U3-16S2M, used for the outdoor
  experiment (aliases ``outdoor``, ``paper_outdoor``, ``bfs_u3_16s2m``).

Both cameras carry a Sony Pregius (2nd generation) global-shutter CMOS sensor with a
3.45 um pixel (JetCam 19: IMX367, 4432x4432; BFS-U3-16S2M: IMX273, 1440x1080), so their
pixel-level EMVA figures are close. Every number below is marked either as a data-sheet
value or as an ASSUMPTION; the supplement's Table 1/2 values were not available offline,
so the timing parameters (budget T, dt_min, dt_ro) are assumptions chosen so that the
paper's learned schedule 872/234/583 us fits the budget (with a small idle remainder).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gimbal.errors import ParamError

PLANCK_J_S = 6.62607015e-34
SPEED_OF_LIGHT_M_S = 299_792_458.0


@dataclass(frozen=True)
class CameraSpec:
    """Physical and timing parameters of a camera (SI units: m, m^2, s, electrons, DN).

    Physical (paper eqs. 4-11):
        wavelength_m: wavelength used for photon <-> energy conversion (EMVA uses 525 nm).
        pixel_area_m2: light-sensitive pixel area A.
        quantum_efficiency: eta in [0, 1], electrons per photon.
        dark_current_e_per_s: I0, mean dark electrons per second (eq. 6).
        read_noise_e: sigma_ro, temporal read (dark) noise in electrons (eq. 7).
        gain_dn_per_e: overall system gain K in DN per electron (eq. 11).
        full_well_e: full-well capacity FWC in electrons (eq. 9).
        tau1_e: end of the linear range of the response (eq. 9); ``None`` means 0.9 * FWC.
        bits: ADC bit depth m (eq. 11).
        dark_subtraction: subtract the mean dark signal I0 * dt (eq. 10).
    Timing (eqs. 12-13, Fig. 3):
        budget_s: exposure budget T (all exposures plus all readouts fit in [0, T]).
        min_exposure_s: dt_min, the shortest exposure the camera supports.
        readout_s: dt_ro, dead time after each exposure while the frame is read out.
    """

    name: str
    wavelength_m: float
    pixel_area_m2: float
    quantum_efficiency: float
    dark_current_e_per_s: float
    read_noise_e: float
    gain_dn_per_e: float
    full_well_e: float
    bits: int
    budget_s: float
    min_exposure_s: float
    readout_s: float
    tau1_e: float | None = None
    dark_subtraction: bool = True

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ParamError(f"camera '{self.name}': {msg}")

        need(self.wavelength_m > 0, f"wavelength_m must be > 0, got {self.wavelength_m}")
        need(self.pixel_area_m2 > 0, f"pixel_area_m2 must be > 0, got {self.pixel_area_m2}")
        need(0 < self.quantum_efficiency <= 1, f"quantum_efficiency must be in (0, 1], got {self.quantum_efficiency}")
        need(self.dark_current_e_per_s >= 0, f"dark_current_e_per_s must be >= 0, got {self.dark_current_e_per_s}")
        need(self.read_noise_e >= 0, f"read_noise_e must be >= 0, got {self.read_noise_e}")
        need(self.gain_dn_per_e > 0, f"gain_dn_per_e must be > 0, got {self.gain_dn_per_e}")
        need(self.full_well_e > 0, f"full_well_e must be > 0, got {self.full_well_e}")
        need(isinstance(self.bits, int) and 1 <= self.bits <= 24, f"bits must be an int in [1, 24], got {self.bits}")
        need(self.budget_s > 0, f"budget_s must be > 0, got {self.budget_s}")
        need(self.min_exposure_s >= 0, f"min_exposure_s must be >= 0, got {self.min_exposure_s}")
        need(self.readout_s >= 0, f"readout_s must be >= 0, got {self.readout_s}")
        if self.tau1_e is not None:
            need(0 < self.tau1_e < self.full_well_e, f"tau1_e must be in (0, full_well_e), got {self.tau1_e}")

    # ------------------------------------------------------------------ derived values
    @property
    def tau1(self) -> float:
        """End of the linear response range in electrons (default 0.9 FWC, eq. 9)."""
        return float(self.tau1_e) if self.tau1_e is not None else 0.9 * self.full_well_e

    @property
    def max_dn(self) -> int:
        """Largest digital number, 2^m - 1 (eq. 11)."""
        return (1 << self.bits) - 1

    @property
    def photon_energy_j(self) -> float:
        """Energy of one photon at ``wavelength_m``: h c / lambda."""
        return PLANCK_J_S * SPEED_OF_LIGHT_M_S / self.wavelength_m

    def electron_rate(self, irradiance_w_m2: Any) -> Any:
        """Irradiance E [W/m^2] on the sensor -> photo-electrons per second per pixel (eq. 4).

        mu_e / dt = eta * A * E * lambda / (h c). Works on floats, numpy arrays and tensors.
        """
        return irradiance_w_m2 * (self.quantum_efficiency * self.pixel_area_m2 / self.photon_energy_j)

    def photons_to_electrons(self, photons: Any) -> Any:
        """Mean photon count per pixel -> mean photo-electron count (times eta)."""
        return photons * self.quantum_efficiency

    def replace(self, **changes: Any) -> CameraSpec:
        """A copy with some fields changed; unknown field names raise :class:`ParamError`."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - valid)
        if unknown:
            raise ParamError(
                f"camera '{self.name}': unknown field(s) {unknown}; valid fields are {sorted(valid)}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields plus the derived ``tau1`` (for JSON reports)."""
        d = dataclasses.asdict(self)
        d["tau1_e"] = self.tau1
        return d


# ---------------------------------------------------------------------------------- presets
# Sony Pregius gen-2 3.45 um pixel (IMX250/252/253/264/273/367 family). Typical EMVA-1288
# figures published by camera vendors for this pixel at 0 dB gain, 525 nm: QE ~ 65-70 %,
# temporal dark noise ~ 2.2-2.5 e-, saturation capacity ~ 10.4-10.6 ke-, dark current a few
# e-/s at room temperature. These were recalled from vendor EMVA sheets, not re-checked
# offline: treat the "data sheet" values as approximate.
_PIXEL_PITCH_M = 3.45e-6  # data sheet: both cameras, 3.45 um x 3.45 um

_JETCAM19M = CameraSpec(
    name="jetcam19m",
    wavelength_m=525e-9,  # EMVA-1288 reference wavelength (green LED)
    pixel_area_m2=_PIXEL_PITCH_M**2,  # data sheet: 3.45 um pixel (Sony IMX367)
    quantum_efficiency=0.68,  # approx. EMVA value for the IMX367/IMX250 pixel at 525 nm
    dark_current_e_per_s=5.0,  # ASSUMPTION: a few e-/s at room temperature (negligible at ms exposures)
    read_noise_e=2.3,  # approx. EMVA temporal dark noise of the Pregius gen-2 pixel
    full_well_e=10_500.0,  # approx. EMVA saturation capacity of the Pregius gen-2 pixel
    bits=12,  # data sheet: 8/10/12-bit output; 12-bit used here
    gain_dn_per_e=4095.0 / 10_500.0,  # ASSUMPTION: ADC range matched to the full well at 0 dB (~0.39 DN/e-)
    budget_s=2.0e-3,  # ASSUMPTION: exposure budget T = 2 ms (supplement Table 1 not available offline)
    min_exposure_s=10e-6,  # ASSUMPTION: dt_min = 10 us
    readout_s=100e-6,  # ASSUMPTION: dt_ro = 100 us between frames (ROI readout)
)

_FLIR_BFS_U3_16S2M = CameraSpec(
    name="flir_bfs_u3_16s2m",
    wavelength_m=525e-9,  # EMVA-1288 reference wavelength
    pixel_area_m2=_PIXEL_PITCH_M**2,  # data sheet: 3.45 um pixel (Sony IMX273, 1/2.9")
    quantum_efficiency=0.69,  # approx. FLIR EMVA sheet for BFS-U3-16S2M at 525 nm
    dark_current_e_per_s=5.0,  # ASSUMPTION: a few e-/s at room temperature
    read_noise_e=2.2,  # approx. FLIR EMVA sheet: temporal dark noise ~2.2 e-
    full_well_e=10_400.0,  # approx. FLIR EMVA sheet: saturation capacity ~10.4 ke-
    bits=12,  # data sheet: 8/10/12-bit ADC; 12-bit used here
    gain_dn_per_e=4095.0 / 10_400.0,  # ASSUMPTION: ADC range matched to the full well at 0 dB
    budget_s=2.0e-3,  # ASSUMPTION: T = 2 ms
    min_exposure_s=10e-6,  # ASSUMPTION: dt_min = 10 us (camera minimum is a few us)
    readout_s=100e-6,  # ASSUMPTION: dt_ro = 100 us
)

PRESETS: dict[str, CameraSpec] = {
    "jetcam19m": _JETCAM19M,
    "flir_bfs_u3_16s2m": _FLIR_BFS_U3_16S2M,
}

ALIASES: dict[str, str] = {
    "synthetic": "jetcam19m",
    "paper_synthetic": "jetcam19m",
    "indoor": "jetcam19m",
    "paper_indoor": "jetcam19m",
    "kaya_jetcam19m": "jetcam19m",
    "outdoor": "flir_bfs_u3_16s2m",
    "paper_outdoor": "flir_bfs_u3_16s2m",
    "bfs_u3_16s2m": "flir_bfs_u3_16s2m",
}


def camera_names() -> list[str]:
    """All accepted preset names (presets and aliases)."""
    return sorted(PRESETS) + sorted(ALIASES)


def get_camera(name: str, **overrides: Any) -> CameraSpec:
    """Preset :class:`CameraSpec` by name (case-insensitive; '-' and '_' equivalent).

    ``overrides`` replace fields (e.g. ``budget_s=4e-3``); unknown names raise ParamError.
    """
    if not isinstance(name, str):
        raise ParamError(f"camera name must be a string, got {name!r}; one of {camera_names()}")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in PRESETS:
        raise ParamError(f"unknown camera '{name}'; choose one of {camera_names()} (sensor.camera in params.yaml)")
    spec = PRESETS[key]
    return spec.replace(**overrides) if overrides else spec
