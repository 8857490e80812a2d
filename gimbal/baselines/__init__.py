"""Baselines the paper compares against (Section 5 / Table 2 of Dahary et al., CVPR 2021).

Modules (import them directly; this package imports nothing eagerly):

- :mod:`gimbal.baselines.deblurgan` - DeblurGAN-v2 (Kupyn et al., ICCV 2019) on the single
  full-exposure image, trained from scratch (no pretrained weights here). A package that re-exports
  all its public names; its parts:

  - ``deblurgan.generator`` - FPN-MobileNetV2 generator (and the shared norm / input-check helpers);
  - ``deblurgan.discriminator`` - double-scale PatchGAN discriminator, RaGAN-LS losses, prediction pool;
  - ``deblurgan.losses`` - content loss: MSE + VGG19 conv3_3 perceptual term (or the structural substitute);
  - ``deblurgan.model`` - :class:`~gimbal.baselines.deblurgan.DeblurGANv2` (training step, enhance,
    checkpoints) and :class:`~gimbal.baselines.deblurgan.DeblurGANConfig` (params group ``baselines.deblurgan``);
  - ``deblurgan.train`` - the training recipe (stage ``train_deblurgan``): the model, user weights and its
    metrics, on the shared loop of :mod:`gimbal.baselines.single`.

- :mod:`gimbal.baselines.dmphn` - DMPHN-1-2-4 (Zhang et al., CVPR 2019) on the same image, trained from
  scratch (the paper applied released GoPro weights): ``dmphn.model`` (network, wrapper, config, checkpoints),
  ``dmphn.train`` (stage ``train_dmphn``).
- :mod:`gimbal.baselines.single` - the one training loop of the single-image baselines (full-exposure input,
  validation on val crops and whole val frames, checkpoint chosen on val, resume, dvclive).

A baseline's recipe uses the shared run machinery (:mod:`gimbal.runtime`, :mod:`gimbal.checkpoint`,
:mod:`gimbal.data.irradiance`) and never imports another loop.
"""
