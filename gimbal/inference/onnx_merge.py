"""The merge (eq. 14 + flow + KPN, eqs. 14-17) as an ONNX graph, and running it with onnxruntime.

``gimbal export --onnx OUT --model M`` writes the graph :class:`MergeGraph` of a trained model:

* inputs: ``burst`` ``(B, n, C, H, W)`` float32, the raw burst in [0, 1] DN (``DN / (2^m - 1)``, as ``gimbal infer``
  feeds it), and ``exposures_us`` ``(n,)`` float32, the exposure of each frame in microseconds. The exposures are
  inputs, not baked in: eq. (14) scales frame i by ``T / dt_i`` inside the graph (``T``, the model's budget, is a
  constant of it), so a burst captured with another schedule runs on the same file. A model trained without
  eq. (14) has no ``exposures_us`` input. With ``model.flow_norm`` or ``model.kpn_norm`` (the defaults), a third
  input ``input_scale`` ``(B,)`` float32: twice the mean of the exposure-normalized reference frame ``n // 2`` of the
  *whole* image (``burst[:, n // 2] * T / dt_{n // 2}``, at least 1e-3), which the flow network's and the KPN's
  inputs are divided by; a tiled caller computes it once for the image, so all tiles agree.
* outputs: ``image`` ``(B, C, H, W)`` display space (the model's display curve), ``linear`` ``(B, C, H, W)`` the
  eq. (15) merge, and, for models with a flow network, ``flows`` ``(B, n-1, 2, H, W)`` in pixels.
* ``B``, ``H`` and ``W`` are dynamic (any size >= 1; the graph pads to the network's multiple and crops back).
* metadata (``metadata_props``): ``gimbal.variant``, ``gimbal.params`` (the stored params, JSON),
  ``gimbal.exposures`` (the learned schedule, JSON as ``gimbal schedule --json``), ``gimbal.budget_us``.

``gimbal infer --backend onnx --model OUT`` runs it through :class:`OnnxSystem` (tiling included: the tiles are
planned from the network the params describe, whose weights are never needed).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gimbal.errors import DataError
from gimbal.inference.frame_files import UsageError
from gimbal.io import atomic_path
from gimbal.models.net import GimbalNet, GimbalOutput
from gimbal.system import GimbalSystem, exposure_report, load_system, read_system_file, whole_input_scale

log = logging.getLogger("gimbal.onnx")

OPSET = 18
INSTALL_HINT = "install the onnx extra: pip install 'gimbal[onnx]' (onnx, onnxruntime, onnxscript)"


class MergeGraph(nn.Module):
    """What the ONNX file computes: ``(burst, exposures_us) -> (image, linear[, flows])``, see the module docstring.

    Args:
        system: a trained :class:`GimbalSystem` (only its network, budget and ``normalize`` are used).
    """

    def __init__(self, system: GimbalSystem) -> None:
        super().__init__()
        self.net = system.net
        self.normalize = system.normalize
        self.budget_us = float(system.sensor.camera.budget_s * 1e6)

    def forward(self, burst: torch.Tensor, exposures_us: torch.Tensor,
                input_scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = burst * (self.budget_us / exposures_us).view(1, -1, 1, 1, 1) if self.normalize else burst  # eq. (14)
        out = self.net(x, input_scale)
        return (out.image, out.linear) if out.flows is None else (out.image, out.linear, out.flows)


def _import_onnx(export: bool = False) -> Any:
    """The ``onnx`` module, once ``onnxruntime`` (and for ``export`` torch's exporter, ``onnxscript``) import;
    else a :class:`UsageError` naming the missing package and the extra to install."""
    try:
        import onnx
        import onnxruntime  # noqa: F401

        if export:
            import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"ONNX support needs the packages onnx and onnxruntime (and onnxscript to export; "
                         f"{exc.name} is missing); {INSTALL_HINT}") from exc
    return onnx


def export_onnx(model: str | os.PathLike[str], out: str | os.PathLike[str], opset: int = OPSET) -> dict[str, Any]:
    """Export the merge of ``model`` (a ``models/<variant>.pt``) to the ONNX file ``out`` (written atomically), then
    check it: onnxruntime on a random burst at two sizes must match PyTorch within 1e-3.

    Returns:
        ``{"path", "inputs", "outputs", "max_abs_diff"}`` (the largest difference of ``image`` and ``linear`` over
        the check).
    """
    onnx = _import_onnx(export=True)
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"--onnx {out}: give a file name ending in .onnx")
    if out.is_dir():
        raise UsageError(f"--onnx {out}: is a directory; give a file name")
    if not out.parent.is_dir():
        raise UsageError(f"--onnx {out}: directory {out.parent} does not exist; create it first or write elsewhere")
    system = load_system(model)
    stored = read_system_file(model)  # load_system read and checked it
    schedule = exposure_report(system, stored["variant"])
    graph = MergeGraph(system).eval()
    net = system.net
    n, c, m = net.n, net.channels, net.multiple
    example = (torch.rand(2, n, c, 2 * m + 3, 2 * m + 5, generator=torch.Generator().manual_seed(0)),
               torch.tensor(schedule["durations_us"], dtype=torch.float32), torch.tensor([0.3, 0.5]))
    dyn = torch.export.Dim.DYNAMIC
    inputs = (["burst", "exposures_us"] if system.normalize else ["burst"]) + (["input_scale"] if net.scales_input
                                                                               else [])
    outputs = ["image", "linear"] + (["flows"] if net.flow is not None else [])
    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # the exporter's notes (torchvision ops it skips) are not the user's business
    try:
        with atomic_path(out) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, example, dynamo=True, input_names=["burst", "exposures_us", "input_scale"],
                                        output_names=outputs,
                                        dynamic_shapes=({0: dyn, 3: dyn, 4: dyn}, None, {0: dyn}),
                                        opset_version=opset, verbose=False)
            proto = program.model_proto
            meta = {"gimbal.variant": stored["variant"], "gimbal.params": json.dumps(stored["params"], sort_keys=True),
                    "gimbal.exposures": json.dumps(schedule, sort_keys=True),
                    "gimbal.budget_us": repr(graph.budget_us)}
            for key, value in meta.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save_model(proto, str(tmp))
            diff = _check_parity(graph, tmp, example[1])
    finally:
        torch_log.setLevel(level)
    log.info("wrote %s (inputs %s, outputs %s; onnxruntime vs PyTorch at two sizes: max abs diff %.2g)", out,
             ", ".join(inputs), ", ".join(outputs), diff)
    return {"path": out, "inputs": inputs, "outputs": outputs, "max_abs_diff": diff}


PARITY_TOL = 1e-3


@torch.inference_mode()
def _check_parity(graph: MergeGraph, path: Path, exposures_us: torch.Tensor) -> float:
    """Largest |onnxruntime - PyTorch| of ``image`` and ``linear`` on random bursts of two sizes, each with its own
    ``input_scale`` as a caller computes it (a scale far from the burst's puts the networks' inputs far outside
    what they were trained on, where float32 rounding grows); raise :class:`DataError` beyond :data:`PARITY_TOL`
    (the export is then not written)."""
    session = _session(path, "cpu")
    worst = 0.0
    g = torch.Generator().manual_seed(1)
    for h, w in ((37, 45), (64, 29)):
        burst = torch.rand(1, graph.net.n, graph.net.channels, h, w, generator=g)
        scale = whole_input_scale(graph.net, graph.budget_us * 1e-6, graph.normalize, burst,
                                  exposures_us.double() * 1e-6).float()
        ref = graph(burst, exposures_us, scale)
        got = _run(session, burst.numpy(), exposures_us.numpy(), scale.numpy())
        worst = max(worst, *(float(np.abs(got[i] - ref[i].numpy()).max()) for i in range(2)))
    if not worst <= PARITY_TOL:
        raise DataError(f"{path}: the exported graph differs from PyTorch by {worst:.3g} (more than {PARITY_TOL:g}); "
                        "the export is not usable with this onnx/onnxruntime version")
    return worst


def _session(path: str | os.PathLike[str], device: str) -> Any:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    threads = torch.get_num_threads()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def _run(session: Any, burst: np.ndarray, exposures_us: np.ndarray, input_scale: np.ndarray) -> list[np.ndarray]:
    names = {i.name for i in session.get_inputs()}
    feed = {"burst": np.ascontiguousarray(burst, dtype=np.float32)}
    if "exposures_us" in names:
        feed["exposures_us"] = np.ascontiguousarray(exposures_us, dtype=np.float32)
    if "input_scale" in names:
        feed["input_scale"] = np.ascontiguousarray(input_scale, dtype=np.float32).reshape(-1)
    return session.run(None, feed)


class OnnxSystem:
    """A trained merge read from its ONNX file, shaped like a :class:`GimbalSystem` for
    :func:`gimbal.inference.infer.reconstruct_burst` and :func:`gimbal.inference.tiling.reconstruct_tiled`: ``sensor``
    and ``net`` are built from the stored params (camera, structure and tile geometry; their weights are not used), and
    :meth:`reconstruct` runs onnxruntime.

    Attributes:
        schedule: the model's learned schedule (``gimbal.exposures``).
        variant: the model's variant.
    """

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu") -> None:
        onnx = _import_onnx()
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: ONNX file not found; write it with `gimbal export --onnx {path.name} --model "
                            "models/<variant>.pt` or pass the right --model path")
        try:
            proto = onnx.load_model(str(path), load_external_data=False)
            meta = {p.key: p.value for p in proto.metadata_props}
            params = json.loads(meta["gimbal.params"])
            self.schedule: dict[str, Any] = json.loads(meta["gimbal.exposures"])
            self.variant: str = meta["gimbal.variant"]
        except KeyError as exc:
            raise DataError(f"{path}: an ONNX file without gimbal's metadata ({exc.args[0]} missing); export it with "
                            "`gimbal export --onnx`") from exc
        except Exception as exc:
            raise DataError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {str(exc)[:120]}); export it "
                            "again with `gimbal export --onnx`") from exc
        skeleton = GimbalSystem.from_params(params, self.variant).eval()
        self.sensor = skeleton.sensor
        self.net: GimbalNet = skeleton.net
        self.normalize = skeleton.normalize
        try:
            self.session = _session(path, device)
        except Exception as exc:
            raise DataError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:160]}); export it again "
                            "with `gimbal export --onnx`") from exc

    def parameters(self) -> Iterator[torch.Tensor]:
        """Where :func:`reconstruct_tiled` sends the tiles: the CPU (onnxruntime takes numpy arrays)."""
        yield torch.zeros(())

    def eval(self) -> OnnxSystem:
        return self

    def _durations(self, durations_s: torch.Tensor | None) -> torch.Tensor:
        if durations_s is None:
            return torch.tensor(self.schedule["durations_us"], dtype=torch.float64) * 1e-6
        return durations_s.detach().cpu()

    def input_scale(self, burst: torch.Tensor, durations_s: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` the graph's ``input_scale`` input for a whole burst (:meth:`GimbalSystem.input_scale`)."""
        return whole_input_scale(self.net, self.sensor.camera.budget_s, self.normalize, burst.detach().cpu(),
                                self._durations(durations_s))

    def reconstruct(self, burst: torch.Tensor, durations_s: torch.Tensor | None = None,
                    input_scale: torch.Tensor | None = None) -> GimbalOutput:
        """onnxruntime on ``burst (B, n, C, H, W)`` in [0, 1] DN with exposures ``durations_s (n,)`` s;
        ``input_scale (B,)``: see :meth:`input_scale` (``None``: this burst's)."""
        durations_s = self._durations(durations_s)
        if input_scale is None:
            input_scale = self.input_scale(burst, durations_s)
        got = _run(self.session, burst.detach().cpu().numpy(), (durations_s * 1e6).float().numpy(),
                   input_scale.detach().cpu().float().numpy())
        image, linear = torch.from_numpy(got[0]), torch.from_numpy(got[1])
        flows = torch.from_numpy(got[2]) if len(got) > 2 else None
        return GimbalOutput(image=image, align_estimate=image, linear=linear, flows=flows)
