"""Prometheus metrics of one gateway, in a registry of its own (never the global default one).

Label values are bounded: ``model`` is a loaded model's name or empty (an unknown model named by a
client is never a label), ``outcome`` is ``ok`` or a :class:`ganserve.serve.errors.ServiceError` code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ganserve.serve.errors import ServiceError

if TYPE_CHECKING:
    from ganserve.serve.admission import Admission

_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class RequestTracker:
    """Filled in by an adapter while a request runs: the model that served it, once known."""

    model: str = ""


class Metrics:
    """Every metric the gateway exports. One instance per gateway process (or per test app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        request_labels = ["protocol", "endpoint", "model", "outcome"]
        self.requests = Counter(
            "ganserve_requests", "Requests served, by protocol, endpoint, model and outcome.",
            request_labels, registry=r)
        self.request_duration = Histogram(
            "ganserve_request_duration_seconds", "Time to serve a request, as the gateway sees it.",
            request_labels, buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "ganserve_requests_in_flight", "Requests being served now.", ["protocol", "endpoint"],
            registry=r)
        self.inference_duration = Histogram(
            "ganserve_backend_inference_duration_seconds", "Time of one backend inference (one batch).",
            ["model", "version"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "ganserve_backend_batch_size", "Images (rows) per backend inference.",
            ["model", "version"], buckets=_BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "ganserve_backend_queue_depth", "Images waiting in the micro-batcher's queue.",
            ["model", "version"], registry=r)
        self.queue_wait = Histogram(
            "ganserve_backend_queue_wait_seconds", "Time a request waits before its batch runs.",
            ["model", "version"], buckets=_LATENCY_BUCKETS, registry=r)
        self.models_loaded = Gauge(
            "ganserve_models_loaded", "Model versions loaded and serving.", registry=r)
        self.model_load_problems = Gauge(
            "ganserve_model_load_problems", "Models or versions that failed to load.", registry=r)
        self.ready = Gauge("ganserve_ready", "1 when the gateway is ready to serve, else 0.", registry=r)
        # Children by label values (bounded: see the module docstring), so that a request does not
        # pay prometheus_client's label validation and locked lookup for each metric it touches.
        self._in_flight_children: dict[tuple[str, str], Gauge] = {}
        self._request_children: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}

    def track_admission(self, admission: Admission) -> None:
        """Gauges read from admission control at each scrape."""
        Gauge("ganserve_admission_memory_bytes", "Memory reserved by admitted requests (estimated).",
              registry=self.registry).set_function(lambda: admission.bytes_in_flight)
        Gauge("ganserve_admission_memory_allowance_bytes", "Memory memory_budget_mb leaves for requests "
              "beside the gateway's own footprint.", registry=self.registry).set_function(
            lambda: admission.allowance_bytes)
        Gauge("ganserve_admission_backlog_seconds", "Estimated seconds of admitted work not finished yet "
              "(at the measured throughput).", registry=self.registry).set_function(admission.backlog_s)

    @contextmanager
    def track(self, *, protocol: str, endpoint: str) -> Iterator[RequestTracker]:
        """Counts one request: in flight while the block runs, then its outcome and duration."""
        tracker, outcome = RequestTracker(), "ok"
        in_flight = self._in_flight_children.get((protocol, endpoint))
        if in_flight is None:
            in_flight = self._in_flight_children[protocol, endpoint] = self.in_flight.labels(protocol, endpoint)
        in_flight.inc()
        start = time.perf_counter()
        try:
            yield tracker
        except ServiceError as exc:
            outcome = exc.code
            tracker.model = tracker.model or exc.model or ""
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"  # the client went away
            raise
        except BaseException:
            outcome = "internal"  # a bug
            raise
        finally:
            in_flight.dec()
            labels = (protocol, endpoint, tracker.model, outcome)
            children = self._request_children.get(labels)
            if children is None:
                children = self._request_children[labels] = (
                    self.requests.labels(*labels), self.request_duration.labels(*labels))
            children[0].inc()
            children[1].observe(time.perf_counter() - start)

    def exposition(self) -> bytes:
        """The text format for ``GET /metrics``."""
        return generate_latest(self.registry)
