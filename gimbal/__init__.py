"""gimbal: Digital Gimbal - end-to-end deep image stabilization with learnable exposure times.

Implements Dahary, Jacoby & Bronstein, CVPR 2021, as a reproducible DVC pipeline.
``docs/equations.md`` maps each equation of the paper to the function that implements it.
"""

from gimbal.errors import GimbalError

__all__ = ["GimbalError"]
__version__ = "0.1.0"
