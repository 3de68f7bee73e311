"""The micro-batcher, with a fake model: merging, splitting, limits, cancellation, failures."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ganserve.serve.batcher import BatchObserver, MicroBatcher
from ganserve.serve.errors import NotReady, QueueFull


class FakeModel:
    """y = 2x; records each batch's size; can be held to let a queue build up."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.gate.wait(5)
        if self.fail:
            raise RuntimeError("model exploded")
        self.batches.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


async def _with_batcher(model: FakeModel, body, *, waits: list[float] | None = None, **options):
    depths: list[int] = []
    defaults = {"max_batch_size": 4, "max_queue_delay_s": 0.0, "max_queue_depth": 100}
    observer = BatchObserver(queue_depth=depths.append, fill_wait=(waits if waits is not None else []).append)
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(model, executor=executor, observer=observer, **(defaults | options))
        batcher.start()
        try:
            return await body(batcher), depths
        finally:
            await batcher.close()


def _x(*values: float, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.repeat(np.array(values, np.float32)[:, None], width, axis=1)}


def test_concurrent_requests_are_merged_and_answered_with_their_own_rows() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        return await asyncio.gather(*(batcher.submit(_x(i)) for i in range(3)))

    results, _ = asyncio.run(_with_batcher(model, body, max_queue_delay_s=0.2))
    assert model.batches == [3]
    assert [r["y"][0, 0] for r in results] == [0.0, 2.0, 4.0]


def test_a_request_larger_than_a_batch_is_split_and_reassembled_in_order() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        return await batcher.submit(_x(*range(10)))

    result, _ = asyncio.run(_with_batcher(model, body))
    assert model.batches == [4, 4, 2]
    assert result["y"][:, 0].tolist() == [2.0 * i for i in range(10)]


def test_without_merging_every_request_runs_alone() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        return await asyncio.gather(*(batcher.submit(_x(i)) for i in range(3)))

    asyncio.run(_with_batcher(model, body, merge=False, max_queue_delay_s=0.05))
    assert model.batches == [1, 1, 1]


def test_rows_of_different_shapes_are_not_merged() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        return await asyncio.gather(batcher.submit(_x(1, width=2)), batcher.submit(_x(2, width=3)),
                                    batcher.submit(_x(3, width=2)))

    results, _ = asyncio.run(_with_batcher(model, body, max_queue_delay_s=0.1))
    assert sorted(model.batches) == [1, 2]
    assert [r["y"].shape[1] for r in results] == [2, 3, 2]


def test_a_full_queue_refuses_with_queue_full() -> None:
    model = FakeModel()
    model.gate.clear()  # the first batch blocks, so the next requests wait in the queue

    async def body(batcher: MicroBatcher):
        first = asyncio.ensure_future(batcher.submit(_x(0)))
        await asyncio.sleep(0.05)  # the worker holds the first request
        queued = asyncio.ensure_future(batcher.submit(_x(1, 2, 3)))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="max_queue_depth"):
            await batcher.submit(_x(4))
        model.gate.set()
        await asyncio.gather(first, queued)

    _, depths = asyncio.run(_with_batcher(model, body, max_queue_depth=3))
    assert max(depths) == 3 and depths[-1] == 0


def test_a_cancelled_request_leaves_the_queue() -> None:
    model = FakeModel()
    model.gate.clear()

    async def body(batcher: MicroBatcher):
        first = asyncio.ensure_future(batcher.submit(_x(0)))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await batcher.submit(_x(1, 2))
        await asyncio.sleep(0)
        depth = batcher.depth
        model.gate.set()
        await first
        return depth

    depth, _ = asyncio.run(_with_batcher(model, body))
    assert depth == 0 and model.batches == [1]  # the cancelled rows never ran


def test_a_failing_batch_fails_its_requests_only() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        model.fail = True
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(_x(1))
        model.fail = False
        return await batcher.submit(_x(2))

    result, _ = asyncio.run(_with_batcher(model, body))
    assert result["y"][0, 0] == 4.0


def test_close_fails_what_is_still_queued() -> None:
    model = FakeModel()
    model.gate.clear()

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(model, executor=executor, max_batch_size=1, max_queue_delay_s=0,
                                   max_queue_depth=10)
            batcher.start()
            first = asyncio.ensure_future(batcher.submit(_x(0)))
            queued = asyncio.ensure_future(batcher.submit(_x(1)))
            await asyncio.sleep(0.05)
            closing = asyncio.ensure_future(batcher.close())
            await asyncio.sleep(0.01)
            model.gate.set()
            await closing
            for request in (first, queued):  # in the running batch, and still queued
                with pytest.raises(NotReady):
                    await request
            with pytest.raises(NotReady):
                await batcher.submit(_x(2))

    asyncio.run(main())


def test_the_queue_delay_counts_from_the_oldest_request_still_queued() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        with pytest.raises(TimeoutError):  # the first request gives up; its deadline must go with it
            async with asyncio.timeout(0.1):
                await batcher.submit(_x(0))
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(_x(1))
        return loop.time() - start

    waited, _ = asyncio.run(_with_batcher(model, body, max_queue_delay_s=0.5, wait_alone=True))
    assert waited >= 0.45 and model.batches == [1]


def test_a_request_cancelled_before_the_worker_wakes_does_not_hang_the_loop() -> None:
    """The worker used to spin on a queue holding only a cancelled request (its done-callback never
    got to run), freezing the whole event loop."""
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        await asyncio.sleep(0.01)
        request = asyncio.ensure_future(batcher.submit(_x(1)))
        await asyncio.sleep(0)  # queued; the worker is woken but has not run yet
        request.cancel()
        async with asyncio.timeout(2):  # the loop still runs other work
            await asyncio.sleep(0.01)
        return await batcher.submit(_x(2))

    result, depths = asyncio.run(asyncio.wait_for(_with_batcher(model, body), 10))
    assert result["y"][0, 0] == 4.0 and model.batches == [1] and depths[-1] == 0


def test_a_batch_holds_at_most_max_batch_values_input_values() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        return await asyncio.gather(*(batcher.submit(_x(i, i, width=4)) for i in range(5)))

    results, _ = asyncio.run(_with_batcher(model, body, max_batch_size=64, max_batch_values=12,
                                           max_queue_delay_s=0.05))
    assert model.batches == [3, 3, 3, 1]  # rows of 4 values: 3 per batch
    assert [r["y"][:, 0].tolist() for r in results] == [[2.0 * i] * 2 for i in range(5)]


def test_a_batch_whose_requests_all_left_is_not_run() -> None:
    model = FakeModel()
    model.gate.clear()

    async def body(batcher: MicroBatcher):
        first = asyncio.ensure_future(batcher.submit(_x(0)))
        await asyncio.sleep(0.05)  # the first batch holds the model
        gone = [asyncio.ensure_future(batcher.submit(_x(i))) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        for request in gone:
            request.cancel()
        model.gate.set()
        await first
        await asyncio.sleep(0.05)

    _, depths = asyncio.run(_with_batcher(model, body))
    assert model.batches == [1] and depths[-1] == 0


@pytest.mark.parametrize("merge,delay", [(True, 0.0), (True, 0.003), (False, 0.0), (False, 0.003)])
def test_random_cancellations_and_deadlines_never_stall_the_loop(merge: bool, delay: float) -> None:
    """Seeded chaos: requests of 1..max rows, some cancelled at once, some after a random wait, some
    with a random deadline; a probe measures how late the event loop wakes it. Afterwards nothing
    is left queued, and every request that completed got its own rows."""
    import random
    import time

    rng = random.Random(1234)
    lags: list[float] = []

    def model(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.0005 * len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    async def probe(stop: asyncio.Event) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    async def one(batcher: MicroBatcher, i: int) -> None:
        rows = rng.randint(1, 16)
        values = np.arange(i * 100, i * 100 + rows, dtype=np.float32)
        request = asyncio.ensure_future(batcher.submit({"x": values[:, None]}))
        fate = rng.random()
        if fate < 0.25:  # cancelled once queued, before the worker gets to it
            await asyncio.sleep(0)
            request.cancel()
        elif fate < 0.5:
            await asyncio.sleep(rng.random() * 0.01)
            request.cancel()
        elif fate < 0.75:
            try:
                async with asyncio.timeout(rng.random() * 0.005):
                    await asyncio.shield(request)
            except TimeoutError:
                request.cancel()
        try:
            result = await request
        except asyncio.CancelledError:
            return
        assert result["y"][:, 0].tolist() == (values * 2).tolist()

    async def main() -> list[int]:
        depths: list[int] = []
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(model, executor=executor, max_batch_size=8, max_queue_delay_s=delay,
                                   max_queue_depth=10_000, merge=merge,
                                   observer=BatchObserver(queue_depth=depths.append))
            batcher.start()
            stop = asyncio.Event()
            prober = asyncio.ensure_future(probe(stop))
            for wave in range(40):  # lone requests too: a queue that holds only cancelled ones
                size = rng.choice((1, 1, 2, 5, 30))
                await asyncio.gather(*(one(batcher, wave * 50 + i) for i in range(size)))
            stop.set()
            await prober
            assert batcher.depth == 0
            await batcher.close()
        return depths

    depths = asyncio.run(asyncio.wait_for(main(), 60))
    assert depths[-1] == 0
    assert max(lags) < 0.25, f"the event loop stalled for {max(lags):.3f} s"


def test_queued_rows_run_earliest_deadline_first() -> None:
    """Requests queued behind a running batch run in the order of their deadlines (arrival order
    among equal ones, and after all that have one when they have none)."""
    from ganserve.serve.backends.base import REQUEST_DEADLINE

    model = FakeModel()
    model.gate.clear()
    order: list[float] = []

    async def submit(value: float, deadline: float | None) -> None:
        REQUEST_DEADLINE.set(deadline)  # this task's own context
        result = await batcher_ref[0].submit(_x(value))
        order.append(float(result["y"][0, 0]) / 2)

    batcher_ref: list[MicroBatcher] = []

    async def body(batcher: MicroBatcher):
        batcher_ref.append(batcher)
        first = asyncio.ensure_future(submit(0, None))
        await asyncio.sleep(0.05)  # the first batch holds the model
        loop = asyncio.get_running_loop()
        now = loop.time()
        rest = [asyncio.ensure_future(submit(v, d)) for v, d in
                [(1, None), (2, now + 30), (3, now + 5), (4, now + 30), (5, now + 1)]]
        await asyncio.sleep(0.05)
        model.gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(_with_batcher(model, body, max_batch_size=1))
    assert order == [0, 5, 3, 2, 4, 1]


# --- adaptive batching: a batch waits only for requests known to be coming ------------------------------

async def _with_waits(model: FakeModel, body, **options):
    """Like _with_batcher, returning the worker's fill waits (0.0: it did not wait) instead of depths."""
    waits: list[float] = []
    result, _ = await _with_batcher(model, body, waits=waits, **options)
    return result, waits


def test_a_lone_request_runs_at_once_whatever_the_queue_delay() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        first = await batcher.submit(_x(1))
        await asyncio.sleep(0.01)
        return first, await batcher.submit(_x(2))

    (first, second), waits = asyncio.run(asyncio.wait_for(
        _with_waits(model, body, max_queue_delay_s=30.0), 10))
    assert waits == [0.0, 0.0]  # the worker never waited to fill a batch
    assert model.batches == [1, 1] and first["y"][0, 0] == 2.0 and second["y"][0, 0] == 4.0


def test_requests_arriving_while_a_batch_runs_form_the_next_batch_and_wait_for_more() -> None:
    """Concurrent load: the three that queued behind the first batch are known company, so their batch
    waits (up to the delay from the oldest) for more; a full batch goes at once."""
    model = FakeModel()
    model.gate.clear()

    async def body(batcher: MicroBatcher):
        first = asyncio.ensure_future(batcher.submit(_x(0)))
        await asyncio.sleep(0.05)  # the first batch holds the model
        rest = [asyncio.ensure_future(batcher.submit(_x(i))) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        model.gate.set()
        await asyncio.gather(first, *rest)
        full = [asyncio.ensure_future(batcher.submit(_x(i))) for i in range(4, 8)]  # max_batch_size 4
        return await asyncio.gather(first, *rest, *full)

    results, waits = asyncio.run(asyncio.wait_for(_with_waits(model, body, max_queue_delay_s=0.2), 10))
    assert model.batches == [1, 3, 4] and waits[0] == 0.0 and 0.1 < waits[1] < 5 and waits[2] == 0.0
    assert [r["y"][0, 0] for r in results] == [2.0 * i for i in range(8)]


def test_a_batch_waits_for_an_announced_request_and_no_longer() -> None:
    """While a request is announced (expect()), the queued one waits for it; once it is submitted
    the batch is full (max_batch_size 2) and runs, long before the (30 s) queue delay."""
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        end = batcher.expect()
        first = asyncio.ensure_future(batcher.submit(_x(1)))
        await asyncio.sleep(0.05)
        assert model.batches == [] and batcher.depth == 1  # waiting for the announced one
        second = asyncio.ensure_future(batcher.submit(_x(2)))
        end()
        return await asyncio.gather(first, second)

    results, waits = asyncio.run(asyncio.wait_for(_with_waits(model, body, max_queue_delay_s=30.0,
                                                              max_batch_size=2), 10))
    assert model.batches == [2] and len(waits) == 1 and 0.04 < waits[0] < 10
    assert [r["y"][0, 0] for r in results] == [2.0, 4.0]


def test_an_announced_request_that_never_comes_releases_the_batch() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        end = batcher.expect()
        first = asyncio.ensure_future(batcher.submit(_x(1)))
        await asyncio.sleep(0.05)
        assert model.batches == []
        end()
        end()  # idempotent
        return await first

    result, _ = asyncio.run(asyncio.wait_for(_with_waits(model, body, max_queue_delay_s=30.0), 10))
    assert model.batches == [1] and result["y"][0, 0] == 2.0


def test_the_queue_delay_bounds_the_wait_for_announced_requests() -> None:
    model = FakeModel()

    async def body(batcher: MicroBatcher):
        end = batcher.expect()  # never submitted within the delay
        try:
            return await batcher.submit(_x(1))
        finally:
            end()

    _, waits = asyncio.run(asyncio.wait_for(_with_waits(model, body, max_queue_delay_s=0.2), 10))
    assert model.batches == [1] and len(waits) == 1 and 0.15 < waits[0] < 5


def test_batches_expected_to_be_short_run_on_the_event_loop_and_long_ones_in_the_thread() -> None:
    """inline_max_s: once a batch has been timed, one expected to take no longer runs on the loop's
    own thread (no hop); a larger one (rows x seconds per row over the limit) still goes to the thread."""
    threads: list[int] = []

    def model(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.get_ident())
        return {"y": inputs["x"] * 2}

    async def body(batcher: MicroBatcher):
        loop_thread = threading.get_ident()
        for i in range(3):
            await batcher.submit(_x(i))
        batcher._row_s = 0.01  # measured: 10 ms per row, so 8 rows (80 ms) are over the 50 ms limit
        await batcher.submit(_x(*range(8)))
        return loop_thread

    with ThreadPoolExecutor(1) as executor:
        async def main():
            batcher = MicroBatcher(model, executor=executor, max_batch_size=8, max_queue_delay_s=0,
                                   max_queue_depth=100, inline_max_s=0.05)
            batcher.start()
            try:
                return await body(batcher)
            finally:
                await batcher.close()

        loop_thread = asyncio.run(main())
    assert threads[0] != loop_thread  # not timed yet: the thread
    assert threads[1:3] == [loop_thread, loop_thread]
    assert threads[3] != loop_thread


def test_a_short_batch_that_waited_behind_another_still_goes_to_the_thread() -> None:
    """Under concurrent load the loop has other requests' HTTP and image work to do while a batch runs:
    a batch holding a request that queued behind the previous batch runs in the thread, however short."""
    threads: list[int] = []
    gate = threading.Event()

    def model(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.get_ident())
        if len(threads) == 1:
            gate.wait(5)
        return {"y": inputs["x"] * 2}

    async def main() -> int:
        with ThreadPoolExecutor(1) as executor:
            batcher = MicroBatcher(model, executor=executor, max_batch_size=8, max_queue_delay_s=0,
                                   max_queue_depth=100, inline_max_s=10.0)
            batcher.start()
            try:
                first = asyncio.ensure_future(batcher.submit(_x(0)))  # untimed: the thread
                await asyncio.sleep(0.05)
                behind = asyncio.ensure_future(batcher.submit(_x(1)))  # queues behind it
                await asyncio.sleep(0.01)
                gate.set()
                await asyncio.gather(first, behind)
                await batcher.submit(_x(2))  # arrives with the worker idle: on the loop
                return threading.get_ident()
            finally:
                await batcher.close()

    loop_thread = asyncio.run(asyncio.wait_for(main(), 10))
    assert threads[0] != loop_thread and threads[1] != loop_thread and threads[2] == loop_thread


def test_a_batch_is_timed_where_it_runs_not_with_the_hop_to_the_thread() -> None:
    """The seconds per row that decide inline_max_s (and the inference-duration metric) are the model's
    own: a hop to the thread that takes 200 ms (a loaded machine: the thread waiting for a core, the
    loop for the GIL) must not make a 1 ms model look like a 200 ms one, or every lone request after a
    burst of load would go to the thread as well."""
    threads: list[int] = []
    seconds: list[float] = []

    def model(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.get_ident())
        time.sleep(0.001)
        return {"y": inputs["x"] * 2}

    class SlowHop(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            def late():
                time.sleep(0.2)
                return fn(*args, **kwargs)
            return super().submit(late)

    async def main() -> int:
        with SlowHop(1) as executor:
            batcher = MicroBatcher(model, executor=executor, max_batch_size=8, max_queue_delay_s=0,
                                   max_queue_depth=100, inline_max_s=0.05,
                                   observer=BatchObserver(batch=lambda rows, values, s: seconds.append(s)))
            batcher.start()
            try:
                await batcher.submit(_x(0))  # untimed: the thread, with its 200 ms hop
                await batcher.submit(_x(1))  # timed at ~1 ms: on the loop
                return threading.get_ident()
            finally:
                await batcher.close()

    loop_thread = asyncio.run(asyncio.wait_for(main(), 10))
    assert threads[0] != loop_thread and threads[1] == loop_thread
    assert seconds[0] < 0.1  # the model's millisecond, not the hop's 200
