"""Training: the one loop every model trains through, and the burst models' task.

Modules (import them directly; this package imports nothing eagerly):

- :mod:`gimbal.training.loop` - the one training loop (:func:`~gimbal.training.loop.fit`): resume, validation, the
  checkpoint choice on val, divergence, interrupts; each model brings a small task object;
- :mod:`gimbal.training.burst` - the task of the burst models (ours, its variants and the KPN) and their training
  entry point;
- :mod:`gimbal.training.live` - the dvclive log of a run, replayed on resume.

The single-image baselines' task is :mod:`gimbal.baselines.single`.
"""
