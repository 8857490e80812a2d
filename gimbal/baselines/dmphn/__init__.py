"""DMPHN baseline (Zhang, Dai, Li, Koniusz, "Deep Stacked Hierarchical Multi-patch Network for Image Deblurring",
CVPR 2019), the non-stacked DMPHN-1-2-4, trained from scratch on our data.

Digital Gimbal (Dahary et al., CVPR 2021, Table 2) compares against single-image deblurring of the full-exposure
frame; DMPHN is one such method. This package re-implements it from the paper (Sec. 3):

- three levels, each with its own encoder E_i and decoder D_i (weights not shared between levels). Level 1 sees the
  whole image, level 2 its top and bottom halves, level 3 the 2x2 grid of quadrants (non-overlapping patches);
- encoder: ``conv3x3 (C -> c)``, residual blocks, ``conv3x3 stride 2 (c -> 2c)``, residual blocks,
  ``conv3x3 stride 2 (2c -> 4c)``, residual blocks: features at 1/4 resolution with 4c channels. A residual block
  is ``x + conv3x3(relu(conv3x3(x)))`` without normalisation. The decoder mirrors it with stride-2 transposed
  convs and ends in ``conv3x3 (c -> C)``. Paper size: c = 32, 2 blocks per scale (15 layers, 6 residual links);
- bottom-up flow: level 3 encodes each quadrant on its own; the features of the two quadrants of a half are
  concatenated side by side and D_3 decodes them into a residual per half. Level 2 encodes each half plus its
  level-3 residual, adds the level-3 features of that half, stacks the two halves into whole-image features and
  D_2 decodes a whole-image residual. Level 1 encodes the image plus that residual, adds the level-2 features, and
  D_1 gives the sharp estimate;
- loss: MSE between the output and the sharp image; Adam, lr 1e-4.

Like the authors' code (github.com/HongguangZhang/DMPHN-cvpr19-master), the network works on ``x - 0.5`` and shifts
its output back, and conv weights start from ``N(0, (0.5 sqrt(2 / n))^2)``, ``n = k^2 out_channels``, biases 0.

Modules: :mod:`~gimbal.baselines.dmphn.model` - :class:`DMPHNNet` (the network, with ``level3`` to inspect the
patch level), :class:`DMPHN` (network + Adam, ``training_step``, ``enhance``, atomic ``save`` / checked
``from_checkpoint``) and :class:`DMPHNConfig`, params group ``baselines.dmphn``. Every public name is re-exported
here (``from gimbal.baselines.dmphn import DMPHN``).

Range convention: every public function takes and returns images ``(B, C, H, W)`` float32 in ``[0, 1]`` (C = 1
grey by default). The network needs H and W divisible by 8 (2 for the patch split x 4 for the two stride-2 convs);
``DMPHN.enhance`` takes any size (replicate-padded to a multiple of 8, cropped back) and is the only place the
output is clamped to ``[0, 1]`` (training sees the raw output, as the original).

Deviations from the original, all because we train from scratch for a few hundred CPU steps on tiny crops instead
of ~3000 epochs on GoPro:

- tiny widths by default (``base_channels`` 8, ``res_blocks`` 1; paper 32 and 2), both params;
- ``identity_init`` (default on): the output is ``x + D_1(...)`` with D_1's last conv zero-initialised, so training
  starts from ``output = input`` rather than from a random image the network must first learn to undo; with
  ``identity_init: false`` the output is ``D_1(...)`` exactly as in the paper;
- no learning-rate schedule (the authors decay it by 10x late in their long runs).
"""

from gimbal.baselines.dmphn.model import (
    CHECKPOINT_FORMAT,
    DMPHN,
    PAD_MULTIPLE,
    PARAM_GROUP,
    DMPHNConfig,
    DMPHNDecoder,
    DMPHNEncoder,
    DMPHNNet,
    ResBlock,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "DMPHN",
    "PAD_MULTIPLE",
    "PARAM_GROUP",
    "DMPHNConfig",
    "DMPHNDecoder",
    "DMPHNEncoder",
    "DMPHNNet",
    "ResBlock",
]
