"""Exposure-time parametrization and shutter schedule (paper eqs. (12)-(13), Fig. 3).

``n`` frames are captured back to back inside the exposure budget ``[0, T]``:
frame i is open during ``[t_i, t_i + dt_i]`` and is then read out for ``dt_ro``::

    t_1 = 0,    t_{i+1} = t_i + dt_i + dt_ro,    sum_i (dt_i + dt_ro) + idle = T.

The durations come from unconstrained logits Delta::

    alpha = softmax(Delta)                                   (eq. (13))
    dt_i = dt_min + alpha_i * (T - n (dt_min + dt_ro))       (eq. (12))

With ``slots = n`` the budget is always used in full; with ``slots = n + 1`` the last
softmax entry is an *idle* slot that absorbs the unused time, placed at the end of the
budget (after the last readout), or with ``idle_first`` before the first exposure
(``t_1 = idle``). :func:`centred_schedule_us` lays out equal fixed exposures whose reference
(middle) exposure is centred on the ground-truth instant ``T / 2``, the idle time first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gimbal.errors import ParamError

US = 1e-6  # seconds per microsecond
_ALPHA_FLOOR = 1e-6  # softmax cannot reach exactly 0; dt_i == dt_min maps to this alpha
_SCHEDULE_TOL_US = 0.01  # tolerance when checking a given schedule against the budget


@dataclass(frozen=True)
class ExposureConfig:
    """Params group ``exposure``.

    Attributes:
        n: frames per burst (paper: 3).
        idle_slot: ``True``: n+1 softmax slots, the last one idle (the budget need not be used up);
            ``False``: n slots, the budget used in full; ``None``: learned exposures take the experiment's
            (supplement Table 1: on for ``synthetic``), fixed exposures have none (:meth:`slots`).
        init_us: ``None``: equal exposures (with an idle slot: all n+1 slots equal); or n durations in us.
        centre_reference: ``True``: equal fixed exposures whose reference (middle, ``n // 2``) exposure is centred
            on the ground-truth instant ``T / 2``, the idle time before the first exposure
            (:func:`centred_schedule_us`; needs an idle slot, no ``init_us`` and fixed exposures).
    """

    n: int = 3
    idle_slot: bool | None = None
    init_us: tuple[float, ...] | None = None
    centre_reference: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ParamError(f"params: 'exposure.n' must be >= 1 (frames per burst), got {self.n}")
        if self.init_us is not None and len(self.init_us) != self.n:
            raise ParamError(f"params: 'exposure.init_us' must list exposure.n = {self.n} durations in us, "
                             f"got {list(self.init_us)}")
        if self.init_us is not None and min(self.init_us) <= 0:
            raise ParamError(f"params: 'exposure.init_us' must all be > 0 us (a zero exposure collects no light and "
                             f"its softmax slot never recovers), got {list(self.init_us)}")
        if self.centre_reference and (self.init_us is not None or self.idle_slot is False):
            raise ParamError("params: 'exposure.centre_reference: true' derives the durations and puts the idle time "
                             "first; set 'exposure.init_us: null' and 'exposure.idle_slot' to true or null")

    def slots(self, learn: bool, experiment_idle_slot: bool) -> int:
        """Softmax slots of the schedule: ``n + 1`` with an idle slot, else ``n``.

        ``idle_slot`` true or false decides. ``None``: a learned schedule takes the experiment's idle slot
        (``experiment_idle_slot``); a fixed one (``learn`` false: the paper's fixed-exposure ablation, ``-S
        model.learn_exposure=false``) has none, so its equal exposures fill the whole budget,
        ``dt_i = (T - n dt_ro) / n``, the schedule of ``gimbal_uniform``.
        """
        if self.centre_reference:
            return self.n + 1
        idle = self.idle_slot if self.idle_slot is not None else (experiment_idle_slot and learn)
        return self.n + 1 if idle else self.n



def _check_timing(n: int, budget_s: float, dt_min_s: float, dt_readout_s: float, slots: int) -> float:
    """Validate the timing parameters; return the free time T - n (dt_min + dt_ro) in seconds."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParamError(f"exposure.n must be a positive int (frames per burst), got {n!r}")
    if slots not in (n, n + 1):
        raise ParamError(f"exposure slots must be n={n} (budget fully used) or n+1={n + 1} (idle slot), got {slots!r}")
    if budget_s <= 0 or dt_min_s < 0 or dt_readout_s < 0:
        raise ParamError(
            f"exposure timing must be positive: budget T={budget_s} s, dt_min={dt_min_s} s, readout={dt_readout_s} s"
        )
    free = budget_s - n * (dt_min_s + dt_readout_s)
    if free <= 0:
        raise ParamError(
            f"exposure budget T={budget_s / US:.1f} us is too short for n={n} frames: it must exceed "
            f"n*(dt_min+dt_ro) = {n * (dt_min_s + dt_readout_s) / US:.1f} us; raise the budget or lower n"
        )
    return free


def uniform_schedule_us(n: int, budget_s: float, dt_min_s: float, dt_readout_s: float) -> list[float]:
    """Equal exposures filling the budget: dt_i = (T - n dt_ro) / n, in microseconds."""
    _check_timing(n, budget_s, dt_min_s, dt_readout_s, n)
    return [(budget_s - n * dt_readout_s) / n / US] * n


def centred_schedule_us(n: int, budget_s: float, dt_min_s: float, dt_readout_s: float) -> tuple[list[float], float]:
    """Equal exposures whose reference exposure (``n // 2``) is centred on ``T / 2``, the idle time first.

    Frame i opens at ``t_i = idle + i (dt + dt_ro)``; the burst ends with the last readout at ``T``, so
    ``idle = T - n (dt + dt_ro)``, and the reference's centre ``idle + m (dt + dt_ro) + dt / 2 = T / 2``
    (``m = n // 2``) gives ``dt = (T / 2 - (n - m) dt_ro) / (n - m - 1/2)``. For odd n the idle time is one
    readout: the layout is symmetric about ``T / 2``. E.g. T = 3000 us, 400 us readouts, n = 3: 466.67 us each
    after 400 us idle, the reference [1266.67, 1733.33] us (uniform: 600 us each, the reference [1000, 1600] us).

    Returns ``(durations_us, idle_us)``. Raises :class:`ParamError` when no such layout fits (even ``n``: the
    reference would need idle time after the burst; or an exposure below ``dt_min``).
    """
    _check_timing(n, budget_s, dt_min_s, dt_readout_s, n + 1)
    m = n // 2
    dt = (budget_s / 2 - (n - m) * dt_readout_s) / (n - m - 0.5)
    idle = budget_s - n * (dt + dt_readout_s)
    if dt < dt_min_s or idle < -1e-12:
        raise ParamError(
            f"exposure.centre_reference: no equal exposures of n={n} frames ({dt_readout_s / US:.1f} us readouts) "
            f"centre the reference frame {m} on T/2 = {budget_s / 2 / US:.1f} us with the idle time first "
            f"(exposure {dt / US:.1f} us, idle {idle / US:.1f} us); use an odd exposure.n or turn it off"
        )
    return [dt / US] * n, max(idle, 0.0) / US


def logits_from_schedule(
    durations_us: Sequence[float],
    budget_s: float,
    dt_min_s: float,
    dt_readout_s: float,
    slots: int | None = None,
) -> torch.Tensor:
    """Inverse of eqs. (12)-(13): exposure durations in microseconds -> logits Delta, shape ``(slots,)``.

    ``slots`` defaults to ``n``. With ``slots == n`` the durations must fill the budget,
    ``sum(dt_i) + n dt_ro == T``; with ``slots == n + 1`` the remainder goes to the idle
    slot. Every duration must be >= dt_min. The logits are float64 (exact round trip), zero-mean.
    """
    dts = [float(d) for d in durations_us]
    n = len(dts)
    slots = n if slots is None else slots
    free = _check_timing(n, budget_s, dt_min_s, dt_readout_s, slots)
    free_us = free / US
    excess = [d - dt_min_s / US for d in dts]
    if min(excess) < -_SCHEDULE_TOL_US:
        raise ParamError(
            f"exposure schedule {dts} us has a duration below dt_min = {dt_min_s / US:.3f} us; raise it"
        )
    used = sum(max(e, 0.0) for e in excess)
    rest = free_us - used
    total_us = sum(dts) + n * dt_readout_s / US
    if rest < -_SCHEDULE_TOL_US:
        raise ParamError(
            f"exposure schedule {dts} us plus {n} readouts of {dt_readout_s / US:.3f} us takes {total_us:.3f} us, "
            f"more than the budget T = {budget_s / US:.3f} us; shorten the exposures or raise the budget"
        )
    if slots == n and abs(rest) > _SCHEDULE_TOL_US:
        raise ParamError(
            f"exposure schedule {dts} us plus {n} readouts takes {total_us:.3f} us but with slots=n the budget "
            f"T = {budget_s / US:.3f} us is always used in full; use an idle slot (exposure.idle_slot: true) "
            f"or give durations summing to T - n*dt_ro = {(budget_s - n * dt_readout_s) / US:.3f} us"
        )
    alphas = [max(e, 0.0) / free_us for e in excess]
    if slots == n + 1:
        alphas.append(max(rest, 0.0) / free_us)
    a = torch.tensor(alphas, dtype=torch.float64).clamp_min(_ALPHA_FLOOR)
    a = a / a.sum()
    logits = a.log()
    return logits - logits.mean()


class Exposure(nn.Module):
    """Learnable (or frozen) exposure schedule of an ``n``-frame burst (eqs. (12)-(13), Fig. 3).

    Args:
        n: frames per burst.
        budget_s: exposure budget T in seconds.
        dt_min_s: minimum exposure dt_min in seconds.
        dt_readout_s: readout time dt_ro in seconds.
        slots: ``n`` (budget fully used) or ``n + 1`` (idle slot at the end); default ``n``.
        idle_first: with an idle slot, put the idle time before the first exposure instead of after the last
            readout (``t_1 = idle``).
        learn: if True the logits are an ``nn.Parameter``; otherwise a buffer (frozen). The
            state-dict key ``logits`` is the same either way. They are float64 so that a
            schedule given in microseconds round-trips exactly (``module.float()`` is harmless).
        init_us: initial durations in microseconds (length n). Default: all logits zero,
            i.e. equal exposures; with ``slots == n`` they fill the budget, with an idle slot
            the idle time starts at an equal share (free / (n + 1)) so that its gradient
            does not vanish (a softmax entry near 0 has a near-0 gradient).
    """

    logits: torch.Tensor

    def __init__(
        self,
        n: int,
        budget_s: float,
        dt_min_s: float,
        dt_readout_s: float,
        slots: int | None = None,
        learn: bool = True,
        init_us: Sequence[float] | None = None,
        idle_first: bool = False,
    ) -> None:
        super().__init__()
        slots = n if slots is None else slots
        if idle_first and slots != n + 1:
            raise ParamError(f"exposure: the idle time can only come first with an idle slot (slots = n + 1 = {n + 1}), "
                             f"got slots = {slots}")
        self.idle_first = bool(idle_first)
        self.free_s = _check_timing(n, budget_s, dt_min_s, dt_readout_s, slots)
        self.n = n
        self.slots = slots
        self.budget_s = float(budget_s)
        self.dt_min_s = float(dt_min_s)
        self.dt_readout_s = float(dt_readout_s)
        self.learn = bool(learn)
        if init_us is None:
            logits = torch.zeros(slots, dtype=torch.float64)
        else:
            if len(init_us) != n:
                raise ParamError(f"exposure init_us must list n={n} durations in microseconds, got {list(init_us)}")
            logits = logits_from_schedule(init_us, budget_s, dt_min_s, dt_readout_s, slots)
        if self.learn:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    @classmethod
    def logits_from_schedule(
        cls,
        durations_us: Sequence[float],
        budget_s: float,
        dt_min_s: float,
        dt_readout_s: float,
        slots: int | None = None,
    ) -> torch.Tensor:
        """See :func:`logits_from_schedule`."""
        return logits_from_schedule(durations_us, budget_s, dt_min_s, dt_readout_s, slots)

    @property
    def idle_slot(self) -> bool:
        return self.slots == self.n + 1

    def alphas(self) -> torch.Tensor:
        """The plain softmax of the logits, shape ``(slots,)``, without the floor of :meth:`shares` (eq. (13))."""
        return torch.softmax(self.logits, dim=0)

    def durations(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Eq. (12): exposure durations dt_i in seconds, shape ``(n,)``; differentiable in the logits."""
        alpha = self.shares()[: self.n]
        return (self.dt_min_s + alpha * self.free_s).to(dtype)

    def shares(self) -> torch.Tensor:
        """Eq. (13): ``alpha = softmax(Delta)``, shape ``(slots,)`` float64, floored at :data:`_ALPHA_FLOOR`.

        The floor keeps every exposure > 0 however far a logit runs (softmax underflows to exactly 0 past a
        logit gap of ~745, and a zero exposure crashed backward). Only when an exposure's share falls below it
        are the exposures' shares clamped and all renormalized (so they still sum to 1 and the budget is used
        exactly); otherwise they are softmax's own, bit for bit.
        """
        alpha = torch.softmax(self.logits.to(torch.float64), dim=0)
        if bool((alpha.detach()[: self.n] < _ALPHA_FLOOR).any()):  # the idle slot may be 0: not floored
            alpha = torch.cat([alpha[: self.n].clamp_min(_ALPHA_FLOOR), alpha[self.n:]])
            alpha = alpha / alpha.sum()
        return alpha

    def starts(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Shutter opening times t_i in seconds, shape ``(n,)``: t_1 = 0 (``idle_first``: the idle time),
        t_{i+1} = t_i + dt_i + dt_ro."""
        dt = self.durations(torch.float64)
        step = dt[:-1] + self.dt_readout_s
        first = self.shares()[-1:] * self.free_s if self.idle_first else dt.new_zeros(1)
        t = torch.cat([first, first + torch.cumsum(step, dim=0)])
        return t.to(dtype)

    def idle_s(self) -> float:
        """Unused time in seconds, at the end of the budget (``idle_first``: at its start); 0 without an idle
        slot."""
        if not self.idle_slot:
            return 0.0
        return float(self.shares().detach()[-1]) * self.free_s

    def to_us(self) -> dict[str, Any]:
        """The schedule in microseconds, JSON-ready (for camera drivers and plots).

        Keys: ``n``, ``budget_us`` (T), ``readout_us`` (dt_ro), ``min_exposure_us`` (dt_min),
        ``starts_us`` (t_i), ``durations_us`` (dt_i), ``readout_starts_us`` (t_i + dt_i),
        ``idle_us``, ``idle_slot``, ``learned`` (and ``idle_first`` when the idle time comes first).
        """
        with torch.no_grad():
            dt = self.durations(torch.float64).cpu().tolist()
            t = self.starts(torch.float64).cpu().tolist()
        def us(x: float) -> float:
            return round(x / US, 6)

        return {
            "n": self.n,
            "budget_us": us(self.budget_s),
            "readout_us": us(self.dt_readout_s),
            "min_exposure_us": us(self.dt_min_s),
            "starts_us": [us(x) for x in t],
            "durations_us": [us(x) for x in dt],
            "readout_starts_us": [us(a + b) for a, b in zip(t, dt, strict=True)],
            "idle_us": us(self.idle_s()),
            "idle_slot": self.idle_slot,
            "learned": self.learn,
            **({"idle_first": True} if self.idle_first else {}),
        }

    def extra_repr(self) -> str:
        dts = ", ".join(f"{d:.1f}" for d in self.to_us()["durations_us"])
        return f"n={self.n}, slots={self.slots}, learn={self.learn}, durations_us=[{dts}]"


def check_schedule(durations_s: torch.Tensor, starts_s: torch.Tensor, budget_s: float) -> None:
    """Raise :class:`ParamError` if any exposure leaves ``[0, T]`` (guards integration)."""
    end = (starts_s + durations_s).max().item()
    if starts_s.min().item() < -1e-12 or end > budget_s * (1 + 1e-6) + 1e-12 or math.isnan(end):
        raise ParamError(
            f"exposures must lie inside the budget [0, {budget_s / US:.3f}] us; got starts "
            f"{(starts_s / US).tolist()} us and durations {(durations_s / US).tolist()} us"
        )
