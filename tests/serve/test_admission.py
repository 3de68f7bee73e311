"""Admission control on its own, with a clock the test moves: pricing, budgets, Retry-After from the
backlog and the measured throughput, memory, and the throughput measurement itself."""

import pytest

from ganserve.serve.admission import MIB, Admission, _Load
from ganserve.serve.errors import DeadlineExceeded, NotReady, PayloadTooLarge, QueueFull


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _admission(*, work_s: float = 1000.0, budget_mib: int = 1000, footprint_mib: int = 0,
               units_budget: int = 1000) -> tuple[Admission, Clock]:
    clock = Clock()
    admission = Admission(max_inflight_work_s=work_s, memory_budget_bytes=budget_mib * MIB, clock=clock)
    admission._loads["gen"] = _Load(unit="images", budget=units_budget, budget_setting="max_queue_depth")
    admission.set_footprint(footprint_mib * MIB)
    return admission, clock


def test_an_unknown_model_is_not_ready_yet() -> None:
    admission, _ = _admission()
    with pytest.raises(NotReady, match="warming up"):
        admission.admit("other", units=1, nbytes=0, deadline_s=1, deadline_setting="request_timeout_s")


def test_a_request_that_alone_exceeds_its_deadline_is_refused_naming_estimate_and_limit() -> None:
    admission, _ = _admission()
    admission.calibrate("gen", units=1, seconds=0.5)
    admission.admit("gen", units=3, nbytes=0, deadline_s=2, deadline_setting="request_timeout_s").release()
    with pytest.raises(DeadlineExceeded) as refused:  # 1.75 s: past 80% of the 2 s deadline
        admission.admit("gen", units=3.5, nbytes=0, deadline_s=2, deadline_setting="request_timeout_s")
    message = refused.value.message
    assert "estimated 1.8 s" in message and "2.0 s (request_timeout_s)" in message and "2 images/s" in message
    assert admission.backlog_s() == 0


def test_backlog_past_the_deadline_is_429_with_retry_after_from_the_backlog() -> None:
    admission, _ = _admission()
    admission.calibrate("gen", units=1, seconds=1.0)
    first = admission.admit("gen", units=6, nbytes=0, deadline_s=10, deadline_setting="request_timeout_s")
    with pytest.raises(QueueFull) as refused:  # 6 s queued + 5 s of its own > 80% of 10 s
        admission.admit("gen", units=5, nbytes=0, deadline_s=10, deadline_setting="request_timeout_s")
    assert refused.value.retry_after_s == 3 and "6.0 s of work queued" in refused.value.message
    first.release()
    admission.admit("gen", units=5, nbytes=0, deadline_s=10, deadline_setting="request_timeout_s").release()


def test_the_model_budget_and_the_gateway_budget() -> None:
    admission, _ = _admission(work_s=20, units_budget=10)
    admission.calibrate("gen", units=1, seconds=0.5)
    held = admission.admit("gen", units=8, nbytes=0, deadline_s=100, deadline_setting="x")
    with pytest.raises(QueueFull) as over_model:
        admission.admit("gen", units=4, nbytes=0, deadline_s=100, deadline_setting="x")
    assert "budget of 10 (max_queue_depth)" in over_model.value.message
    assert over_model.value.retry_after_s == 1  # 2 images over, at 0.5 s each
    admission._loads["gen"].budget = 1000
    more = admission.admit("gen", units=30, nbytes=0, deadline_s=100, deadline_setting="x")  # 19 s in all
    with pytest.raises(QueueFull) as over_gateway:
        admission.admit("gen", units=4, nbytes=0, deadline_s=100, deadline_setting="x")
    assert "max_inflight_work_s (20 s)" in over_gateway.value.message and over_gateway.value.retry_after_s == 1
    held.release()
    more.release()


def test_memory_budget_leaves_room_for_requests_beside_the_footprint() -> None:
    admission, _ = _admission(budget_mib=100, footprint_mib=60)
    assert admission.allowance_bytes == 40 * MIB
    with pytest.raises(PayloadTooLarge, match="needs about 50 MiB.*leaves 40 MiB"):
        admission.admit("gen", units=1, nbytes=50 * MIB, deadline_s=10, deadline_setting="x")
    held = admission.admit("gen", units=1, nbytes=30 * MIB, deadline_s=10, deadline_setting="x")
    with pytest.raises(QueueFull, match="hold 30 MiB"):
        admission.admit("gen", units=1, nbytes=20 * MIB, deadline_s=10, deadline_setting="x")
    held.release()
    assert admission.bytes_in_flight == 0
    admission.admit("gen", units=1, nbytes=20 * MIB, deadline_s=10, deadline_setting="x").release()


def test_resize_reprices_and_keeps_the_old_price_when_refused() -> None:
    admission, _ = _admission(budget_mib=100)
    admission.calibrate("gen", units=1, seconds=1.0)
    ticket = admission.admit("gen", units=0, nbytes=10 * MIB, deadline_s=5, deadline_setting="x")
    with pytest.raises(DeadlineExceeded):
        admission.resize(ticket, units=4.5, nbytes=20 * MIB, deadline_s=5, deadline_setting="x")
    assert (admission.backlog_s(), admission.bytes_in_flight) == (0, 10 * MIB)
    admission.resize(ticket, units=3, nbytes=20 * MIB, deadline_s=5, deadline_setting="x")
    assert (admission.backlog_s(), admission.bytes_in_flight) == (3.0, 20 * MIB)
    ticket.release()
    ticket.release()  # twice is harmless
    assert (admission.backlog_s(), admission.bytes_in_flight) == (0, 0)


def test_throughput_is_busy_time_per_unit_completed() -> None:
    """Two requests of 5 images overlap for 4 s of busy time in all: 0.4 s per image. A failed or
    cancelled request frees its reservation without counting as throughput."""
    admission, clock = _admission()
    admission.calibrate("gen", units=1, seconds=10.0)  # a pessimistic start
    a = admission.admit("gen", units=5, nbytes=0, deadline_s=1000, deadline_setting="x")
    clock.now += 1
    b = admission.admit("gen", units=5, nbytes=0, deadline_s=1000, deadline_setting="x")
    clock.now += 2
    a.release(completed=True)
    clock.now += 1
    b.release(completed=True)
    rate = admission.seconds_per_unit("gen")
    assert rate == pytest.approx((3 * 0.8 + 1) / (5 * 0.8 + 5))  # decayed sums: ~4 s for 10 images
    clock.now += 100  # idle time is not busy time
    with admission.admit("gen", units=5, nbytes=0, deadline_s=1000, deadline_setting="x"):
        clock.now += 50  # a slow one: the estimate follows
    assert admission.seconds_per_unit("gen") > rate
    failed = admission.admit("gen", units=5, nbytes=0, deadline_s=1000, deadline_setting="x")
    before = admission.seconds_per_unit("gen")
    clock.now += 1000
    failed.release(completed=False)
    assert admission.seconds_per_unit("gen") == before and admission.backlog_s() == 0


def test_progress_leaves_the_backlog_and_measures_throughput_at_once() -> None:
    admission, clock = _admission()
    admission.calibrate("gen", units=1, seconds=1.0)
    ticket = admission.admit("gen", units=10, nbytes=0, deadline_s=100, deadline_setting="x")
    later = admission.admit("gen", units=5, nbytes=0, deadline_s=100, deadline_setting="x", deadline_at=20)
    sooner = admission.admit("gen", units=1, nbytes=0, deadline_s=100, deadline_setting="x", deadline_at=5)
    clock.now += 4  # 2 units took 4 s: the CPU got busier than the start-up measure
    admission.progress(ticket, 2)
    assert admission.seconds_per_unit("gen") == pytest.approx(2.0)
    assert admission.backlog_s() == pytest.approx((8 + 5 + 1) * 2.0)
    # earliest deadline first: `later` waits for everything, `sooner` for nothing, `ticket` (no
    # deadline) for both
    assert admission.expected_s(sooner) == pytest.approx(2.0)
    assert admission.expected_s(later) == pytest.approx((1 + 5) * 2.0)
    assert admission.expected_s(ticket) == pytest.approx((1 + 5 + 8) * 2.0)
    for t in (ticket, later, sooner):
        t.release(completed=False)  # stopped: what was done counted, the rest leaves the backlog
    assert admission.backlog_s() == 0
