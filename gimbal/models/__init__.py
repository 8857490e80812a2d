"""Reconstruction networks: pyramid flow (Fig. 4), KPN (Fig. 5) and the full GimbalNet (Section 5)."""

from gimbal.models.flow import FlowNet, reference_index, split_reference, warp
from gimbal.models.kpn import KPN, apply_kernels
from gimbal.models.net import GimbalNet, GimbalOutput, ModelConfig, align_estimate

__all__ = [
    "KPN",
    "FlowNet",
    "GimbalNet",
    "GimbalOutput",
    "ModelConfig",
    "align_estimate",
    "apply_kernels",
    "reference_index",
    "split_reference",
    "warp",
]
