"""Evaluation: every method scored on the held-out test scenes, and the paper's tables beside ours.

Modules (import them directly; this package imports nothing eagerly):

- :mod:`gimbal.evaluation.evaluate` - the test-set table: every method scored on the same scenes, with intervals
  and paired margins, per-clip scores and figures;
- :mod:`gimbal.evaluation.stats` - bootstrap intervals over the test clips and paired differences;
- :mod:`gimbal.evaluation.plots` - the evaluation figures (score bars, example grids);
- :mod:`gimbal.evaluation.report` - the paper's Table 1 and Table 3 beside ours.

The params group ``eval`` lives outside this package, in :mod:`gimbal.eval_config`: the config parser, a layer
below evaluation, builds it.
"""
