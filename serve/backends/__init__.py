"""Inference backends behind one interface (:class:`ganserve.serve.backends.base.Backend`)."""

from __future__ import annotations

from collections.abc import Callable

from ganserve.serve.backends.base import Backend, Tensors
from ganserve.serve.metrics import Metrics
from ganserve.serve.settings import Settings

__all__ = ["Backend", "BackendNotAvailable", "Tensors", "create_backend"]


class BackendNotAvailable(Exception):
    """The configured backend cannot be used (an unknown name)."""


def create_backend(settings: Settings, *, metrics: Metrics, alone: Callable[[], bool] = lambda: True) -> Backend:
    """The backend named by ``settings.backend`` (not loaded yet: call ``await backend.load()``).
    ``alone``: whether the gateway is serving one request only (the embedded backend runs short
    batches on the event loop only then)."""
    if settings.backend == "onnxruntime":
        from ganserve.serve.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(settings, metrics=metrics, alone=alone)
    if settings.backend == "triton":
        from ganserve.serve.backends.triton import TritonBackend

        return TritonBackend(settings, metrics=metrics)
    raise BackendNotAvailable(f"unknown backend {settings.backend!r}; valid: onnxruntime, triton")
