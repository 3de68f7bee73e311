"""Admission control: every request is priced before it is queued, and refused at once when the
gateway could not serve it in time or within its memory budget.

A request's price is its **work** in the units of its model (images for a generator, LR pixels for a
super-resolution model: tiles x tile_size^2, overlaps included) and the **memory** it will hold at
its peak (uploads, decoded and output images, their encodings, float tensors). Each model's
throughput (seconds per unit) is measured while it serves: the time the model has work in flight,
divided by the units completed in that time, averaged over recent requests (so contention with
other models and other processes is part of it); :meth:`Admission.calibrate` seeds it at start-up.

A request is admitted when all of these hold, checked in this order:

1. its own estimated time fits its deadline, less a margin for the estimate's error (``HEADROOM``;
   else :class:`DeadlineExceeded` at once: waiting would not help);
2. the model's backlog plus its own time fits there too (else :class:`QueueFull`, 429 /
   ``RESOURCE_EXHAUSTED``, with ``Retry-After`` = the seconds until enough of the backlog is done);
3. the model's work in flight stays within its budget (``max_queue_depth`` images per generator,
   ``upscale_max_inflight_pixels`` per super-resolution model);
4. the work in flight on the whole gateway stays within ``max_inflight_work_s`` seconds;
5. the memory held by admitted requests stays within what ``memory_budget_mb`` leaves after the
   gateway's own footprint (measured after the models loaded and warmed up at their largest
   batch); a request that could never fit gets :class:`PayloadTooLarge`.

Nothing here blocks or awaits: the state is a few counters owned by the event loop.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from ganserve.serve.errors import DeadlineExceeded, NotReady, PayloadTooLarge, QueueFull
from ganserve.serve.repository import ModelVersion, Repository
from ganserve.serve.settings import Settings

_DECAY = 0.8   # weight of the past in the throughput average, per completed request
# Share of a deadline that admitted work may be estimated to fill; the rest absorbs the estimate's
# error (other processes on the CPU, the model's speed on other inputs).
HEADROOM = 0.8
MIB = 1024 * 1024


@dataclass
class _Load:
    """One model's admitted work and its measured throughput."""

    unit: str                      # "images" or "LR pixels"
    budget: int                    # most units in flight
    budget_setting: str            # the setting that sets ``budget`` (for messages)
    units: float = 0.0             # admitted and not finished
    tickets: set[Ticket] = field(default_factory=set)  # admitted and not released
    seconds_per_unit: float | None = None
    busy_mark: float = 0.0         # last time busy time was counted (while units > 0)
    busy_new: float = 0.0          # busy seconds since work was last reported done
    busy: float = 0.0              # decayed sums: busy seconds and units done in them
    done: float = 0.0

    def estimate(self, units: float) -> float:
        return units * (self.seconds_per_unit or 0.0)

    def count_busy(self, now: float) -> None:
        if self.units > 0:
            self.busy_new += now - self.busy_mark
        self.busy_mark = now


@dataclass(eq=False)  # each reservation is its own (kept in sets)
class Ticket:
    """An admitted request's reservation; :meth:`release` (or ``with``) gives it back."""

    admission: Admission
    model: str
    units: float                   # work not done yet
    nbytes: int
    order: tuple[float, int] = (math.inf, 0)  # (deadline, admission): the order the work is run in
    released: bool = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.release(completed=kind is None)

    def release(self, *, completed: bool = False) -> None:
        """Frees the reservation; ``completed``: the work was done (it counts for throughput)."""
        if not self.released:
            self.released = True
            self.admission._release(self, completed=completed)


class Admission:
    """The gateway's admitted work and memory, and the rules above."""

    def __init__(self, *, max_inflight_work_s: float, memory_budget_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_work_s = max_inflight_work_s
        self._budget_bytes = memory_budget_bytes
        self._allowance = memory_budget_bytes  # for requests; set by set_footprint
        self._footprint = 0
        self._clock = clock
        self._loads: dict[str, _Load] = {}
        self._admitted = itertools.count()
        self.bytes_in_flight = 0
        self.requests_in_flight = 0  # admitted and not released, every model

    # --- set-up -----------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        return cls(max_inflight_work_s=settings.max_inflight_work_s,
                   memory_budget_bytes=settings.memory_budget_mb * MIB)

    def add_models(self, repository: Repository, settings: Settings) -> list[ModelVersion]:
        """Registers every model a request can name (the latest version of each; versions share
        their model's budget); returns them."""
        added = []
        for versions in repository.models.values():
            mv = versions[-1]
            if mv.kind == "super-resolution":
                load = _Load(unit="LR pixels", budget=settings.upscale_max_inflight_pixels,
                             budget_setting="upscale_max_inflight_pixels")
            elif mv.kind in ("unconditional", "text-conditional"):
                load = _Load(unit="images", budget=settings.max_queue_depth, budget_setting="max_queue_depth")
            else:  # an ensemble's component: requests never name it
                continue
            self._loads[mv.name] = load
            added.append(mv)
        return added

    def calibrate(self, model: str, *, units: float, seconds: float) -> None:
        """Seeds a model's throughput with one measured call (``units`` took ``seconds``)."""
        load = self._loads[model]
        if units > 0 and load.seconds_per_unit is None:
            load.seconds_per_unit = seconds / units

    def set_footprint(self, nbytes: int) -> None:
        """The gateway's own memory (models, runtimes, their working memory at the largest batch):
        what the budget leaves for requests is the rest."""
        self._footprint = nbytes
        self._allowance = max(0, self._budget_bytes - nbytes)

    @property
    def allowance_bytes(self) -> int:
        return self._allowance

    def seconds_per_unit(self, model: str) -> float | None:
        return self._loads[model].seconds_per_unit

    def estimate_s(self, model: str, units: float) -> float:
        """Seconds ``units`` of work on ``model`` take at its measured throughput (0: not measured)."""
        load = self._loads.get(model)
        return load.estimate(units) if load is not None else 0.0

    def backlog_s(self, model: str | None = None) -> float:
        """Estimated seconds of admitted work on ``model`` (every model: None)."""
        loads = self._loads.values() if model is None else [self._loads[model]]
        return sum(load.estimate(load.units) for load in loads)

    # --- requests ---------------------------------------------------------------------------------

    def admit(self, model: str, *, units: float, nbytes: int, deadline_s: float, deadline_setting: str,
              deadline_at: float = math.inf) -> Ticket:
        """Reserves ``units`` of work on ``model`` and ``nbytes`` of memory, or raises. ``deadline_at``
        (any clock, the same for every request): work runs earliest deadline first
        (:meth:`expected_s`)."""
        load = self._loads.get(model)
        if load is None:  # loaded but not measured yet (start-up)
            raise NotReady(f"model {model!r} is still warming up; retry shortly", model=model)
        self._check(model, load, units=units, own=load.estimate(units), nbytes=nbytes, deadline_s=deadline_s,
                    deadline_setting=deadline_setting)
        now = self._clock()
        load.count_busy(now)
        load.units += units
        self.bytes_in_flight += nbytes
        ticket = Ticket(self, model, units, nbytes, order=(deadline_at, next(self._admitted)))
        load.tickets.add(ticket)
        self.requests_in_flight += 1
        return ticket

    def resize(self, ticket: Ticket, *, units: float, nbytes: int, deadline_s: float,
               deadline_setting: str) -> None:
        """Re-prices an admitted request once more is known (an upload's pixel size): the checks run
        again for the new price, as if it were a new request (on refusal the old price is kept)."""
        load = self._loads[ticket.model]
        old_units, old_bytes = ticket.units, ticket.nbytes
        load.count_busy(self._clock())
        load.units -= old_units
        self.bytes_in_flight -= old_bytes
        try:
            self._check(ticket.model, load, units=units, own=load.estimate(units), nbytes=nbytes,
                        deadline_s=deadline_s, deadline_setting=deadline_setting)
        except (QueueFull, DeadlineExceeded, PayloadTooLarge):
            load.units += old_units
            self.bytes_in_flight += old_bytes
            raise
        load.units += units
        self.bytes_in_flight += nbytes
        ticket.units, ticket.nbytes = units, nbytes

    def _check(self, model: str, load: _Load, *, units: float, own: float, nbytes: int,
               deadline_s: float, deadline_setting: str) -> None:
        unit, rate = load.unit, load.seconds_per_unit
        usable = deadline_s * HEADROOM
        if own > usable:
            raise DeadlineExceeded(
                f"this request is {units:.0f} {unit} of work for model {model!r}, an estimated "
                f"{own:.1f} s at its measured {_rate(rate, unit)}, past {HEADROOM:.0%} of its deadline of "
                f"{deadline_s:.1f} s ({deadline_setting}): ask for less", model=model)
        backlog = load.estimate(load.units)
        if load.units > 0 and backlog + own > usable:
            raise QueueFull(
                f"model {model!r} has an estimated {backlog:.1f} s of work queued; with this request's "
                f"{own:.1f} s it would not finish well within its deadline of {deadline_s:.1f} s "
                f"({deadline_setting}); retry later", model=model,
                retry_after_s=_seconds(backlog + own - usable))
        if load.units > 0 and load.units + units > load.budget:
            excess = load.units + units - load.budget
            raise QueueFull(
                f"model {model!r} has {load.units:.0f} {unit} in flight; with this request's "
                f"{units:.0f} that exceeds its budget of {load.budget} ({load.budget_setting}); retry "
                f"later", model=model, retry_after_s=_seconds(load.estimate(excess)))
        total = self.backlog_s()
        if total > 0 and total + own > self._max_work_s:
            raise QueueFull(
                f"the gateway has an estimated {total:.1f} s of work in flight; with this request's "
                f"{own:.1f} s that exceeds max_inflight_work_s ({self._max_work_s:g} s); retry later",
                model=model, retry_after_s=_seconds(total + own - self._max_work_s))
        if nbytes > self._allowance:
            raise PayloadTooLarge(
                f"this request needs about {nbytes / MIB:.0f} MiB of memory; memory_budget_mb "
                f"({self._budget_bytes / MIB:.0f} MiB) leaves {self._allowance / MIB:.0f} MiB for "
                f"requests beside the gateway's own {self._footprint / MIB:.0f} MiB", model=model)
        if self.bytes_in_flight + nbytes > self._allowance:
            free_share = (self.bytes_in_flight + nbytes - self._allowance) / max(self.bytes_in_flight, 1)
            raise QueueFull(
                f"requests in flight hold {self.bytes_in_flight / MIB:.0f} MiB; this one needs about "
                f"{nbytes / MIB:.0f} MiB more, past the {self._allowance / MIB:.0f} MiB memory_budget_mb "
                f"leaves for requests; retry later", model=model,
                retry_after_s=_seconds(total * min(free_share, 1.0)))

    def progress(self, ticket: Ticket, units: float) -> None:
        """``units`` of an admitted request's work are done (a batch of tiles): they leave the
        backlog and count for throughput at once."""
        load = self._loads[ticket.model]
        units = min(units, ticket.units)
        load.count_busy(self._clock())
        load.units = max(0.0, load.units - units)
        ticket.units -= units
        _count_done(load, units)

    def expected_s(self, ticket: Ticket) -> float:
        """Seconds until an admitted request is done, at the throughput measured now: its own work
        left and the work of the requests run before it (earlier deadlines)."""
        load = self._loads[ticket.model]
        ahead = sum(t.units for t in load.tickets if t.order < ticket.order)
        return load.estimate(ahead + ticket.units)

    def _release(self, ticket: Ticket, *, completed: bool) -> None:
        load = self._loads[ticket.model]
        load.count_busy(self._clock())
        load.units = max(0.0, load.units - ticket.units)
        if ticket in load.tickets:
            load.tickets.discard(ticket)
            self.requests_in_flight -= 1
        self.bytes_in_flight -= ticket.nbytes
        if completed:
            _count_done(load, ticket.units)


def _count_done(load: _Load, units: float) -> None:
    """Throughput: busy seconds over units done, both decayed per event so recent work counts most."""
    if units <= 0:
        return
    load.busy = load.busy * _DECAY + load.busy_new
    load.done = load.done * _DECAY + units
    load.busy_new = 0.0
    if load.busy > 0:
        load.seconds_per_unit = load.busy / load.done


def _rate(seconds_per_unit: float | None, unit: str) -> str:
    if not seconds_per_unit:
        return "throughput (not measured yet)"
    return f"throughput of {1 / seconds_per_unit:,.0f} {unit}/s"


def _seconds(value: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    return max(1, math.ceil(value))
