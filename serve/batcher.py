"""A micro-batcher: merges concurrent requests for one model version into one inference.

The same idea as Triton's dynamic batcher. Requests queue up; a worker takes as many queued rows as
fit in ``max_batch_size`` (splitting a request across batches when it must), runs the batch in a
thread (off the event loop), and hands every request its own rows back.

It never makes a request wait for company that is not on its way (adaptive batching): a batch waits
to fill (up to ``max_queue_delay_s`` after the oldest queued request) only while more requests are
known to be coming: others already queued beside it (concurrent load), or requests announced with
:meth:`MicroBatcher.expect` (an ensemble's later steps) and not yet submitted. A lone request runs at
once. ``wait_alone=True`` waits the whole delay whoever is
coming, as Triton's dynamic batcher does. Only requests whose inputs
have the same per-row shape are merged, and a batch holds at most ``max_batch_values`` input values
(so large rows, such as super-resolution tiles, batch fewer at a time: the runtime's working memory
and the time one batch holds the model stay bounded). Rows never influence each other, so merging
cannot change a result beyond what the runtime itself does for a different batch size.

A request that is cancelled (its deadline passed, its client went away) leaves the queue at once:
its rows that have not run yet never run, and a batch whose requests are all gone is not run.

Queued rows run earliest deadline first (the deadline of the request being served,
:data:`ganserve.serve.backends.base.REQUEST_DEADLINE`; arrival order among equal ones and for requests
without one). So the tiles of several concurrent upscales do not share the model round-robin, all
finishing late together: the oldest finishes first, and each in about its own time.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from ganserve.serve.backends.base import REQUEST_DEADLINE
from ganserve.serve.errors import NotReady, QueueFull

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
RunBatch = Callable[[Tensors], Tensors]  # blocking: inputs [B, ...] -> outputs [B, ...]


@dataclass(eq=False)
class _Pending:
    """One submitted request: its rows, how many are handed out, and the outputs received so far."""

    inputs: Tensors
    rows: int
    key: tuple  # per-row shapes and dtypes: only equal keys are merged
    future: asyncio.Future[Tensors]
    order: tuple[float, int]  # (deadline, arrival): the queue's order
    enqueued: float = field(default_factory=time.perf_counter)
    taken: int = 0   # rows handed to batches
    parts: list[tuple[int, Tensors]] = field(default_factory=list)  # (first row, outputs)
    done: int = 0    # rows with outputs


@dataclass(frozen=True)
class BatchObserver:
    """Callbacks for metrics and throughput: a batch ran (rows, input values, seconds), the queue
    changed (rows waiting), a request waited (seconds), the worker waited for a batch to fill
    (seconds; 0.0 when it did not wait: nothing was coming)."""

    batch: Callable[[int, int, float], None] = lambda rows, values, seconds: None  # values: input elements
    queue_depth: Callable[[int], None] = lambda rows: None
    queue_wait: Callable[[float], None] = lambda seconds: None
    fill_wait: Callable[[float], None] = lambda seconds: None


class MicroBatcher:
    """Batches requests for one model version; one batch runs at a time (one model instance)."""

    def __init__(self, run: RunBatch, *,
                 executor: Executor,           # where ``run`` executes (a dedicated thread)
                 max_batch_size: int,          # most rows per inference
                 max_queue_delay_s: float,     # how long a batch may wait to fill
                 max_queue_depth: int,         # most rows waiting; beyond, QueueFull
                 max_batch_values: int | None = None,  # most input values per inference (None: no limit)
                 merge: bool = True,           # False: every request runs on its own
                 wait_alone: bool = False,     # wait the delay even when no other request is coming
                 inline_max_s: float = 0.0,    # run a batch on the event loop when it should take no longer,
                 alone: Callable[[], bool] = lambda: True,  # ... and this says the gateway serves nothing else
                 observer: BatchObserver = BatchObserver(),
                 name: str = "model") -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._run, self._executor, self._name = run, executor, name
        self._max_batch, self._delay, self._max_depth = max_batch_size, max_queue_delay_s, max_queue_depth
        self._merge, self._observer, self._wait_alone = merge, observer, wait_alone
        self._coming = 0  # requests announced (expect()) and not yet submitted
        self._inline_max_s = inline_max_s
        self._alone = alone
        self._row_s: float | None = None  # recent seconds per row (moving average), for inline_max_s
        self._idle_since = 0.0  # when the worker last finished a batch
        self._max_values = max_batch_values
        self._queue: list[_Pending] = []  # sorted by _Pending.order
        self._arrivals = itertools.count()
        self._depth = 0  # rows queued and not yet handed to a batch
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running: list[_Pending] = []  # requests in the batch being run
        self._closed = False

    @property
    def depth(self) -> int:
        """Rows waiting to be batched."""
        return self._depth

    def expect(self) -> Callable[[], None]:
        """Announces a request on its way to :meth:`submit` (its inputs are being made): while any is
        announced, a batch waits for company, up to the queue delay. Returns the call that ends the
        announcement (idempotent): make it right before submitting (no await in between, or
        after the submitting task is scheduled), or when the request will not come; either way the
        worker looks again."""
        self._coming += 1
        ended = False

        def end() -> None:
            nonlocal ended
            if not ended:
                ended = True
                self._coming -= 1
                self._arrived.set()

        return end

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batcher-{self._name}")

    async def close(self) -> None:
        """Stops the worker; requests still queued fail with :class:`NotReady`."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for pending in [*self._running, *self._queue]:
            if not pending.future.done():
                pending.future.set_exception(NotReady("the gateway is shutting down"))
        self._queue.clear()
        self._set_depth(0)

    async def submit(self, inputs: Tensors) -> Tensors:
        """Queues one request (every input ``[n, ...]``, same n) and waits for its outputs."""
        if self._closed:
            raise NotReady("the gateway is shutting down")
        rows = {len(a) for a in inputs.values()}
        if len(rows) != 1 or 0 in rows:
            raise ValueError(f"inputs need one common, non-zero batch dimension, got {sorted(rows)}")
        (n,) = rows
        if self._depth + n > self._max_depth:
            raise QueueFull(f"model {self._name!r} has {self._depth} images queued; the limit is "
                            f"{self._max_depth} (max_queue_depth); retry shortly", model=self._name)
        if (not self._queue and not self._running and self._coming == 0 and self._inline(n)
                and not (self._wait_alone and self._merge and self._delay > 0) and n <= self._room_for(inputs)):
            return self._run_now(inputs, n)
        key = tuple(sorted((k, a.shape[1:], a.dtype.str) for k, a in inputs.items()))
        deadline = REQUEST_DEADLINE.get()
        pending = _Pending(inputs=inputs, rows=n, key=key, future=asyncio.get_running_loop().create_future(),
                           order=(math.inf if deadline is None else deadline, next(self._arrivals)))
        pending.future.add_done_callback(lambda _: self._forget(pending))
        bisect.insort(self._queue, pending, key=lambda p: p.order)
        self._set_depth(self._depth + n)
        self._arrived.set()
        return await pending.future

    def _inline(self, rows: int) -> bool:
        """Whether a batch of ``rows`` runs on the event loop: it should take at most ``inline_max_s``
        (from recent batches), and the gateway serves no other request (``alone``). Under concurrent
        load the loop has other requests' HTTP and image work to do while the model's thread runs the
        batch on another core: run inline there, batches ran one small batch at a time, serially, and
        queued requests waited behind them (measured on 2 cores at 32 clients: 730-980 images/s and a
        p99 of 110-240 ms, against 1000-1190 and 86-98 ms with every batch in the thread)."""
        return (self._row_s is not None and self._row_s * rows <= self._inline_max_s) and self._alone()

    def _run_now(self, inputs: Tensors, rows: int) -> Tensors:
        """A lone, short request with the model idle: run here and now, on the event loop, without
        queueing it for the worker (whose wake-up and hand-back cost two turns of the loop)."""
        self._observer.queue_wait(0.0)
        try:
            outputs, seconds = self._timed_run(inputs)
        except Exception:
            log.exception("inference on %s failed", self._name)
            raise
        self._ran(inputs, rows, seconds)
        return outputs

    def _timed_run(self, inputs: Tensors) -> tuple[Tensors, float]:
        """The model on one batch, and how long it took, timed where it runs: the event loop or the
        model's thread. Not the hop to the thread and back, nor the wait for the GIL afterwards: under
        concurrent load those took batches of dcgan from ~0.4 to ~1.9 ms per row, and a lone request
        after the load, judged by that, went to the thread as well (``inline_max_s``) and kept the
        estimate high."""
        started = time.perf_counter()
        outputs = self._run(inputs)
        return outputs, time.perf_counter() - started

    def _ran(self, inputs: Tensors, rows: int, seconds: float) -> None:
        """Bookkeeping after a batch that took ``seconds`` to run: when the model went idle, seconds
        per row, the observer."""
        self._idle_since = time.perf_counter()
        self._row_s = seconds / rows if self._row_s is None else 0.8 * self._row_s + 0.2 * seconds / rows
        self._observer.batch(rows, sum(a.size for a in inputs.values()), seconds)

    def _forget(self, pending: _Pending) -> None:
        """A request finished or was cancelled (client deadline): drop whatever of it still waits."""
        if pending.taken < pending.rows:
            self._set_depth(self._depth - (pending.rows - pending.taken))
            pending.taken = pending.rows
            try:
                self._queue.remove(pending)
            except ValueError:
                pass

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        self._observer.queue_depth(depth)

    async def _work(self) -> None:
        """Takes batches and runs them, one at a time. Every path through the loop awaits something,
        so the event loop is never held: a queue holding only cancelled requests is emptied, not
        spun on."""
        loop = asyncio.get_running_loop()
        while True:
            self._drop_gone()
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._fill()
            batch = self._take()
            if not batch:  # everything queued went away while the batch filled
                await asyncio.sleep(0)
                continue
            if len(batch) == 1:  # one request's rows: its own arrays (sliced), no copy
                (only, a, b), = batch
                inputs = {k: v[a:b] for k, v in only.inputs.items()}
            else:
                inputs = {k: np.concatenate([p.inputs[k][a:b] for p, a, b in batch]) for k in batch[0][0].inputs}
            now = time.perf_counter()
            for pending, first, _ in batch:
                if first == 0:
                    self._observer.queue_wait(now - pending.enqueued)
            self._running = [pending for pending, _, _ in batch]
            rows = len(next(iter(inputs.values())))
            try:
                if self._inline(rows) and all(p.enqueued >= self._idle_since for p, _, _ in batch):
                    # Short, and nobody waited behind the last batch (no concurrent load, whose HTTP and
                    # image work the loop would rather do meanwhile): cheaper here than the hop to the
                    # thread and back (measured: ~0.3 ms of CPU per batch on 2 cores, docs/benchmarks.md).
                    outputs, seconds = self._timed_run(inputs)
                else:
                    outputs, seconds = await loop.run_in_executor(self._executor, self._timed_run, inputs)
            except Exception as exc:  # a runtime failure: every request in the batch gets it
                log.exception("inference on %s failed", self._name)
                for pending, _, _ in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                self._running = []
                continue
            self._running = []  # (kept on cancellation: close() fails them)
            self._ran(inputs, rows, seconds)
            offset = 0
            for pending, first, last in batch:
                rows = last - first
                part = {k: v[offset:offset + rows] for k, v in outputs.items()}
                offset += rows
                self._deliver(pending, first, part)

    def _drop_gone(self) -> None:
        """Removes requests that finished while queued (cancelled: a deadline, a client gone) now,
        without waiting for their done-callbacks, which run only when the loop gets to them."""
        if any(p.future.done() for p in self._queue):
            for pending in [p for p in self._queue if p.future.done()]:
                self._forget(pending)

    async def _fill(self) -> None:
        """Waits (up to the queue delay after the oldest request) until a full batch is queued, while
        more requests are coming: announced ones, others queued beside the oldest, or any other request
        the gateway is serving (``alone`` false: concurrent load, where a larger batch costs less per
        row, and where a stream of one-row batches, each handed to the model's thread and back, made
        the thread wait for the event loop's GIL after every row: measured on 2 cores at 32 clients,
        710-750 images/s with a p99 of 470-560 ms in some runs, against 980-1360 and 77-95 ms when
        batches wait); always with ``wait_alone``. A request the gateway serves alone runs at once."""
        started, waited = time.perf_counter(), False
        try:
            if not self._merge or self._delay <= 0:
                return
            while (self._queue and self._depth < self._room(self._queue[0])
                   and (self._coming > 0 or len(self._queue) > 1 or self._wait_alone or not self._alone())):
                # From the oldest request still queued: the one that set an earlier deadline may be gone.
                remaining = self._queue[0].enqueued + self._delay - time.perf_counter()
                if remaining <= 0:
                    return
                self._arrived.clear()
                waited = True
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    return
                self._drop_gone()
        finally:
            self._observer.fill_wait(time.perf_counter() - started if waited else 0.0)

    def _room(self, pending: _Pending) -> int:
        """Most rows of ``pending``'s shape one batch may hold."""
        return self._room_for(pending.inputs)

    def _room_for(self, inputs: Tensors) -> int:
        if self._max_values is None:
            return self._max_batch
        row_values = sum(a[0].size for a in inputs.values())
        return max(1, min(self._max_batch, self._max_values // max(row_values, 1)))

    def _take(self) -> list[tuple[_Pending, int, int]]:
        """Rows for the next batch: (request, first row, end row) in queue order; requests that are
        gone are dropped on the way."""
        self._drop_gone()
        batch: list[tuple[_Pending, int, int]] = []
        if not self._queue:
            return batch
        head = self._queue[0]
        key, room = head.key, self._room(head)
        taken = 0
        for pending in list(self._queue):
            if room == 0 or (batch and not self._merge):
                break
            if pending.key != key:
                continue
            first = pending.taken
            last = min(pending.rows, first + room)
            batch.append((pending, first, last))
            pending.taken, room = last, room - (last - first)
            taken += last - first
            if last == pending.rows:
                self._queue.remove(pending)
        self._set_depth(self._depth - taken)
        return batch

    @staticmethod
    def _deliver(pending: _Pending, first: int, outputs: Tensors) -> None:
        if pending.future.done():  # cancelled while its batch ran
            return
        pending.parts.append((first, outputs))
        pending.done += len(next(iter(outputs.values())))
        if pending.done == pending.rows:
            parts = [o for _, o in sorted(pending.parts, key=lambda part: part[0])]
            pending.future.set_result(parts[0] if len(parts) == 1 else
                                      {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
