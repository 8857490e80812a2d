"""DeblurGAN-v2 content loss (the authors' ``models/losses.py``): MSE + VGG19 conv3_3 perceptual term, or a
documented substitute.

:class:`ContentLoss` maps ``fake, real (B, C, H, W)`` in ``[0, 1]`` to the scalars ``{"mse", "perceptual",
"content"}`` with ``content = 0.5 * MSE + 0.006 * MSE(VGG19 conv3_3)``. The perceptual term needs VGG19
ImageNet weights given by path (:class:`VGG19Features`: ``(B, 3, H, W)`` in ``[0, 1]`` ->
``(B, 256, H/4, W/4)``, loaded by :func:`load_vgg19_features`), since none can be downloaded here; without them
a clearly labelled *substitute* :class:`StructuralLoss` (multi-scale Sobel-gradient L1 + SSIM) is used
instead and a warning is logged once per process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from gimbal.checkpoint import read_torch_file
from gimbal.errors import ModelFileIncompatible, ModelFileWrongKind

__all__ = [
    "ContentLoss",
    "StructuralLoss",
    "VGG19Features",
    "load_vgg19_features",
]

log = logging.getLogger(__name__)

# torchvision vgg19.features indices 0..14 (conv1_1 .. conv3_3, without the ReLU after conv3_3)
_VGG19_CONV3_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG19 feature stack up to conv3_3 (pre-ReLU), torchvision-free, frozen.

    Layer indices, names and shapes equal torchvision's ``vgg19().features[:15]`` (``0.weight`` ...
    ``14.bias``), so ``torch.save(torchvision.models.vgg19(weights="IMAGENET1K_V1").features.state_dict(),
    "vgg19.pt")`` (or the whole model's state dict, keys ``features.N.*``) loads via :meth:`from_file`.

    ``forward(x (B, 3, H, W) in [0, 1])`` normalises with the ImageNet mean/std and returns
    ``(B, 256, H/4, W/4)`` conv3_3 features.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG19_CONV3_3:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers[:-1])  # stop at conv3_3 (index 14), as the original
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:  # always frozen, always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> VGG19Features:
        """Load torchvision-compatible VGG19 weights (see class docstring); DataError names the file."""
        return load_vgg19_features(path)


def load_vgg19_features(path: str | os.PathLike[str]) -> VGG19Features:
    """Build a :class:`VGG19Features` from a state-dict file of torchvision's VGG19 (features or whole model)."""
    path = Path(path)
    how = (
        "save it on a machine with internet via torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1')"
        ".features.state_dict(), PATH) and set baselines.deblurgan.perceptual_weights to PATH (or null)"
    )
    state = read_torch_file(path, "VGG19 weights file", how, unchecked_reason="torchvision's weights have none")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileWrongKind(f"{path}: not a VGG19 weights file (expected a state dict, got "
                                 f"{type(state).__name__}); {how}")
    model = VGG19Features()
    wanted = model.features.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = str(key)
        for prefix in ("module.", "features."):
            name = name.removeprefix(prefix)
        if name in wanted:
            picked[name] = value
    missing = [k for k in wanted if k not in picked]
    if missing:
        raise ModelFileIncompatible(f"{path}: VGG19 weights lack {missing[:3]} (expected torchvision vgg19 "
                                    f"'features.N.*'); {how}")
    bad = [k for k in wanted if tuple(picked[k].shape) != tuple(wanted[k].shape)]
    if bad:
        k = bad[0]
        raise ModelFileIncompatible(
            f"{path}: VGG19 weight {k} has shape {tuple(picked[k].shape)}, expected {tuple(wanted[k].shape)} "
            f"(is this VGG19?); {how}"
        )
    model.features.load_state_dict({k: v.float() for k, v in picked.items()})
    return model


class StructuralLoss(nn.Module):
    """SUBSTITUTE for the VGG19 perceptual loss, used only when no VGG19 weights are available.

    ``forward(fake, real (B, C, H, W) in [0, 1]) -> scalar``: the mean L1 distance of Sobel image gradients
    over ``scales`` dyadic scales (average-pooled) plus kornia's SSIM loss ``(1 - SSIM) / 2`` (window 7) at
    full resolution. It rewards sharp edges / local structure like the perceptual term does, but it is
    *not* DeblurGAN-v2's loss: results trained with it are not the paper's configuration.
    """

    def __init__(self, scales: int = 3, window_size: int = 7) -> None:
        super().__init__()
        self.scales = scales
        self.window_size = window_size

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        grad_term = fake.new_zeros(())
        a, b = fake, real
        n = 0
        for s in range(self.scales):
            if s > 0:
                if min(a.shape[-2:]) < 4:
                    break
                a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            ga = kornia.filters.spatial_gradient(a, mode="sobel")
            gb = kornia.filters.spatial_gradient(b, mode="sobel")
            grad_term = grad_term + torch.mean(torch.abs(ga - gb))
            n += 1
        window = min(self.window_size, *fake.shape[-2:])
        window = window if window % 2 == 1 else window - 1
        ssim = kornia.losses.ssim_loss(fake, real, window_size=max(window, 1), max_val=1.0)
        return grad_term / n + ssim


_WARNED_SUBSTITUTE = False


def _warn_substitute_once() -> None:
    global _WARNED_SUBSTITUTE
    if not _WARNED_SUBSTITUTE:
        log.warning(
            "DeblurGAN-v2: no VGG19 weights given (baselines.deblurgan.perceptual_weights is null); using a "
            "SUBSTITUTE structural loss (multi-scale Sobel-gradient L1 + SSIM) instead of the VGG19 conv3_3 "
            "perceptual loss. Give torchvision VGG19 weights by path for the paper's loss."
        )
        _WARNED_SUBSTITUTE = True


class ContentLoss(nn.Module):
    """DeblurGAN-v2 content loss: ``mse_weight * MSE + perceptual_weight * MSE(VGG19 conv3_3)`` (paper Sec. 3.3).

    ``feature_extractor``: a path to torchvision-compatible VGG19 weights (see :class:`VGG19Features`), an
    ``nn.Module`` mapping ``(B, 3, H, W)`` in [0, 1] to features, or ``None``. With ``None`` the perceptual
    term is replaced by the SUBSTITUTE :class:`StructuralLoss` weighted by ``structural_weight`` (a warning
    is logged once per process).

    ``forward(fake, real (B, C, H, W) in [0, 1])`` returns ``{"mse", "perceptual", "content"}`` scalars
    (``perceptual`` is the unweighted VGG or substitute term; ``content`` the weighted sum).
    """

    def __init__(
        self,
        feature_extractor: str | os.PathLike[str] | nn.Module | None = None,
        mse_weight: float = 0.5,
        perceptual_weight: float = 0.006,
        structural_weight: float = 0.05,
    ) -> None:
        super().__init__()
        if isinstance(feature_extractor, (str, os.PathLike)):
            feature_extractor = load_vgg19_features(feature_extractor)
        self.features: nn.Module | None = feature_extractor
        if self.features is not None:
            self.features.requires_grad_(False).eval()
        self.structural = StructuralLoss()
        self.mse_weight = mse_weight
        self.perceptual_weight = perceptual_weight
        self.structural_weight = structural_weight
        if self.features is None:
            _warn_substitute_once()

    @property
    def uses_substitute(self) -> bool:
        """True when the perceptual term is the structural substitute (no VGG19 weights)."""
        return self.features is None

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        mse = F.mse_loss(fake, real)
        if self.features is not None:
            if fake.shape[1] == 1:  # grayscale: VGG expects RGB
                fake, real = fake.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1)
            with torch.no_grad():
                f_real = self.features(real)
            perceptual = F.mse_loss(self.features(fake), f_real)
            weight = self.perceptual_weight
        else:
            perceptual = self.structural(fake, real)
            weight = self.structural_weight
        return {"mse": mse, "perceptual": perceptual, "content": self.mse_weight * mse + weight * perceptual}
