"""Planning: the Fig. 9 sweep of light x shake, and the exposure schedule read off it for a working point.

Modules (import them directly; this package imports nothing eagerly):

- :mod:`gimbal.planning.working_point` - a result's working point: e-bar, d-bar and the content's own motion;
- :mod:`gimbal.planning.fig9` - paper Fig. 9: the learned model retrained at each light level x camera shake;
- :mod:`gimbal.planning.plan` - ``gimbal plan``: the schedule, merge model and expected PSNR at a working point,
  interpolated on the sweep's grid;
- :mod:`gimbal.planning.fig9_heldout` - the held-out validation of ``gimbal plan`` between the grid's cells.
"""
