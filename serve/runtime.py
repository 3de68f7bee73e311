"""What one gateway process owns: settings, metrics, admission, the backend and the service, and
readiness."""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
import time
from collections.abc import Callable

import numpy as np

from ganserve.serve.access.gate import Gate
from ganserve.serve.access.tracing import TracedBackend, Tracing
from ganserve.serve.admission import MIB, Admission
from ganserve.serve.backends import Backend, create_backend
from ganserve.serve.metrics import Metrics
from ganserve.serve.repository import ModelVersion
from ganserve.serve.service import GatewayService
from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
_CALIBRATION_TILE = 64  # LR tile side of the start-up measurement of a super-resolution model
_DRAIN_POLL_S = 0.05


class Runtime:
    """Built before anything listens; :meth:`load` warms the models up (ready afterwards)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.tracing = Tracing(settings)  # off unless otlp_endpoint is set
        self.admission = Admission.from_settings(settings)
        # A batch may run on the event loop only while its request is the only one the gateway serves
        # (MicroBatcher's inline_max_s): under concurrent load the loop has HTTP and image work to do
        # meanwhile, and the model's thread runs beside it on another core. Admission counts requests
        # once they reach the service; the HTTP server adds those it has read and not yet answered
        # (requests_in_progress), which a run of requests served one after another inline would not
        # let admission see.
        self.requests_in_progress: list[Callable[[], int]] = []
        backend = create_backend(settings, metrics=self.metrics, alone=self.serving_one)
        self.backend: Backend = TracedBackend(backend) if self.tracing.tracer is not None else backend
        self.service = GatewayService(backend=self.backend, settings=settings, admission=self.admission)
        self.gate = Gate(settings, metrics=self.metrics)  # API keys and rate limits, for both protocols
        self._stopping = False
        self._loaded = False  # load() finished: models warm, throughput measured, footprint known
        self.metrics.ready.set(0)
        self.metrics.track_admission(self.admission)

    def serving_one(self) -> bool:
        """Whether the gateway is serving one request at most (the one asking)."""
        return self.admission.requests_in_flight <= 1 and all(count() <= 1 for count in self.requests_in_progress)

    async def load(self) -> None:
        """Loads and warms up every model (a broken model is reported, the rest load), measures each
        servable model once (the first throughput estimate) and the gateway's own memory."""
        await self.backend.load()
        repo = self.backend.repository
        for mv in self.admission.add_models(repo, self.settings):
            await self._calibrate(mv)
        footprint = _peak_rss_bytes()
        self.admission.set_footprint(footprint)
        log.info("memory: %.0f MiB of memory_budget_mb %d MiB are the gateway's own; %.0f MiB left for "
                 "requests", footprint / MIB, self.settings.memory_budget_mb, self.admission.allowance_bytes / MIB)
        if self.admission.allowance_bytes < self.settings.memory_budget_mb * MIB // 4:
            log.warning("memory_budget_mb (%d MiB) leaves only %.0f MiB for requests: large uploads will be "
                        "refused", self.settings.memory_budget_mb, self.admission.allowance_bytes / MIB)
        self._loaded = True
        self.metrics.models_loaded.set(sum(len(v) for v in repo.models.values()))
        self.metrics.model_load_problems.set(len(repo.problems))
        self.metrics.ready.set(1 if self.ready() else 0)

    async def _calibrate(self, mv: ModelVersion) -> None:
        """Times one single-image (or single-tile) call: a pessimistic first throughput, replaced by
        what requests measure once they complete."""
        inputs, units = _probe(mv)
        start = time.perf_counter()
        try:
            await self.backend.infer(mv.name, mv.version, inputs)
        except Exception as exc:  # noqa: BLE001 - admission then waits for real requests to measure
            log.warning("could not time model %s at start-up (%s); its throughput is measured by requests",
                        mv.name, exc)
            return
        # Less the queue delay its batcher waits for a lone request: that is latency, not work (and
        # a long delay would make every request look too slow for its deadline).
        seconds = max(time.perf_counter() - start - self._queue_delay_s(mv), 1e-6)
        self.admission.calibrate(mv.name, units=units, seconds=seconds)

    def _queue_delay_s(self, mv: ModelVersion) -> float:
        """How long a lone request on ``mv`` waits for its batch to fill (an ensemble: each step). The
        embedded batcher makes none wait unless ``batch_wait_alone``; Triton's waits its delay."""
        repo = self.backend.repository
        parts = [repo.models[s.model][-1] for s in mv.steps if s.model in repo.models] if mv.is_ensemble else [mv]
        own = self.settings.batch_max_queue_delay_ms
        if self.settings.backend == "onnxruntime" and not self.settings.batch_wait_alone:
            return 0.0
        if own is not None and self.settings.backend == "onnxruntime":
            return len(parts) * own / 1000
        return sum((p.queue_delay_us or 0) / 1e6 for p in parts)

    def ready(self) -> bool:
        """Models are loaded, at least one serves, and no shutdown has begun."""
        return self._loaded and self.backend.ready() and bool(self.backend.repository.models) \
            and not self._stopping

    def readiness(self) -> str:
        """Why the gateway is (not) ready, in a few words."""
        if self._stopping:
            return "shutting down"
        if not self.backend.ready():
            return self.backend.readiness()
        if not self._loaded:
            return "measuring the models"
        if not self.backend.repository.models:
            return "no model loaded"
        return "ready"

    def begin_shutdown(self) -> None:
        """Readiness goes false at once (load balancers stop sending) and new requests get 503;
        admitted work continues."""
        self._stopping = True
        self.service.begin_shutdown()
        self.metrics.ready.set(0)

    async def drain(self, *, grace_s: float, margin_s: float) -> None:
        """Waits up to ``grace_s`` for admitted requests to finish; then answers the rest 503 /
        UNAVAILABLE (:meth:`GatewayService.abort_in_flight`) and gives them ``margin_s`` to go out."""
        loop = asyncio.get_running_loop()
        until = loop.time() + grace_s
        while self.service.in_flight() and loop.time() < until:
            await asyncio.sleep(_DRAIN_POLL_S)
        if not self.service.in_flight():
            return
        log.warning("%d request(s) still running after shutdown_grace_s (%g s): answering them 503",
                    self.service.in_flight(), grace_s)
        self.service.abort_in_flight()
        until = loop.time() + margin_s
        while self.service.in_flight() and loop.time() < until:
            await asyncio.sleep(_DRAIN_POLL_S)

    async def close(self) -> None:
        self.begin_shutdown()
        await self.backend.close()
        await asyncio.to_thread(self.tracing.shutdown)  # sends the last spans


def _probe(mv: ModelVersion) -> tuple[dict[str, np.ndarray], int]:
    """Inputs of one image (one tile) for ``mv``, and its units of work."""
    if mv.kind == "super-resolution":
        dims = next(t.dims for t in mv.inputs if t.name == mv.input_name)
        side = dims[1] if len(dims) == 3 and dims[1] > 0 else (mv.tile_size or _CALIBRATION_TILE)
        return {mv.input_name: np.zeros((1, 3, side, side), np.float32)}, side * side
    inputs = {t.name: np.zeros((1, *(d if d > 0 else 1 for d in t.dims)), dtype=t.dtype) for t in mv.inputs}
    return inputs, 1


def _peak_rss_bytes() -> int:
    """The process's largest resident set so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
