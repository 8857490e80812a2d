"""DeblurGAN-v2 baseline (Kupyn, Martyniuk, Wu, Wang, "DeblurGAN-v2: Deblurring (Orders-of-Magnitude)
Faster and Better", ICCV 2019), trained from scratch on our data.

Digital Gimbal (Dahary et al., CVPR 2021, Table 2) compares against DeblurGAN-v2 applied to the single
full-exposure image. This package re-implements the FPN-MobileNet variant following the paper and the
authors' code (github.com/VITA-Group/DeblurGANv2: ``models/fpn_mobilenet.py``, ``models/mobilenet_v2.py``,
``models/networks.py``, ``models/losses.py``, ``adversarial_trainer.py``, ``train.py``):

- :mod:`~gimbal.baselines.deblurgan.generator` - :class:`FPNMobileNetGenerator` (MobileNetV2 encoder cut into
  five stages at strides 2..32, FPN, per-level heads, global residual ``out = clamp(x + tanh(f(x)), -1, 1)``).
- :mod:`~gimbal.baselines.deblurgan.discriminator` - :class:`DoubleScaleDiscriminator`: a *local* 70 px and a
  *global* 286 px PatchGAN (``NLayerDiscriminator``) trained with :func:`ragan_ls_d_loss` /
  :func:`ragan_ls_g_loss` ("double-scale RaGAN-LS"), relativistic means from a :class:`PredictionPool`.
- :mod:`~gimbal.baselines.deblurgan.losses` - :class:`ContentLoss`: ``0.5 * MSE + 0.006 * MSE(VGG19 conv3_3)``.
- :mod:`~gimbal.baselines.deblurgan.model` - :class:`DeblurGANv2`: generator, discriminator, their two Adam
  optimisers (lr 1e-4), ``training_step`` (``content + adv_weight * adv``, ``adv_weight = 0.001``),
  ``enhance``, atomic ``save`` / checked ``load``; :class:`DeblurGANConfig` is params group ``baselines.deblurgan``.
- :mod:`~gimbal.baselines.deblurgan.train` - the training recipe (full-exposure input, validation, resume);
  imported on its own (``from gimbal.baselines.deblurgan.train import train_deblurgan``): it needs the data path.

Every public name is re-exported here (``from gimbal.baselines.deblurgan import DeblurGANv2``).

Range convention: every public function takes and returns images ``(B, C, H, W)`` float32 in ``[0, 1]``.
Internally the generator and discriminators work on ``x_pm = 2 x - 1`` in ``[-1, 1]`` exactly as the
original, so the residual is ``out = (clamp(x_pm + tanh(f), -1, 1) + 1) / 2`` (i.e. the residual in
``[0, 1]`` units is ``tanh(f) / 2``). The content loss is computed on ``[0, 1]`` images like the original
(it maps back with ``(x + 1) / 2`` before the MSE and VGG terms).

Deviations from the original, all because no pretrained weights can be downloaded and we train from
scratch at tiny sizes on CPU:

- the encoder is randomly initialised (the original starts from ImageNet MobileNetV2); channel widths
  scale with ``width_mult`` and the FPN / head widths are params (paper: 1.0, 128, 64);
- instance norm is the standard one (the original's ``InstanceNorm2d(track_running_stats=True)`` is a
  known quirk that changes behaviour in eval mode); the encoder keeps MobileNetV2's BatchNorm (its train- and
  eval-mode outputs score within 0.1 dB of each other at batch 4, 32 px crops: not a cause of harm);
- the last generator conv is zero-initialised (``identity_init``) so training starts from ``out = input``
  instead of a random residual, which from scratch costs hundreds of steps to undo;
- the prediction pool keeps per-sample mean scores, not whole score maps (equal for fixed-size crops);
- the perceptual term needs VGG19 ImageNet weights given by path (see :class:`VGG19Features`); without
  them a clearly labelled *substitute* structural loss (:class:`StructuralLoss`) is used instead and a
  warning is logged once.
"""

from gimbal.baselines.deblurgan.discriminator import (
    DoubleScaleDiscriminator,
    NLayerDiscriminator,
    PredictionPool,
    ragan_ls_d_loss,
    ragan_ls_g_loss,
)
from gimbal.baselines.deblurgan.generator import (
    FPN,
    PAD_MULTIPLE,
    FPNHead,
    FPNMobileNetGenerator,
    InvertedResidual,
    mobilenet_v2_stages,
)
from gimbal.baselines.deblurgan.losses import ContentLoss, StructuralLoss, VGG19Features, load_vgg19_features
from gimbal.baselines.deblurgan.model import (
    CHECKPOINT_FORMAT,
    PARAM_GROUP,
    POOL_SIZE,
    DeblurGANConfig,
    DeblurGANv2,
    parameter_count,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "FPN",
    "PAD_MULTIPLE",
    "PARAM_GROUP",
    "POOL_SIZE",
    "ContentLoss",
    "DeblurGANConfig",
    "DeblurGANv2",
    "DoubleScaleDiscriminator",
    "FPNHead",
    "FPNMobileNetGenerator",
    "InvertedResidual",
    "NLayerDiscriminator",
    "PredictionPool",
    "StructuralLoss",
    "VGG19Features",
    "load_vgg19_features",
    "mobilenet_v2_stages",
    "parameter_count",
    "ragan_ls_d_loss",
    "ragan_ls_g_loss",
]
