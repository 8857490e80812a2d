"""Baselines the paper compares against (Section 5 / Table 2 of Dahary et al., CVPR 2021).

Modules (import them directly; this package imports nothing eagerly):

- :mod:`gimbal.baselines.deblurgan` - DeblurGAN-v2 (Kupyn et al., ICCV 2019) on the single
  full-exposure image: FPN-MobileNet generator, double-scale RaGAN-LS discriminator,
  MSE + perceptual + adversarial loss, trained from scratch (no pretrained weights here).
"""
