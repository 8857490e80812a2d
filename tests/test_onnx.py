"""``gimbal export --onnx`` and ``gimbal infer --backend onnx``: the merge run by onnxruntime equals PyTorch's.

One small trained-shape model (flow + KPN, mono, like the default) is exported once for the module (the export
itself takes a while); parity is checked on the shipped sample burst, at a second size (the graph's height and
width are dynamic), tiled, and from the raw ONNX session as a camera computer would call it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx
import onnxruntime as ort

from gimbal.cli import main
from gimbal.inference.frame_files import read_frame
from gimbal.inference.onnx_merge import OnnxSystem
from gimbal.inference.tiling import reconstruct_tiled, tile_margin
from gimbal.system import GimbalSystem, load_system, save_system

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "burst"
FRAMES = [str(SAMPLE / f"frame_{i}.png") for i in (1, 2, 3)]
EXPOSURES = (SAMPLE / "exposures_us.txt").read_text().split()
#: max |onnxruntime - PyTorch| allowed; measured on the sample burst with the default trained model: 2.9e-7 in image,
#: 2.4e-7 in linear (float32 rounding; docs/inference.md)
PARITY_TOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("onnx")
    params = {"seed": 0, "exposure": {"n": 3, "idle_slot": True, "init_us": [float(e) for e in EXPOSURES]},
              "model": {"channels": 1, "kpn_base_channels": 4, "kpn_depth": 1, "flow_levels": 2,
                        "flow_channels": [4, 4, 4]}, "variants": {"gimbal": {}}}
    torch.manual_seed(0)
    system = GimbalSystem.from_params(params)
    with torch.no_grad():  # weights away from the identity init, so the flow and the kernels matter
        for p in system.net.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    save_system(d / "m.pt", system, params, "gimbal")
    assert main(["export", "--onnx", str(d / "m.onnx"), "--model", str(d / "m.pt"), "-q"]) == 0
    return d / "m.pt", d / "m.onnx"


def infer(model: Path, out: Path, backend: str, *extra: str) -> np.ndarray:
    assert main(["infer", "--frames", *FRAMES, "--exposures-us", *EXPOSURES, "--camera", "jetcam19m", "--model",
                 str(model), "--backend", backend, "-o", str(out), "-q", *extra]) == 0
    return np.load(out)


def test_graph_inputs_outputs_and_metadata(exported):
    pt, path = exported
    proto = onnx.load(str(path))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    # the exposures are an input, not baked in; so is the flow network's input scale (the whole image's, for tiles)
    assert set(inputs) == {"burst", "exposures_us", "input_scale"}
    assert inputs["burst"][1:3] == [3, 1] and all(isinstance(d, str) for d in (inputs["burst"][i] for i in (0, 3, 4)))
    assert [o.name for o in proto.graph.output] == ["image", "linear", "flows"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["gimbal.exposures"])["durations_us"] == torch.load(pt, weights_only=True)["exposures"][
        "durations_us"]


def test_parity_with_torch_on_the_sample_burst(exported, tmp_path):
    pt, path = exported
    a = infer(pt, tmp_path / "torch.npy", "torch", "--output-linear", str(tmp_path / "tl.npy"))
    b = infer(path, tmp_path / "onnx.npy", "onnx", "--output-linear", str(tmp_path / "ol.npy"))
    assert a.shape == b.shape == (160, 224, 1)
    assert np.abs(a - b).max() <= PARITY_TOL
    assert np.abs(np.load(tmp_path / "tl.npy") - np.load(tmp_path / "ol.npy")).max() <= PARITY_TOL
    assert a.std() > 0.01  # a real image, not a constant


@pytest.mark.parametrize("size", [(160, 224), (47, 61)])
def test_session_dynamic_size_and_exposures_as_input(exported, size):
    """Called as a camera computer would (onnxruntime only): any height and width; other exposures change the
    result as eq. 14 says (half the exposures, half the raw values: the same merge)."""
    pt, path = exported
    system = load_system(pt)
    g = torch.Generator().manual_seed(0)
    burst = torch.rand(1, 3, 1, *size, generator=g) * 0.3
    exp = torch.tensor([float(e) for e in EXPOSURES])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scale = system.input_scale(burst, exp.double() * 1e-6).float().numpy()
    image, linear, flows = session.run(None, {"burst": burst.numpy(), "exposures_us": exp.numpy(),
                                              "input_scale": scale})
    with torch.no_grad():
        ref = system.reconstruct(burst, exp.double() * 1e-6)
    assert linear.shape == (1, 1, *size) and flows.shape == (1, 2, 2, *size)
    assert np.abs(linear - ref.linear.numpy()).max() <= PARITY_TOL
    assert np.abs(image - ref.image.numpy()).max() <= PARITY_TOL
    half_scale = system.input_scale(burst / 2, exp.double() * 0.5e-6).float().numpy()
    np.testing.assert_allclose(half_scale, scale, rtol=1e-6)  # eq. 14 gives the same normalized reference
    half = session.run(None, {"burst": (burst / 2).numpy(), "exposures_us": (exp / 2).numpy(),
                              "input_scale": half_scale})[1]
    np.testing.assert_allclose(half, linear, atol=1e-5)


def test_tiled_onnx_equals_untiled_torch(exported):
    """The tiling runs the ONNX session tile by tile (the same code path as `gimbal infer --backend onnx` on frames
    larger than --max-memory-gb allows); with the receptive-field margin the result is the untiled merge."""
    pt, path = exported
    onnx_system = OnnxSystem(path)
    margin = tile_margin(onnx_system.net, 4.0)
    overlap = margin * 2 + 16
    burst = torch.from_numpy(np.stack([read_frame(f) for f in FRAMES]).astype(np.float32) / 1023)[None, :, None]
    durations = torch.tensor([float(e) for e in EXPOSURES], dtype=torch.float64) * 1e-6
    tiled = reconstruct_tiled(onnx_system, burst, durations, tile=overlap + 32, overlap=overlap, margin=margin)
    assert tiled.tiles > 1
    with torch.no_grad():
        ref = load_system(pt).reconstruct(burst, durations)
    assert float((tiled.linear - ref.linear).abs().max()) <= 1e-3


def test_backend_and_file_kind_must_agree(exported, tmp_path, capsys):
    pt, path = exported
    for model, backend, word in ((pt, "onnx", "gimbal export --onnx"), (path, "torch", "--backend onnx")):
        assert main(["infer", "--frames", *FRAMES, "--exposures-us", *EXPOSURES, "--model", str(model), "--backend",
                     backend, "-o", str(tmp_path / "x.png")]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and word in err[0], err
    assert main(["export", "--onnx", str(tmp_path / "x.bin"), "--model", str(pt)]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.bin").exists()


def test_missing_onnx_packages_name_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    assert main(["export", "--onnx", str(tmp_path / "m.onnx"), "--model", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime is missing" in err and "gimbal[onnx]" in err, err
    assert not (tmp_path / "m.onnx").exists()
