"""The dvclive log of a training run, rewritten on resume so the logs of a resumed run equal an uninterrupted one's.

:class:`LiveLog` writes each step's metrics to dvclive and keeps every ``(step, metrics)`` in a history that the
checkpoint saves (:class:`gimbal.checkpoint.Resumable` holds the same list); a resumed run replays that history into
a fresh dvclive folder before it logs its own steps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["LiveLog"]


class LiveLog:
    """The dvclive folder ``live_dir`` of a run whose steps so far are ``history`` (a list of ``(step, metrics)``,
    appended to by :meth:`log`).

    Nothing is written when it is made: the folder (whose dvclive run starts by emptying it) is opened at the first
    :meth:`log` (or at :meth:`close`), so a run that fails before its first step (a missing shard index, a bad batch
    size, a diverged step 0, Ctrl-C or SIGTERM while loading) leaves the previous run's logs as they were.

    When opened it holds the logs of the steps in ``history``. Each history entry is replayed as :meth:`log` wrote
    it, summary included: ``metrics.json`` lists its keys in the order they were first set, and ``step`` is set by
    every summary write, so a replay that wrote the summary only once, at the end, would move ``step`` behind metrics
    first logged after step 0 (equal values, another file).
    """

    def __init__(self, live_dir: str | os.PathLike[str], history: list[tuple[int, dict[str, float]]]) -> None:
        self.live_dir = Path(live_dir)
        self.history = history
        self._live: Any = None
        self._closed = False

    def _open(self) -> Any:
        if self._live is not None or self._closed:
            return self._live
        from dvclive import Live  # imported here: only the logging rank needs it (a heavy import)

        live = Live(str(self.live_dir), resume=False, save_dvc_exp=False, dvcyaml=None)
        for logged_step, logged in self.history:
            live.step = logged_step
            for name, value in logged.items():
                live.log_metric(name, value)
            live.make_summary()  # what log()'s sync() did after this entry
        if self.history:
            live.sync()
        self._live = live
        return live

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Log ``metrics`` at ``step`` to dvclive and append them to the history."""
        live = self._open()
        live.step = step
        for name, value in metrics.items():
            live.log_metric(name, value)
        self.history.append((step, dict(metrics)))
        live.sync()

    def close(self) -> None:
        """Finish the dvclive run (summary files; the folder is opened first if nothing was logged)."""
        if self._open() is not None:
            self._live.end()
        self._live = None
        self._closed = True
