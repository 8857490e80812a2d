"""The one table of methods: every method trained, scored or reported, and everything the pipeline needs of it.

:data:`TABLE` maps a method's name to its :class:`Method`, in the order every table and file lists them
(``metrics/eval.json``, the CSV files, ``reports/paper.md``). Three kinds:

- ``burst``: a model variant of the end-to-end system (sensor + flow + KPN), trained by the one training loop
  (stage ``train_<name>``: ``stages/train.py --variant <name>``) and loaded for evaluation from
  ``models/<name>.pt`` by :func:`gimbal.system.load_system`; its params are the ``model``, ``exposure`` and
  ``loss`` groups with ``variants.<name>`` applied (:attr:`Method.overrides` is the default entry);
- ``single``: a single-image baseline on the full-exposure image, in its own package under
  ``gimbal/baselines/<name>/``: its model (:attr:`Method.model`, a :class:`gimbal.baselines.base.BaselineModel`),
  params group ``baselines.<name>`` (:attr:`Method.config`), the model file read by :attr:`Method.load`, trained
  by :attr:`Method.train` (stage ``train_<name>``: ``stages/train_baseline.py --baseline <name>``);
- ``floor``: an untrained reference image (the full exposure, the learned burst's middle frame).

Adding a method is one entry here, besides its own package (a baseline's), its params in ``params.yaml`` and
its ``train_<name>`` stage in ``dvc.yaml``: :mod:`gimbal.config`, :mod:`gimbal.evaluation.evaluate`,
:mod:`gimbal.evaluation.report` and the stages have no list of their own. Each reads the table when called, so an entry
added at run time (:func:`register`) is seen. The paper's numbers live here (:attr:`Method.paper_psnr`,
:attr:`Method.paper_ssim`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from gimbal.baselines.deblurgan.model import DeblurGANv2
from gimbal.baselines.dmphn.model import DMPHN
from gimbal.errors import ParamError

__all__ = [
    "TABLE",
    "Kind",
    "Method",
    "burst",
    "compared",
    "floors",
    "get",
    "label",
    "names",
    "register",
    "scored",
    "single",
    "table3",
    "trained",
]

Kind = Literal["burst", "single", "floor"]
KINDS: tuple[str, ...] = ("burst", "single", "floor")


@dataclass(frozen=True)
class Method:
    """One method of the table.

    Attributes:
        name: the key of the method everywhere (``models/<name>.pt``, ``train_<name>``, ``psnr_<name>``).
        kind: ``burst``, ``single`` or ``floor`` (module docstring).
        label: its name in figures and CSV files.
        overrides: ``burst``: its default ``variants.<name>`` entry (``{"model": {...}, "exposure": {...},
            "loss": {...}}``); ``params.yaml`` documents it.
        model: ``single``: its model class (built from its params group and ``model.channels`` by its trainer).
        config: ``single``: the dataclass of its params group ``baselines.<name>``.
        load: ``single``: ``load(path, device)`` -> the trained model of a model file (its ``enhance`` is
            scored).
        train: ``single``: its training function as ``"module:function"``, called by
            :func:`gimbal.pipeline.train_baseline` with the groups of its run (:class:`~gimbal.baselines.single.RestorerRun`),
            its params group, the shards folder and the output paths (named rather than imported here because the
            trainers sit in a layer above this table).
        row: its row in the report's Table 1 (``None``: not in Table 1, e.g. a Table 3 ablation).
        paper_psnr: the paper's PSNR in dB (Table 1, or Table 3 for an ablation); ``None`` if none.
        paper_ssim: the paper's SSIM (Table 1); ``None`` if none.
        component: ``(the component, whether the method lacks it)`` for a row of paper Table 3, which compares
            it with :attr:`base`; ``None`` otherwise.
        base: the model a Table 3 row differs from by its component alone (default the full model ``gimbal``;
            e.g. the flow ablation under the annealed loss compares with ``gimbal_anneal``).
        margins: the paired differences ``(a, b)`` reported for it (``a - b`` over the test clips).
        floor_of: ``floor``: the burst method whose exposure-normalized middle frame it is (``None``: not a
            middle frame, e.g. the full exposure); scored when that method is.
        panel: its column in the example grids (ascending, the ground truth last); ``None``: not shown.
        not_run: what the report says when it was not scored (default: "not run").
    """

    name: str
    kind: Kind
    label: str
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model: type | None = None
    config: type | None = None
    load: Callable[[str | os.PathLike[str], torch.device | str], Any] | None = None
    train: str | None = None
    row: str | None = None
    paper_psnr: float | None = None
    paper_ssim: float | None = None
    component: tuple[str, bool] | None = None
    base: str = "gimbal"
    margins: tuple[tuple[str, str], ...] = ()
    floor_of: str | None = None
    panel: int | None = None
    not_run: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.kind == "single" and (self.config is None or self.load is None or self.train is None):
            raise ValueError(f"method {self.name!r}: a single-image method needs config, load and train")


def _deblurgan(path: str | os.PathLike[str], device: torch.device | str) -> DeblurGANv2:
    # the content loss is never used for inference: an identity "feature extractor" skips the VGG19 setup
    return DeblurGANv2.from_checkpoint(path, feature_extractor=torch.nn.Identity(), device=device)


def _dmphn(path: str | os.PathLike[str], device: torch.device | str) -> DMPHN:
    return DMPHN.from_checkpoint(path, device=device)


_UNIFORM = {"idle_slot": False, "init_us": None}
_CENTRED = {"idle_slot": True, "init_us": None, "centre_reference": True}
_ANNEAL = {"anneal": True, "anneal_crossover": 0.2}  # chosen on val (docs/results.md); the paper: 0.40

TIMING_SPLIT: dict[str, tuple[str, str]] = {
    "total": ("gimbal", "gimbal_uniform"),
    "timing": ("gimbal_uniform_centred", "gimbal_uniform"),
    "exposure_lengths": ("gimbal", "gimbal_uniform_centred"),
}
"""The split of ours - uniform: ``timing`` (the uniform burst's reference exposure moved onto the ground-truth
instant T/2, the exposures otherwise equal) plus ``exposure_lengths`` (learned lengths against the centred equal
ones) add up to ``total``; each part is a paired difference ``(a, b)`` of :attr:`Method.margins`."""

TABLE: dict[str, Method] = {m.name: m for m in (
    Method("gimbal", "burst", "Ours (learned exp.)", overrides={},
           row="ours, learned exposures", paper_psnr=31.42, paper_ssim=0.8948, panel=6),
    Method("gimbal_uniform", "burst", "Ours (uniform exp.)",
           overrides={"model": {"learn_exposure": False}, "exposure": _UNIFORM},
           row="ours, uniform exposures", paper_psnr=28.72, component=("exposure learning", True),
           margins=(("gimbal", "gimbal_uniform"),), panel=5),
    Method("gimbal_uniform_centred", "burst", "Ours (uniform exp., reference centred)",
           overrides={"model": {"learn_exposure": False}, "exposure": _CENTRED},
           row="ours, equal exposures, reference centred on T/2 (timing control, not in the paper)",
           margins=(TIMING_SPLIT["timing"], TIMING_SPLIT["exposure_lengths"],
                    ("gimbal_uniform_centred", "middle_frame_centred"))),
    Method("kpn", "burst", "KPN (uniform burst)",
           overrides={"model": {"learn_exposure": False, "use_flow": False}, "exposure": _UNIFORM},
           row="KPN (uniform burst)", paper_psnr=28.46, paper_ssim=0.8296,
           margins=(("gimbal", "kpn"), ("kpn", "full_exposure")), panel=4),
    Method("gimbal_no_flow", "burst", "Ours without flow",
           overrides={"model": {"learn_exposure": True, "use_flow": False}},
           paper_psnr=30.62, component=("flow network, without the annealed loss", True),
           margins=(("gimbal", "gimbal_no_flow"),)),
    Method("gimbal_no_norm", "burst", "Ours without exp. normalization",
           overrides={"model": {"learn_exposure": True, "normalize_exposure": False}},
           paper_psnr=30.96, component=("exposure normalization (eq. 14)", True),
           margins=(("gimbal", "gimbal_no_norm"),)),
    Method("gimbal_anneal", "burst", "Ours with annealed loss",
           overrides={"model": {"learn_exposure": True}, "loss": _ANNEAL},
           paper_psnr=31.18, component=("annealed loss (eq. 18)", False), margins=(("gimbal", "gimbal_anneal"),)),
    Method("gimbal_anneal_no_flow", "burst", "Ours with annealed loss, without flow",
           overrides={"model": {"learn_exposure": True, "use_flow": False}, "loss": _ANNEAL},
           paper_psnr=30.62, component=("flow network, under the annealed loss (the paper's condition)", True),
           base="gimbal_anneal", margins=(("gimbal_anneal", "gimbal_anneal_no_flow"),)),
    Method("deblurgan", "single", "DeblurGAN-v2", model=DeblurGANv2, config=DeblurGANv2.CONFIG, load=_deblurgan,
           train="gimbal.baselines.deblurgan.train:train_deblurgan",
           row="DeblurGAN-v2 (full exposure)", paper_psnr=23.12, paper_ssim=0.7230,
           margins=(("deblurgan", "full_exposure"),), panel=2),
    Method("dmphn", "single", "DMPHN", model=DMPHN, config=DMPHN.CONFIG, load=_dmphn,
           train="gimbal.baselines.dmphn.train:train_dmphn",
           row="DMPHN-1-2-4 (full exposure; trained here, the paper used released GoPro weights)",
           paper_psnr=17.99, margins=(("dmphn", "full_exposure"),), panel=3,
           not_run="not run (models/dmphn.pt missing); the paper applied released GoPro weights, none downloadable "
                   "here"),
    Method("full_exposure", "floor", "Full exposure", row="full exposure (floor, not in the paper)", panel=0),
    Method("middle_frame", "floor", "Middle frame",
           row="middle frame of the learned burst (floor, not in the paper)",
           margins=(("gimbal", "middle_frame"),), floor_of="gimbal", panel=1),
    Method("middle_frame_centred", "floor", "Middle frame (centred burst)",
           row="middle frame of the centred equal burst (floor of the timing control, not in the paper)",
           floor_of="gimbal_uniform_centred"),
)}
"""Method name -> :class:`Method`, in the order of every table (the paper's method, its Table 3 ablations and the
KPN baseline, the single-image baselines, the floors). ``gimbal_anneal`` has the annealed loss (eq. 18) that our
default lacks (the paper's default has it, at a crossover of 40% of the run; here 20%, chosen on val), and
``gimbal_anneal_no_flow`` is the flow ablation under it (the paper's condition); ``gimbal_uniform_centred`` is the
timing control of ours - uniform (:data:`TIMING_SPLIT`), with its own middle-frame floor ``middle_frame_centred``;
the other ablations pin ``learn_exposure: true``, so ``-S model.learn_exposure=false`` (the uniform-exposure
experiment) re-trains only ``gimbal``."""


def register(method: Method) -> Method:
    """Add ``method`` to :data:`TABLE` (last in every table); a name already taken raises :class:`ValueError`."""
    if method.name in TABLE:
        raise ValueError(f"method {method.name!r} is already in the table of methods")
    TABLE[method.name] = method
    return method


def get(name: str) -> Method:
    """The method ``name``; an unknown one raises :class:`ParamError` naming the known ones."""
    if name not in TABLE:
        raise ParamError(f"unknown method '{name}' (methods: {', '.join(TABLE)}); add it to gimbal/methods.py")
    return TABLE[name]


def names(*kinds: str) -> tuple[str, ...]:
    """The names of the methods of ``kinds`` (all if none), in table order."""
    return tuple(n for n, m in TABLE.items() if not kinds or m.kind in kinds)


def burst() -> tuple[str, ...]:
    """The model variants (``models/<variant>.pt``, stage ``train_<variant>``)."""
    return names("burst")


def single() -> tuple[str, ...]:
    """The single-image baselines on the full exposure (``models/<name>.pt``, stage ``train_<name>``)."""
    return names("single")


def trained() -> tuple[str, ...]:
    """Every method with a model file."""
    return names("burst", "single")


def floors() -> tuple[str, ...]:
    """The untrained reference images."""
    return names("floor")


def scored() -> tuple[str, ...]:
    """Every method evaluation can score (trained methods and floors), in table order."""
    return names()


def label(name: str) -> str:
    """The label of method ``name`` in figures and CSV files (``ground_truth``: "Ground truth")."""
    return "Ground truth" if name == "ground_truth" else TABLE[name].label


def table3() -> dict[str, tuple[str, str, bool]]:
    """Method -> ``(its base, the component, whether the method lacks it)`` for every row of paper Table 3, in table
    order (:attr:`Method.component`, :attr:`Method.base`)."""
    return {n: (m.base, *m.component) for n, m in TABLE.items() if m.component is not None}


def compared() -> tuple[tuple[str, str], ...]:
    """Every paired comparison ``(a, b)`` of the methods' :attr:`Method.margins`, in table order."""
    return tuple(pair for m in TABLE.values() for pair in m.margins)
