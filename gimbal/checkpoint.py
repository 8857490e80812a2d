"""Checkpoints and resume, for every training loop.

- :func:`save_checkpoint` writes atomically (temp file, fsync, rename): a kill mid-write leaves the last good
  checkpoint in place.
- :func:`load_checkpoint` reads one back; an unreadable file is reported by name and moved aside to
  ``<name>.corrupt``, so training starts fresh instead of failing until someone deletes it.
- :func:`run_fingerprint` hashes what determines a run (its params and the package's code): a checkpoint
  of other params or code is not resumed.
- :class:`Resumable` is the loop state that is not a model's: the data generator, torch's global RNG and
  any other named RNG, the dvclive history, and the loader position. A loop built on it, killed and rerun,
  ends with the same weights and the same logs as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from gimbal.io import save_torch_atomic

__all__ = ["Resumable", "code_fingerprint", "load_checkpoint", "run_fingerprint", "save_checkpoint"]

log = logging.getLogger(__name__)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors and plain values) to ``path``."""
    save_torch_atomic(path, state)


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path`` (a dict with ``step``), or ``None`` when there is none.

    An unreadable file, or one that is not a checkpoint of this module, is reported by name, moved aside to
    ``<name>.corrupt`` and ignored.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or "step" not in state or "fingerprint" not in state:
            raise ValueError("not a training checkpoint")
        return state
    except Exception as exc:  # noqa: BLE001 - any unreadable file is handled the same way
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.warning("%s: unreadable checkpoint (%s: %s); moved to %s, training starts from step 0",
                    path, type(exc).__name__, str(exc)[:200], aside)
        return None


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


RngAccess = tuple[Callable[[], Any], Callable[[Any], None]]
"""A named RNG's ``(get_state, set_state)``."""


class Resumable:
    """The state of a training loop besides its model, saved with every checkpoint and restored on resume.

    It holds the data-augmentation generator, torch's global RNG and the named ``rngs`` (e.g. the sensor's
    noise stream), the dvclive history (every ``(step, metrics)`` logged, rewritten on resume so the logs of
    a resumed run equal an uninterrupted run's), and the loader position: step ``s`` trains on clip batch
    ``s // samples_per_clip``, and a resumed run replays the loader to that batch (the shuffled order is
    seeded, so the replayed batches are the ones the killed run drew).

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
        self._drawn = 0
        self._clips: Any = None
        self._live: Any = None

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
        self.start = int(state["step"])
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
        })

    # -- data ---------------------------------------------------------------------------------------
    def clips(self, step: int, batches: Iterator[Any], samples_per_clip: int) -> Any:
        """The clip batch of ``step``: batch ``step // samples_per_clip`` of ``batches`` (drawn or replayed)."""
        while self._drawn <= step // samples_per_clip:
            self._clips = next(batches)
            self._drawn += 1
        return self._clips

    # -- logs ---------------------------------------------------------------------------------------
    def open_live(self, live_dir: str | os.PathLike[str]) -> Any:
        """A dvclive ``Live`` at ``live_dir`` holding the logs of the steps before :attr:`start` (rewritten from
        the history), for :meth:`log`."""
        from dvclive import Live  # imported here: only the logging rank needs it

        live = Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None)
        for logged_step, logged in self.history:
            live.step = logged_step
            for name, value in logged.items():
                live.log_metric(name, value)
        if self.history:
            live.sync()
        self._live = live
        return live

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Log ``metrics`` at ``step`` to dvclive (:meth:`open_live`) and keep them in the history."""
        live = self._live
        live.step = step
        for name, value in metrics.items():
            live.log_metric(name, value)
        self.history.append((step, dict(metrics)))
        live.sync()

    def close_live(self) -> None:
        """Finish the dvclive run (summary files)."""
        if self._live is not None:
            self._live.end()
            self._live = None
