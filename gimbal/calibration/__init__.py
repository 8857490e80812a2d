"""Camera calibration: from a camera's EMVA 1288 release 4.0 data set to a camera preset (``gimbal calibrate``).

* :mod:`~gimbal.calibration.descriptor` reads the descriptor file and its images;
* :mod:`~gimbal.calibration.emva` estimates the linear camera's constants (photon transfer method);
* :mod:`~gimbal.calibration.report` writes the preset YAML (``sensor.camera``) and the summary table;
* :mod:`~gimbal.calibration.plot` draws the photon transfer and SNR curves;
* :mod:`~gimbal.calibration.simulate` writes simulated data sets with known constants (tests, examples).
"""

from gimbal.calibration.descriptor import Descriptor, Point, read_descriptor
from gimbal.calibration.emva import Calibration, LinearFit, calibrate, fit_line
from gimbal.calibration.report import CalibrationResult, calibrate_files, format_table, preset_fields

__all__ = [
    "Calibration",
    "CalibrationResult",
    "Descriptor",
    "LinearFit",
    "Point",
    "calibrate",
    "calibrate_files",
    "fit_line",
    "format_table",
    "preset_fields",
    "read_descriptor",
]
