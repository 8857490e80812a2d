"""gimbal: Digital Gimbal - end-to-end deep image stabilization with learnable exposure times.

Implements Dahary, Jacoby & Bronstein, CVPR 2021, as a reproducible DVC pipeline.
See ``DESIGN.md`` (shared) for the map from paper equations to modules.
"""

from gimbal.errors import GimbalError

__all__ = ["GimbalError"]
__version__ = "0.1.0"
