"""Embedded backend: one ONNX Runtime session per model version, each behind a micro-batcher.

An ensemble (``platform: "ensemble"``) has no session of its own: :meth:`OnnxRuntimeBackend.infer`
runs its steps through the step models' own batchers, as Triton runs an ensemble through its
composing models' schedulers, so concurrent requests still batch per step model. While a step runs,
the steps after it are announced to their batchers (``MicroBatcher.expect``): a batch there may wait
for them (up to the model's queue delay) rather than leave without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ganserve.serve.backends.base import Tensors
from ganserve.serve.batcher import BatchObserver, MicroBatcher
from ganserve.serve.errors import ModelNotFound, NotReady
from ganserve.serve.metrics import Metrics
from ganserve.serve.repository import ModelVersion, Repository, load_repository
from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_CLOSE_WAIT_S = 5.0  # on close, how long a running batch may take to finish


@dataclass
class _Instance:
    """A loaded model version: its session, the thread that runs it and its batcher."""

    session: ort.InferenceSession
    executor: ThreadPoolExecutor
    batcher: MicroBatcher


class OnnxRuntimeBackend:
    """Serves a model repository in process with ONNX Runtime (CPU, or CUDA when installed)."""

    def __init__(self, settings: Settings, *, metrics: Metrics, alone: Callable[[], bool] = lambda: True) -> None:
        self._settings, self._metrics, self._alone = settings, metrics, alone
        self._repository = Repository(root=settings.model_repository, models={}, problems=())
        self._instances: dict[tuple[str, int], _Instance] = {}
        self._ensembles: dict[tuple[str, int], ModelVersion] = {}
        self._ready = False

    @property
    def repository(self) -> Repository:
        return self._repository

    def ready(self) -> bool:
        return self._ready

    def readiness(self) -> str:
        return "ready" if self._ready else "loading models"

    async def load(self) -> None:
        repository = await asyncio.to_thread(load_repository, self._settings.model_repository)
        failed: dict[tuple[str, int], str] = {}
        for versions in repository.models.values():
            for mv in versions:
                if mv.is_ensemble:  # runs through its steps' sessions
                    continue
                try:
                    self._instances[mv.name, mv.version] = await asyncio.to_thread(self._open, mv)
                except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the rest
                    failed[mv.name, mv.version] = f"ONNX Runtime could not load or run it: {exc}"
                    log.error("model %s version %d not loaded: %s", mv.name, mv.version, exc)
        self._repository = repository.without(failed)  # also drops ensembles with a failed step
        self._ensembles = {(mv.name, mv.version): mv for versions in self._repository.models.values()
                           for mv in versions if mv.is_ensemble}
        for instance in self._instances.values():
            instance.batcher.start()
        self._ready = True
        loaded = sum(len(v) for v in self._repository.models.values())
        log.info("onnxruntime backend ready: %d model version(s), %d problem(s)",
                 loaded, len(self._repository.problems))

    def _open(self, mv: ModelVersion) -> _Instance:
        """Creates the session and warms it up (blocking) at the largest batch its batcher can merge,
        so that the runtime's working memory is at its peak before the gateway measures its own
        footprint (ganserve.serve.admission). A super-resolution batch is bounded by ``upscale_batch_pixels``
        whatever the requests' tile sizes, so this takes about a second, not minutes."""
        variable = any(d < 0 for t in mv.inputs for d in t.dims)
        max_values = 3 * self._settings.upscale_batch_pixels if mv.kind == "super-resolution" else None
        available = ort.get_available_providers()
        providers = [p for p in _PREFERRED_PROVIDERS if p in available]
        threads = self._settings.ort_intra_op_threads
        session = _session(mv, threads=threads, variable=variable, providers=providers)
        if threads == 0 and "CUDAExecutionProvider" not in session.get_providers() and (os.cpu_count() or 1) > 1:
            session = self._fewest_threads(mv, session, variable=variable, providers=providers)
        largest = _warmup_inputs(mv, max_values=max_values, free_side=self._settings.upscale_max_tile_size)
        try:
            session.run(None, largest)
        except Exception as exc:  # noqa: BLE001 - served as far as it runs; its batches will fail alike
            rows = len(next(iter(largest.values())))
            log.warning("model %s version %d fails at batch %d (%s); warmed up at batch 1", mv.name,
                        mv.version, rows, exc)
            session.run(None, _warmup_inputs(mv, max_values=1, free_side=self._settings.upscale_min_tile_size))
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{mv.name}-{mv.version}")
        labels = (mv.name, str(mv.version))
        batch_size = self._metrics.batch_size.labels(*labels)
        inference_duration = self._metrics.inference_duration.labels(*labels)
        observer = BatchObserver(
            batch=lambda rows, values, seconds: (batch_size.observe(rows), inference_duration.observe(seconds)),
            queue_depth=self._metrics.queue_depth.labels(*labels).set,
            queue_wait=self._metrics.queue_wait.labels(*labels).observe,
        )
        delay_ms = self._settings.batch_max_queue_delay_ms
        delay_s = delay_ms / 1000 if delay_ms is not None else (mv.queue_delay_us or 0) / 1e6
        batcher = MicroBatcher(
            _runner(session), executor=executor, max_batch_size=mv.max_batch_size,
            max_queue_delay_s=delay_s, max_queue_depth=self._settings.max_queue_depth,
            max_batch_values=max_values, merge=self._settings.batching, wait_alone=self._settings.batch_wait_alone,
            inline_max_s=self._settings.batch_inline_max_ms / 1000, alone=self._alone,
            observer=observer, name=mv.name)
        return _Instance(session=session, executor=executor, batcher=batcher)

    def _fewest_threads(self, mv: ModelVersion, session: ort.InferenceSession, *, variable: bool,
                        providers: list[str]) -> ort.InferenceSession:
        """``ort_intra_op_threads`` 0 on a CPU: ONNX Runtime's own choice (a thread per core) or one
        thread, whichever this model needs. Small generators gain nothing from more threads (measured on
        2 cores: dcgan's batches of 1 to 64 take as long with 2 threads as with 1, for 1.5x the CPU),
        and that CPU is taken from the event loop and the other models; large convolutions (a
        super-resolution tile) run 1.7-1.8x faster on 2. Both are timed here on a typical batch, in
        alternating runs; one thread is kept unless the pool is at least ``_THREADS_MIN_GAIN`` faster."""
        sample = _timing_inputs(mv, tile_side=min(64, self._settings.upscale_max_tile_size))
        single = _session(mv, threads=1, variable=variable, providers=providers)
        try:
            many_s, one_s = _best_times([session, single], sample)
        except Exception:  # noqa: BLE001 - the warm-up that follows says what fails
            return session
        keep_pool = keeps_thread_pool(one_s=one_s, many_s=many_s)
        log.info("model %s version %d: %s intra-op thread(s) (a typical batch: %.2f ms on one thread, %.2f ms "
                 "on ONNX Runtime's pool)", mv.name, mv.version, "ONNX Runtime's" if keep_pool else "1",
                 one_s * 1e3, many_s * 1e3)
        return session if keep_pool else single

    async def infer(self, model: str, version: int, inputs: Tensors) -> Tensors:
        if not self._ready:
            raise NotReady("the gateway is not ready (models are loading, or it is shutting down)")
        instance = self._instances.get((model, version))
        if instance is not None:
            return await instance.batcher.submit(inputs)
        ensemble = self._ensembles.get((model, version))
        if ensemble is None:
            raise ModelNotFound(f"model {model!r} version {version} is not loaded")
        return await self._run_ensemble(ensemble, inputs)

    async def _run_ensemble(self, mv: ModelVersion, inputs: Tensors) -> Tensors:
        """Runs the steps as their inputs become available (steps that do not depend on each other
        run concurrently), each through its model's batcher; returns the ensemble's outputs."""
        missing = sorted({t.name for t in mv.inputs} - inputs.keys())
        if missing:
            raise ValueError(f"ensemble {mv.name!r} needs the inputs {missing}")
        tensors: Tensors = dict(inputs)  # every ensemble tensor written so far
        pending = list(mv.steps)
        # The steps still to come, announced to their batchers; each announcement ends once its step
        # is scheduled (so it is queued before its batcher's worker looks again) or the request fails.
        coming = {id(s): self._instances[s.model, s.version].batcher.expect() for s in pending
                  if (s.model, s.version) in self._instances}
        try:
            while pending:
                runnable = [s for s in pending if set(s.input_map.values()) <= tensors.keys()]
                if not runnable:  # the repository reader orders steps, so this means a bug there
                    raise RuntimeError(f"ensemble {mv.name!r}: no step can run with {sorted(tensors)}")
                tasks = [asyncio.ensure_future(
                    self.infer(s.model, s.version, {own: tensors[t] for own, t in s.input_map.items()}))
                    for s in runnable]
                for step in runnable:
                    coming.pop(id(step), lambda: None)()
                try:
                    results = await asyncio.gather(*tasks)
                except BaseException:
                    for task in tasks:
                        task.cancel()
                    raise
                for step, outputs in zip(runnable, results, strict=True):
                    tensors.update({t: outputs[own] for own, t in step.output_map.items()})
                pending = [s for s in pending if not any(s is r for r in runnable)]
        finally:
            for end in coming.values():
                end()
        return {t.name: tensors[t.name] for t in mv.outputs}

    async def close(self) -> None:
        self._ready = False
        for instance in self._instances.values():
            await instance.batcher.close()
            instance.executor.shutdown(wait=False, cancel_futures=True)
        # A batch still running (bounded: max_batch_values) finishes in its thread: wait for it off
        # the event loop, so that its result never arrives at a closed loop; give up after a while.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(
                asyncio.to_thread(i.executor.shutdown, wait=True) for i in self._instances.values())),
                _CLOSE_WAIT_S)
        self._instances.clear()
        self._ensembles.clear()


_THREADS_MIN_GAIN = 1.5  # how much faster ONNX Runtime's thread pool must be to be worth its CPU
_TIMING_ROWS = 16  # rows of the batch that times a generator's thread choice
_TIMING_RUNS = 7


def keeps_thread_pool(*, one_s: float, many_s: float) -> bool:
    """Whether a model keeps ONNX Runtime's intra-op thread pool (``ort_intra_op_threads`` 0): only
    when it runs a typical batch at least ``_THREADS_MIN_GAIN`` times faster than one thread does.
    Short of that, the pool's extra CPU buys too little: on a gateway under load every core is
    busy with other requests anyway."""
    return one_s > _THREADS_MIN_GAIN * many_s


def _session(mv: ModelVersion, *, threads: int, variable: bool, providers: list[str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # No busy-waiting: ONNX Runtime's pool threads otherwise spin after every run, burning a
    # core the event loop needs (measured on 2 cores: 2x the CPU per image, half the batch-64
    # throughput). Scheduling only; results are the same.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # Shapes that change from request to request (tile sizes) would grow ONNX Runtime's memory
    # arena to the sum of their peaks and keep it: without the arena, memory goes back after
    # each run (measured with srresnet: 182 MiB instead of 499 after mixed 64 and 128 tiles,
    # at the same speed).
    options.enable_cpu_mem_arena = not variable
    return ort.InferenceSession(str(mv.path), sess_options=options, providers=providers)


def _timing_inputs(mv: ModelVersion, *, tile_side: int) -> Tensors:
    """A typical batch: one ``tile_side`` tile for a super-resolution model, else up to
    ``_TIMING_ROWS`` rows."""
    if mv.kind == "super-resolution":
        return _warmup_inputs(mv, max_values=1, free_side=tile_side)
    return {name: x[:_TIMING_ROWS] for name, x in _warmup_inputs(mv, max_values=None, free_side=tile_side).items()}


def _best_times(sessions: list[ort.InferenceSession], inputs: Tensors) -> list[float]:
    """The fastest of ``_TIMING_RUNS`` runs of each session (after one to warm up), seconds. The runs
    alternate between the sessions, so that other work on the machine (other models loading, other
    processes) slows both alike rather than one."""
    for session in sessions:
        session.run(None, inputs)
    best = [float("inf")] * len(sessions)
    for _ in range(_TIMING_RUNS):
        for i, session in enumerate(sessions):
            start = time.perf_counter()
            session.run(None, inputs)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _runner(session: ort.InferenceSession):
    """The blocking call a batcher runs in its thread: all outputs, by name."""
    names = [o.name for o in session.get_outputs()]

    def run(inputs: Tensors) -> Tensors:
        return dict(zip(names, session.run(names, inputs), strict=True))

    return run


def _warmup_inputs(mv: ModelVersion, *, max_values: int | None, free_side: int) -> Tensors:
    """Zeros of every input's shape, free dimensions (-1) at ``free_side``, as many rows as one batch
    may hold (``max_batch_size``, and at most ``max_values`` input values)."""
    shapes = {t.name: tuple(d if d > 0 else free_side for d in t.dims) for t in mv.inputs}
    rows = max(1, mv.max_batch_size)
    if max_values is not None:
        row_values = sum(int(np.prod(shape)) for shape in shapes.values())
        rows = max(1, min(rows, max_values // row_values))
    return {t.name: np.zeros((rows, *shapes[t.name]), dtype=t.dtype) for t in mv.inputs}
