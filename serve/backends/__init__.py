"""Inference backends behind one interface (:class:`serve.backends.base.Backend`)."""

from __future__ import annotations

from serve.backends.base import Backend, Tensors
from serve.metrics import Metrics
from serve.settings import Settings

__all__ = ["Backend", "BackendNotAvailable", "Tensors", "create_backend"]


class BackendNotAvailable(Exception):
    """The configured backend cannot be used (an unknown name)."""


def create_backend(settings: Settings, *, metrics: Metrics) -> Backend:
    """The backend named by ``settings.backend`` (not loaded yet: call ``await backend.load()``)."""
    if settings.backend == "onnxruntime":
        from serve.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(settings, metrics=metrics)
    if settings.backend == "triton":
        from serve.backends.triton import TritonBackend

        return TritonBackend(settings, metrics=metrics)
    raise BackendNotAvailable(f"unknown backend {settings.backend!r}; valid: onnxruntime, triton")
