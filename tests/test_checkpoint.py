"""gimbal.checkpoint: the atomic, checksummed writer and the one reader of torch files with one set of errors.

Every expected value is built here independently (tensors compared element by element, files damaged by hand);
none restates the code's formula."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from model_fixtures import flip_tensor_bytes
from torch import nn

import gimbal.checkpoint as ckpt
from gimbal.checkpoint import (
    CHECKSUM_KEY,
    load_checkpoint,
    load_weights,
    read_model_file,
    read_torch_file,
    run_fingerprint,
    save_checkpoint,
    tensors_sha256,
)
from gimbal.errors import (
    DataError,
    ModelFileCorrupt,
    ModelFileError,
    ModelFileIncompatible,
    ModelFileNotFound,
    ModelFileUnreadable,
    ModelFileWrongKind,
)

FIX = "re-train it"


def _state() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"step": 7, "fingerprint": "abc", "name": "toy", "lr": 1e-3, "flags": [True, None],
            "model": {"w": torch.randn(64, 33, generator=g), "b": torch.arange(5, dtype=torch.int64)},
            "history": [[0, {"loss": 1.5}], [5, {"loss": 0.25}]]}


def _same(a, b) -> bool:
    """Deep equality of nested dicts / lists of tensors (exact values, dtype and shape) and plain values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------------------------- round trip
def test_round_trip_gives_back_every_tensor_and_value(tmp_path: Path) -> None:
    state = _state()
    path = tmp_path / "sub" / "state.pt"  # the folder is made
    save_checkpoint(path, state)
    back = read_torch_file(path, "toy file", FIX)
    assert _same(back, state) and CHECKSUM_KEY not in back
    raw = torch.load(path, weights_only=True)  # the file holds the checksum entry besides the state
    assert set(raw) == set(state) | {CHECKSUM_KEY}
    assert _same(load_checkpoint(path), state)


def test_same_state_same_bytes_and_a_changed_value_changes_the_checksum(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.pt", _state())
    save_checkpoint(tmp_path / "b.pt", _state())  # equal content, other objects, other file name
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    other = _state()
    other["model"]["w"][3, 4] += 1e-6
    assert tensors_sha256(other) != tensors_sha256(_state())
    assert tensors_sha256({"x": torch.zeros(4)}) != tensors_sha256({"x": torch.zeros(4, dtype=torch.float64)})
    assert tensors_sha256({"x": torch.zeros(4)}) != tensors_sha256({"x": torch.zeros(2, 2)})


def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state())
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, fh, *args, **kwargs):  # a crash in the middle of writing
        real_save(obj, fh, *args, **kwargs)
        fh.truncate(fh.tell() // 2)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(torch, "save", half_then_fail)
    newer = {**_state(), "step": 8}
    with pytest.raises(OSError):
        save_checkpoint(path, newer)
    assert path.read_bytes() == before and _temps(tmp_path) == []
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "fresh.pt", newer)
    assert not (tmp_path / "fresh.pt").exists() and _temps(tmp_path) == []


# ----------------------------------------------------------------------------------------------- each failure
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(ModelFileNotFound) as err:
        read_torch_file(path, "toy file", FIX, missing_fix="train it first")
    assert str(err.value) == f"{path}: toy file not found; train it first"
    with pytest.raises(ModelFileNotFound, match=f"{FIX}$"):
        read_torch_file(path, "toy file", FIX)  # without a missing_fix: the fix
    assert load_checkpoint(path) is None and not path.exists()


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "a folder"])
def test_a_file_torch_cannot_read(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "bad.pt"
    if damage == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 20)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        save_checkpoint(path, _state())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.mkdir()
    with pytest.raises(ModelFileError) as err:
        read_torch_file(path, "toy file", FIX)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{path}: ") and line.endswith(f"; {FIX}"), line
    assert "weights_only" not in line  # never the advice to unpickle with code execution
    assert isinstance(err.value, ModelFileUnreadable)
    assert isinstance(err.value, DataError)  # what every stage and CLI prints as one line


class _Payload:
    """A pickled object whose unpickling would run code (create a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_code_in_a_file_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Payload(marker)}, path)
    with pytest.raises(ModelFileUnreadable, match="not a PyTorch checkpoint of tensors and plain values"):
        read_torch_file(path, "toy file", FIX)
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as fh:  # a plain pickle, not a torch zip
        pickle.dump(_Payload(marker), fh, protocol=2)
    with pytest.raises(ModelFileUnreadable):
        read_torch_file(tmp_path / "plain.pkl", "toy file", FIX)
    assert not marker.exists()


def test_wrong_kind_is_named_before_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save([torch.zeros(3)], path)  # readable, no checksum, and not a mapping

    def needs_step(state):
        return None if isinstance(state, dict) and "step" in state else "no 'step' entry"

    with pytest.raises(ModelFileWrongKind) as err:
        read_torch_file(path, "training checkpoint", FIX, kind=needs_step)
    assert str(err.value) == f"{path}: not a training checkpoint (no 'step' entry); {FIX}"
    save_checkpoint(path, {"weights": torch.zeros(3)})  # valid checksum, still the wrong kind
    with pytest.raises(ModelFileWrongKind):
        read_torch_file(path, "training checkpoint", FIX, kind=needs_step)


def test_flipped_tensor_bytes_fail_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(path, _state())
    flip_tensor_bytes(path)
    assert not _same(torch.load(path, weights_only=True)["model"], _state()["model"])  # it still loads: wrong
    with pytest.raises(ModelFileCorrupt) as err:
        read_torch_file(path, "toy file", FIX)
    assert str(err.value) == f"{path}: corrupt: tensor checksum mismatch; re-train or restore it"
    # the same check with the checksum off: the damaged tensors come back (what the checksum is for)
    assert not _same(read_torch_file(path, "toy file", FIX, checksum=False)["model"], _state()["model"])


def test_a_file_without_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    weights = {"conv.weight": torch.ones(2, 1, 3, 3)}
    torch.save(weights, path)
    with pytest.raises(ModelFileCorrupt, match=f"^{path}: no '{CHECKSUM_KEY}' entry"):
        read_torch_file(path, "weights file", FIX)
    back = read_torch_file(path, "weights file", FIX, unchecked_reason="weights from elsewhere have none")
    assert _same(back, weights)
    # a damaged checksum key name is refused even where files without one are accepted
    save_checkpoint(tmp_path / "ok.pt", weights)
    data = bytearray((tmp_path / "ok.pt").read_bytes())
    at = data.index(CHECKSUM_KEY.encode())
    data[at + len(CHECKSUM_KEY) - 1] ^= 0x01
    (tmp_path / "renamed.pt").write_bytes(bytes(data))
    with pytest.raises(ModelFileCorrupt, match="checksum entry is named"):
        read_torch_file(tmp_path / "renamed.pt", "weights file", FIX, unchecked_reason="elsewhere")


def test_a_label_names_the_param_in_every_message(tmp_path: Path) -> None:
    label = f"{tmp_path / 'w.pt'} (params 'x.weights')"
    with pytest.raises(ModelFileNotFound, match=r"^.*w\.pt \(params 'x\.weights'\): "):
        read_torch_file(tmp_path / "w.pt", "weights file", FIX, label=label)
    (tmp_path / "w.pt").write_bytes(b"junk")
    with pytest.raises(ModelFileUnreadable, match=r"^.*w\.pt \(params 'x\.weights'\): "):
        read_torch_file(tmp_path / "w.pt", "weights file", FIX, label=label)


def test_read_model_file_checks_the_format_tag(tmp_path: Path) -> None:
    path = tmp_path / "dmphn.pt"
    with pytest.raises(ModelFileNotFound, match="dvc repro train_toy"):
        read_model_file(path, "toy-v1", "Toy", "train_toy")
    save_checkpoint(path, {"format": "toy-v2", "config": {}, "w": torch.zeros(1)})
    with pytest.raises(ModelFileWrongKind, match="not a Toy checkpoint .*'toy-v1'.*delete it and re-train"):
        read_model_file(path, "toy-v1", "Toy", "train_toy")
    save_checkpoint(path, {"format": "toy-v1", "config": {"width": 3}, "w": torch.ones(2)})
    assert read_model_file(path, "toy-v1", "Toy", "train_toy")["config"] == {"width": 3}


# ----------------------------------------------------------------------------------------------- into a module
def test_load_weights_loads_the_same_tensors_and_refuses_what_does_not_fit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src, dst = nn.Linear(4, 3), nn.Linear(4, 3)
    assert not torch.equal(src.weight, dst.weight)
    save_checkpoint(tmp_path / "lin.pt", {"net": src.state_dict()})
    state = read_torch_file(tmp_path / "lin.pt", "toy file", FIX)
    assert load_weights(dst, state["net"], tmp_path / "lin.pt", "the toy", FIX) is dst
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, src.bias)
    x = torch.randn(5, 4)
    assert torch.equal(dst(x), src(x))
    for bad, why in (({"weight": torch.zeros(3, 5), "bias": torch.zeros(3)}, "size mismatch"),
                     ({"weight": torch.zeros(3, 4)}, "Missing key"),
                     ([1, 2], "")):
        with pytest.raises(ModelFileIncompatible) as err:
            load_weights(nn.Linear(4, 3), bad, "lin.pt", "the toy", FIX)
        line = str(err.value)
        assert line.startswith("lin.pt: weights do not fit the toy (") and line.endswith(f"; {FIX}"), line
        assert why in line and "\n" not in line


# ----------------------------------------------------------------------------------------------- resume files
def test_load_checkpoint_moves_each_bad_file_aside_under_its_own_name(tmp_path: Path, caplog) -> None:
    path = tmp_path / "last.pt"
    contents = [b"junk one", b"junk two"]
    for junk in contents:
        path.write_bytes(junk)
        with caplog.at_level("WARNING"):
            assert load_checkpoint(path) is None
        assert not path.exists() and str(path) in caplog.text
    assert (tmp_path / "last.pt.corrupt").read_bytes() == contents[0]
    assert (tmp_path / "last.pt.corrupt.1").read_bytes() == contents[1]
    save_checkpoint(path, {"weights": torch.zeros(2)})  # readable, checksummed, but not a training checkpoint
    assert load_checkpoint(path) is None and (tmp_path / "last.pt.corrupt.2").is_file()


def test_run_fingerprint_follows_the_params() -> None:
    assert run_fingerprint({"lr": 1e-3, "steps": 5}) == run_fingerprint({"steps": 5, "lr": 1e-3})
    assert run_fingerprint({"lr": 1e-3}) != run_fingerprint({"lr": 2e-3})


def test_every_torch_load_in_the_package_goes_through_the_reader() -> None:
    """One reader: ``torch.load`` is called in gimbal/checkpoint.py only (the RIFE weights of the wheel too)."""
    root = Path(ckpt.__file__).resolve().parent
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "torch.load(" in p.read_text()
                     and p.name != "checkpoint.py")
    assert callers == []


def test_a_baseline_checkpoint_of_another_architecture_or_kind(tmp_path: Path) -> None:
    """The baselines' model files go through the same reader and the same errors."""
    from gimbal.baselines.dmphn import DMPHN, DMPHNConfig

    path = tmp_path / "dmphn.pt"
    DMPHN(DMPHNConfig(base_channels=8)).save(path)
    with pytest.raises(ModelFileIncompatible, match=f"^{path}: DMPHN checkpoint has a different architecture"):
        DMPHN(DMPHNConfig(base_channels=16)).load(path)
    assert DMPHN.from_checkpoint(path).config.base_channels == 8
    with pytest.raises(ModelFileNotFound, match="dvc repro train_dmphn"):
        DMPHN.from_checkpoint(tmp_path / "nope.pt")
    save_checkpoint(tmp_path / "gimbal.pt", {"variant": "gimbal", "system": {"w": torch.zeros(1)}})
    with pytest.raises(ModelFileWrongKind, match="not a DMPHN checkpoint"):
        DMPHN.from_checkpoint(tmp_path / "gimbal.pt")
