"""Checkpoints and resume, for every training loop.

- :func:`save_checkpoint` writes atomically (temp file, fsync, rename): a kill mid-write leaves the last good
  checkpoint in place. It is how every checkpoint and model file is written (training resume state,
  ``models/<variant>.pt``, DeblurGAN-v2), each with the sha256 of its content (:func:`tensors_sha256`) that
  :func:`verify_checksum` checks on load: flipped bytes inside a tensor still unpickle, to wrong weights.
- :func:`read_torch_file` is the one reader of a torch file (model files, training checkpoints, baselines' model
  files and pretrained weights): ``weights_only=True``, and every failure one of the
  :class:`~gimbal.errors.ModelFileError` subclasses whose message names the file and the fix;
  :func:`load_weights` puts weights into a module with the same errors.
- :func:`load_checkpoint` reads one back; an unreadable file is reported by name and moved aside to
  ``<name>.corrupt`` (``<name>.corrupt.1``, ``.2``, ... when that is taken: none is overwritten), so training
  starts fresh instead of failing until someone deletes it.
- :func:`run_fingerprint` hashes what determines a run (its params and the package's code): a checkpoint
  of other params or code is not resumed.
- :class:`Resumable` is the checkpoint state that is not a model's: the data generator, torch's global RNG and
  any other named RNG, the history of the logged metrics, and the best model seen on val so far
  (:meth:`Resumable.offer`: the checkpoint choice of the loop, :func:`gimbal.training.loop.fit`). A run killed and rerun
  ends with the same weights, the same choice and the same logs as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from gimbal.errors import (
    ModelFileCorrupt,
    ModelFileError,
    ModelFileIncompatible,
    ModelFileNotFound,
    ModelFileUnreadable,
    ModelFileWrongKind,
)
from gimbal.io import save_torch_atomic

__all__ = ["CHECKSUM_KEY", "Resumable", "checkpoint_reason", "code_fingerprint", "load_checkpoint", "load_weights",
           "read_model_file", "read_torch_file", "run_fingerprint", "save_checkpoint", "tensors_sha256",
           "verify_checksum"]

log = logging.getLogger(__name__)


#: the entry of a saved state that holds :func:`tensors_sha256` of the rest
CHECKSUM_KEY = "tensors_sha256"


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, Mapping):
        digest.update(f"D{len(obj)}:".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"L{len(obj)}:".encode())
        for value in obj:
            _feed(digest, value)
    else:  # plain values (str, int, float, bool, None): their repr is exact and stable
        digest.update(f"V{type(obj).__name__}:{obj!r};".encode())


def tensors_sha256(state: Any) -> str:
    """Hex sha256 of a state's content: every tensor's dtype, shape and bytes (on the CPU, contiguous) and every
    plain value and key, walked in order. Deterministic, so the same weights give the same model file bytes,
    and independent of the device the state was loaded to."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def verify_checksum(state: Any, path: str | os.PathLike[str], unchecked_reason: str | None = None) -> Any:
    """``state`` as read by ``torch.load`` from ``path``, checked against its :data:`CHECKSUM_KEY` entry and
    returned without it.

    Raises :class:`~gimbal.errors.ModelFileCorrupt` naming ``path`` on a mismatch, and on a state without the entry:
    a flipped byte in the entry's own name would otherwise turn the check off. Only a caller that reads files gimbal
    did not write passes ``unchecked_reason`` (why such files come without a checksum, e.g. pretrained weights from
    elsewhere): a state without the entry is then returned as it is, unchecked, unless one of its keys is a damaged
    :data:`CHECKSUM_KEY` (same length, a few characters off), which is refused still.
    """
    if not isinstance(state, dict) or CHECKSUM_KEY not in state:
        damaged = [k for k in state if _near_checksum_key(k)] if isinstance(state, dict) else []
        if damaged:
            raise ModelFileCorrupt(f"{path}: corrupt: its checksum entry is named {damaged[0]!r} instead of "
                                   f"{CHECKSUM_KEY!r}, so its tensors cannot be checked; re-train or restore it")
        if unchecked_reason is None:
            raise ModelFileCorrupt(f"{path}: no {CHECKSUM_KEY!r} entry, so its tensors cannot be checked (a file "
                                   "damaged, written by other code or before checksums); re-train or restore it")
        return state
    body = {k: v for k, v in state.items() if k != CHECKSUM_KEY}
    if state[CHECKSUM_KEY] != tensors_sha256(body):
        raise ModelFileCorrupt(f"{path}: corrupt: tensor checksum mismatch; re-train or restore it")
    return body


def _near_checksum_key(key: Any) -> bool:
    """True for a key that is :data:`CHECKSUM_KEY` with up to 3 characters changed (a damaged name)."""
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    if not isinstance(key, str) or len(key) != len(CHECKSUM_KEY) or key == CHECKSUM_KEY:
        return False
    return sum(a != b for a, b in zip(key, CHECKSUM_KEY, strict=True)) <= 3


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically and byte-stably write ``state`` (tensors and plain values) to ``path``, with its
    :func:`tensors_sha256` under :data:`CHECKSUM_KEY` (read it back through :func:`verify_checksum`)."""
    save_torch_atomic(path, {**state, CHECKSUM_KEY: tensors_sha256(state)})


def checkpoint_reason(exc: BaseException) -> str:
    """Why ``torch.load`` (or ``load_state_dict``) failed, in a few words: the exception type and the first line of
    its message, without PyTorch's advice to retry with ``weights_only=False`` (that would run code from the file)."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if "weights_only" in str(exc) or "Weights only load failed" in first:
        first = "not a PyTorch checkpoint of tensors and plain values"
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def read_torch_file(path: str | os.PathLike[str], what: str, fix: str, *, missing_fix: str | None = None,
                    label: str | None = None, device: torch.device | str = "cpu",
                    kind: Callable[[Any], str | None] | None = None, checksum: bool = True,
                    unchecked_reason: str | None = None) -> Any:
    """The state stored in the torch file at ``path``, read with ``weights_only=True`` (nothing in the file runs),
    its tensors mapped to ``device``. The one reader of model files, training checkpoints and pretrained weights.

    Every failure is a :class:`~gimbal.errors.ModelFileError` whose one-line message starts with ``label``
    (default: the path) and ends with the fix:

    - :class:`~gimbal.errors.ModelFileNotFound`: ``<label>: <what> not found; <missing_fix or fix>``;
    - :class:`~gimbal.errors.ModelFileUnreadable` (not a torch file, truncated, objects other than tensors and
      plain values): ``<label>: not a <what>, or a damaged one: torch cannot read it (<reason>); <fix>``;
    - :class:`~gimbal.errors.ModelFileWrongKind`, when ``kind(state)`` names a problem (another format, a missing
      key): ``<label>: not a <what> (<problem>); <fix>``;
    - :class:`~gimbal.errors.ModelFileCorrupt` from :func:`verify_checksum` (when ``checksum``): the tensors do not
      match the file's checksum, or it has none (unless ``unchecked_reason`` says why such files come without one).

    Returns the state without its checksum entry. Weights go into a module with :func:`load_weights`.
    """
    path = Path(path)
    label = str(path) if label is None else label
    if path.is_dir():
        raise ModelFileUnreadable(f"{label}: a folder, not a {what}; {fix}")
    if not path.is_file():
        raise ModelFileNotFound(f"{label}: {what} not found; {missing_fix or fix}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise ModelFileUnreadable(f"{label}: not a {what}, or a damaged one: torch cannot read it "
                                  f"({checkpoint_reason(exc)}); {fix}") from exc
    problem = kind(state) if kind is not None else None
    if problem:
        raise ModelFileWrongKind(f"{label}: not a {what} ({problem}); {fix}")
    return verify_checksum(state, label, unchecked_reason) if checksum else state


def load_weights(module: torch.nn.Module, state: Any, label: str | os.PathLike[str], target: str, fix: str,
                 strict: bool = True) -> torch.nn.Module:
    """``module.load_state_dict(state)``; weights that do not fit (missing or unexpected names, other shapes, not a
    state dict) raise :class:`~gimbal.errors.ModelFileIncompatible`:
    ``<label>: weights do not fit <target> (<reason>); <fix>``. Returns ``module``."""
    try:
        module.load_state_dict(state) if strict else module.load_state_dict(state, strict=False)
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # one line: every problem
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise ModelFileIncompatible(f"{label}: weights do not fit {target} ({reason[:400]}); {fix}") from exc
    return module


def read_model_file(path: str | os.PathLike[str], fmt: str, what: str, stage: str) -> dict[str, Any]:
    """The model file at ``path`` written by :func:`save_checkpoint` with format tag ``fmt`` and a ``config`` dict
    (a baseline's ``save``), checksum verified (:func:`read_torch_file`, ``what`` e.g. ``"DMPHN"``): missing (the
    fix: ``dvc repro <stage>``), unreadable, corrupt or of another format raise a
    :class:`~gimbal.errors.ModelFileError` naming the file."""
    def problem(state: Any) -> str | None:
        if isinstance(state, dict) and state.get("format") == fmt and isinstance(state.get("config"), dict):
            return None
        return f"expected format {fmt!r} with its config"

    return read_torch_file(path, f"{what} checkpoint", "delete it and re-train",
                           missing_fix=f"train it first with `dvc repro {stage}`", kind=problem)


def _training_problem(state: Any) -> str | None:
    if not isinstance(state, dict):
        return f"top level is {type(state).__name__}"
    missing = [k for k in ("step", "fingerprint") if k not in state]
    return f"no {missing[0]!r} entry" if missing else None


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path`` (a dict with ``step``), or ``None`` when there is none.

    A file that :func:`read_torch_file` refuses (unreadable, tensors that fail their checksum, not a training
    checkpoint) is reported by name, moved aside and ignored. It goes to the first free name of ``<name>.corrupt``,
    ``<name>.corrupt.1``, ``<name>.corrupt.2``, ...: an earlier corrupt file is kept, not overwritten.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return read_torch_file(path, "training checkpoint", "training starts from step 0", device=device,
                               kind=_training_problem)
    except ModelFileNotFound:  # removed since the check above
        return None
    except ModelFileError as exc:
        aside = _free_corrupt_name(path)
        os.replace(path, aside)
        log.warning("%s: unreadable checkpoint (%s: %s); moved to %s, training starts from step 0",
                    path, type(exc).__name__, str(exc)[:300], aside)
        return None


def _free_corrupt_name(path: Path) -> Path:
    """The first of ``<name>.corrupt``, ``<name>.corrupt.1``, ... that does not exist beside ``path``."""
    aside = path.with_name(f"{path.name}.corrupt")
    k = 0
    while aside.exists() or aside.is_symlink():
        k += 1
        aside = path.with_name(f"{path.name}.corrupt.{k}")
    return aside


def code_fingerprint() -> str:
    """sha256 of the gimbal package's source: a checkpoint from other code is not resumed."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def run_fingerprint(relevant: Any) -> str:
    """Hash of what determines a training run: ``relevant`` (its params, JSON-serialisable) plus the code."""
    blob = json.dumps({"params": relevant, "code": code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of a state (nested dicts / lists of tensors and plain values) with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return {key: _cpu_copy(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(value) for value in obj)
    return obj


RngAccess = tuple[Callable[[], Any], Callable[[Any], None]]
"""A named RNG's ``(get_state, set_state)``."""


class Resumable:
    """The checkpoint state of a training loop besides its model, saved with every checkpoint and restored on resume.

    It holds the data-augmentation generator, torch's global RNG and the named ``rngs`` (e.g. the sensor's
    noise stream), the history of every ``(step, metrics)`` logged (the list :class:`gimbal.training.live.LiveLog`
    appends to and rewrites the dvclive folder from on resume) and the best model seen on val so far (:meth:`offer`).
    The loader position needs no state: step ``s`` trains on clip batch ``s // samples_per_clip``
    (:class:`gimbal.training.loop.ClipReplay`).

    Args:
        path: the checkpoint file (``checkpoints/<name>/last.pt``).
        fingerprint: :func:`run_fingerprint` of the run; a checkpoint with another one is not resumed.
        generator: the data-augmentation generator.
        rngs: other RNG streams by name, as ``(get_state, set_state)``.
    """

    def __init__(self, path: str | os.PathLike[str], fingerprint: Any, generator: torch.Generator,
                 rngs: dict[str, RngAccess] | None = None) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.generator = generator
        self.rngs = dict(rngs or {})
        self.history: list[tuple[int, dict[str, float]]] = []
        self.start = 0
        self.saved_step: int | None = None  # the step of the last checkpoint written or resumed from
        self.best: dict[str, Any] | None = None  # {"step", "score", "model", "info"}: see offer()

    # -- resume -------------------------------------------------------------------------------------
    def resume(self, steps: int, load_model: Callable[[dict[str, Any]], None], name: str,
               device: torch.device | str = "cpu") -> int:
        """Restore an unfinished run of the same fingerprint from :attr:`path` and return the step to start at.

        ``load_model`` receives the saved model state (what :meth:`save` got as ``model_state``). A missing,
        corrupt (moved aside), finished (step >= ``steps``) or foreign checkpoint gives 0.
        """
        state = load_checkpoint(self.path, device)
        if state is None:
            return 0
        if state.get("fingerprint") != self.fingerprint or int(state["step"]) >= steps:
            log.info("not resuming %s from %s: a finished run, or other params or code", name, self.path)
            return 0
        load_model(state["model"])
        self.generator.set_state(state["data_generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        for key, (_, set_state) in self.rngs.items():
            set_state(state["rngs"][key])
        self.history = [(int(s), dict(m)) for s, m in state.get("history", [])]
        self.best = state.get("best")
        self.start = int(state["step"])
        self.saved_step = self.start
        log.info("resuming %s from step %d (%s)", name, self.start, self.path)
        return self.start

    def save(self, step: int, model_state: dict[str, Any]) -> None:
        """Atomically write the checkpoint of ``step`` (steps done) with ``model_state`` and this loop state."""
        save_checkpoint(self.path, {
            "step": step,
            "fingerprint": self.fingerprint,
            "model": model_state,
            "data_generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "rngs": {key: get_state() for key, (get_state, _) in self.rngs.items()},
            "history": [[s, m] for s, m in self.history],
            **({"best": self.best} if self.best is not None else {}),
        })
        self.saved_step = step

    def offer(self, step: int, score: float, model_state: dict[str, Any], info: dict[str, Any] | None = None) -> bool:
        """Keep ``model_state`` (copied to the CPU) as :attr:`best` when ``score`` (higher is better, e.g. val PSNR
        in dB) beats the best so far; a tie keeps the earlier step. ``info`` (e.g. every val metric) is kept with it.
        The choice is saved with each checkpoint, so a resumed run chooses as an uninterrupted one. Returns whether
        it was kept."""
        if not math.isfinite(score) or (self.best is not None and score <= self.best["score"]):
            return False
        copy = _cpu_copy(model_state)
        self.best = {"step": int(step), "score": float(score), "model": copy, "info": dict(info or {})}
        return True
