"""Triton backend: the gateway in front of an NVIDIA Triton Inference Server, over gRPC.

The gateway reads the same model repository Triton serves (for each model's kind, latent size,
value range, tiling: the ONNX metadata Triton does not expose) and checks, for every model version,
that Triton serves it with the same tensor names, dtypes and shapes. Batching is Triton's (its
dynamic batcher merges concurrent requests); the gateway only splits a request larger than the
model's ``max_batch_size``.

Availability: a background task asks Triton every ``triton_health_interval_s`` whether the server
and each model are ready. While Triton is down (or a model is not ready there) requests for it fail
at once with :class:`NotReady` (503 / UNAVAILABLE) and ``/readyz`` is false; when Triton is back the
models are checked again and served, without restarting the gateway (the gRPC channel reconnects by
itself). An error Triton returns for a request becomes :class:`UpstreamError` (502 / INTERNAL) with
Triton's message, except the ones that mean the same as a gateway error (queue full, deadline,
unavailable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from ganserve.serve.access.context import REQUEST_ID_HEADER, current_request_id
from ganserve.serve.backends.base import Tensors
from ganserve.serve.errors import DeadlineExceeded, ModelNotFound, NotReady, QueueFull, UpstreamError
from ganserve.serve.metrics import Metrics
from ganserve.serve.repository import ModelVersion, Repository, TensorSpec, load_repository
from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
_CHECK_TIMEOUT_S = 5.0  # one readiness or metadata call
_MAX_MESSAGE_BYTES = 2**31 - 1  # as tritonclient: tensors travel in one message


class _Model:
    """A model version as Triton serves it: readiness, the batch size Triton accepts, what a request
    needs, and its metric children (looked up once, not per request)."""

    def __init__(self, mv: ModelVersion, metrics: Metrics) -> None:
        self.mv = mv
        self.version = str(mv.version)
        self.ready = False
        self.max_batch_size = 0     # Triton's; 0 until checked
        self.in_flight = 0          # rows sent and not answered (bounded by max_queue_depth)
        labels = (mv.name, self.version)
        self.observe_depth = metrics.queue_depth.labels(*labels).set
        self._duration = metrics.inference_duration.labels(*labels).observe
        self._rows = metrics.batch_size.labels(*labels).observe

    def observe_call(self, rows: int, seconds: float) -> None:
        self._duration(seconds)
        self._rows(rows)


class TritonBackend:
    """Serves the models of a repository through a Triton server (``settings.triton_url``)."""

    def __init__(self, settings: Settings, *, metrics: Metrics) -> None:
        self._settings, self._metrics = settings, metrics
        self._url = settings.triton_url
        self._local = Repository(root=settings.model_repository, models={}, problems=())
        self._repository = self._local
        self._models: dict[tuple[str, int], _Model] = {}
        self._client: InferenceServerClient | None = None
        self._server_ready = False
        self._server_problem = "not checked yet"
        self._loaded = False
        self._closing = False
        self._watcher: asyncio.Task[None] | None = None
        self._checked = asyncio.Event()    # set after each round of checks
        self._wake = asyncio.Event()       # set to check again now (a request saw Triton fail)
        self._mismatched: dict[tuple[str, int], str] = {}

    # --- Backend interface ------------------------------------------------------------------------

    @property
    def repository(self) -> Repository:
        return self._repository

    def ready(self) -> bool:
        return (self._loaded and not self._closing and self._server_ready
                and any(m.ready for m in self._models.values()))

    def readiness(self) -> str:
        """Why the backend is (not) ready, for clients (``/readyz``): no address, no raw error (the log
        has them: :meth:`_check`)."""
        if not self._server_ready:
            return "Triton (the inference server) is not available"
        if not any(m.ready for m in self._models.values()):
            return "no model is ready on Triton (the inference server)"
        return "ready"

    async def load(self) -> None:
        """Reads the repository, then waits up to ``triton_startup_timeout_s`` for Triton to be ready
        (each model is checked as soon as it is); the watcher keeps going afterwards either way."""
        self._local = await asyncio.to_thread(load_repository, self._settings.model_repository)
        self._repository = self._local
        self._models = {(mv.name, mv.version): _Model(mv, self._metrics)
                        for vs in self._local.models.values() for mv in vs}
        # tritonclient's own channel options, plus round-robin over every address the target
        # resolves to (dns:/// of a headless Service: one connection per Triton pod).
        self._client = InferenceServerClient(self._url, channel_args=[
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)])
        self._loaded = True
        self._watcher = asyncio.create_task(self._watch(), name="triton-watch")
        deadline = time.monotonic() + self._settings.triton_startup_timeout_s
        while not self._server_ready and time.monotonic() < deadline and not self._watcher.done():
            self._checked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._checked.wait(), max(0.0, deadline - time.monotonic()))
        if not self._server_ready:
            log.error("Triton at %s is not ready (%s); the gateway is not ready and keeps checking every %g s",
                      self._url, self._server_problem, self._settings.triton_health_interval_s)
        else:
            missing = [f"{m.mv.name}/{m.mv.version}" for m in self._models.values() if not m.ready]
            if missing:
                log.warning("models not ready on Triton yet: %s", ", ".join(missing))
        log.info("triton backend at %s: %d model version(s) ready, %d problem(s)", self._url,
                 sum(m.ready for m in self._models.values()), len(self._repository.problems))

    async def infer(self, model: str, version: int, inputs: Tensors) -> Tensors:
        if not self._loaded or self._closing:
            raise NotReady("the gateway is not ready (models are loading, or it is shutting down)")
        entry = self._models.get((model, version))
        if entry is None or model not in self._repository.models:
            raise ModelNotFound(f"model {model!r} version {version} is not loaded")
        if not self._server_ready:
            raise NotReady("Triton (the inference server) is not available; retry shortly", model=model)
        if not entry.ready:
            raise NotReady(f"model {model!r} version {version} is not ready on Triton", model=model)
        rows = len(next(iter(inputs.values())))
        if entry.in_flight + rows > self._settings.max_queue_depth:
            raise QueueFull(f"model {model!r} has {entry.in_flight} images in flight to Triton "
                            f"(max_queue_depth {self._settings.max_queue_depth}); try again shortly",
                            model=model)
        entry.in_flight += rows
        entry.observe_depth(entry.in_flight)
        try:
            step = entry.max_batch_size or rows
            if rows <= step:
                return await self._infer_once(entry, inputs)
            parts = await asyncio.gather(*(
                self._infer_once(entry, {k: v[i:i + step] for k, v in inputs.items()})
                for i in range(0, rows, step)))
        finally:
            entry.in_flight -= rows
            entry.observe_depth(entry.in_flight)
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    async def close(self) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    # --- one request -------------------------------------------------------------------------------

    async def _infer_once(self, entry: _Model, inputs: Tensors) -> Tensors:
        mv = entry.mv
        request = []
        for name, array in inputs.items():
            tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            request.append(tensor)
        start = time.perf_counter()
        assert self._client is not None
        try:
            # Every output (Triton's default); no gRPC deadline of its own: the service's deadline
            # cancels the call, and a cancelled call is cancelled in Triton too.
            # The request's id travels along: Triton's request id and the call's gRPC metadata.
            request_id = current_request_id()
            result = await self._client.infer(mv.name, request, model_version=entry.version,
                                              request_id=request_id,
                                              headers={REQUEST_ID_HEADER: request_id} if request_id else None)
        except InferenceServerException as exc:
            raise self._translate(exc, mv) from None
        entry.observe_call(request[0].shape()[0], time.perf_counter() - start)
        return {o.name: result.as_numpy(o.name) for o in mv.outputs}

    def _translate(self, exc: InferenceServerException, mv: ModelVersion) -> Exception:
        status, message = (exc.status() or ""), (exc.message() or str(exc))
        if status.endswith("UNAVAILABLE"):
            self._server_ready = False  # the watcher confirms, and re-checks everything on return
            self._server_problem = message
            self._wake.set()  # the watcher confirms and re-checks now
            log.warning("Triton at %s failed a request for model %s: %s", self._url, mv.name, message)
            return NotReady("Triton (the inference server) is not available; retry shortly", model=mv.name)
        if status.endswith("DEADLINE_EXCEEDED"):
            return DeadlineExceeded(f"Triton did not answer for model {mv.name!r} in time: {message}",
                                    model=mv.name)
        if status.endswith("RESOURCE_EXHAUSTED"):
            return QueueFull(f"Triton's queue for model {mv.name!r} is full: {message}", model=mv.name)
        if status.endswith("NOT_FOUND") or "is not ready" in message or "unknown model" in message:
            self._models[mv.name, mv.version].ready = False
            self._wake.set()  # the watcher confirms and re-checks now
            return NotReady(f"model {mv.name!r} version {mv.version} is not ready on Triton: {message}",
                            model=mv.name)
        return UpstreamError(f"Triton failed the request for model {mv.name!r}: {message}", model=mv.name)

    # --- readiness ---------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Checks Triton and every model now, then every ``triton_health_interval_s`` (or sooner
        when a request saw Triton fail); re-checks model metadata whenever Triton comes back."""
        interval = self._settings.triton_health_interval_s
        while True:
            try:
                await self._check()
            except Exception:  # the watcher must survive anything and keep checking
                log.exception("checking Triton at %s failed", self._url)
            self._checked.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def _check(self) -> None:
        assert self._client is not None
        was_ready = self._server_ready
        try:
            self._server_ready = await self._client.is_server_ready(client_timeout=_CHECK_TIMEOUT_S)
            self._server_problem = "" if self._server_ready else "the server reports not ready"
        except InferenceServerException as exc:
            self._server_ready, self._server_problem = False, exc.message() or str(exc)
        if not self._server_ready:
            if was_ready:
                log.error("Triton at %s went away: %s", self._url, self._server_problem)
            for entry in self._models.values():
                entry.ready = False
            return
        if not was_ready:
            log.info("Triton at %s is ready; checking %d model version(s)", self._url, len(self._models))
        mismatched = dict(self._mismatched)
        for key, entry in self._models.items():
            was_model_ready = entry.ready
            try:
                if not await self._client.is_model_ready(entry.mv.name, str(entry.mv.version),
                                                         client_timeout=_CHECK_TIMEOUT_S):
                    entry.ready = False
                    continue
                if not was_model_ready:  # new, or back: check what Triton serves under that name
                    problem = await self._verify(entry)
                    if problem:
                        if mismatched.get(key) != problem:
                            log.error("model %s version %d not served: %s", *key, problem)
                        mismatched[key] = problem
                        entry.ready = False
                        continue
                    mismatched.pop(key, None)
                entry.ready = True
            except InferenceServerException as exc:
                entry.ready = False
                log.warning("model %s/%d: Triton check failed: %s", entry.mv.name, entry.mv.version, exc)
        if mismatched != self._mismatched:
            self._mismatched = mismatched
            self._repository = self._local.without(mismatched)

    async def _verify(self, entry: _Model) -> str | None:
        """Why Triton's model differs from the repository's (names, dtypes, shapes), or None."""
        assert self._client is not None
        mv = entry.mv
        meta = await self._client.get_model_metadata(mv.name, str(mv.version), client_timeout=_CHECK_TIMEOUT_S)
        config = (await self._client.get_model_config(mv.name, str(mv.version),
                                                      client_timeout=_CHECK_TIMEOUT_S)).config
        batch = [-1] if config.max_batch_size > 0 else []
        problems = []
        for what, expected, served in (("input", mv.inputs, meta.inputs), ("output", mv.outputs, meta.outputs)):
            want = {t.name: _describe(t, batch) for t in expected}
            have = {t.name: (t.datatype, list(t.shape)) for t in served}
            for name in sorted(set(want) | set(have)):
                if want.get(name) != have.get(name):
                    problems.append(f"{what} {name!r}: repository {_show(want.get(name))}, "
                                    f"Triton {_show(have.get(name))}")
        if problems:
            return "Triton serves a different model under this name: " + "; ".join(problems)
        entry.max_batch_size = config.max_batch_size
        return None


def _describe(spec: TensorSpec, batch: list[int]) -> tuple[str, list[int]]:
    return np_to_triton_dtype(spec.dtype), [*batch, *spec.dims]


def _show(described: tuple[str, list[int]] | None) -> str:
    return "absent" if described is None else f"{described[0]} {described[1]}"
