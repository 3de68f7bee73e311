"""The interface every inference backend implements (embedded ONNX Runtime, Triton).

A backend knows models and tensors, nothing of HTTP, gRPC, seeds or images.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol, runtime_checkable

import numpy as np

from ganserve.serve.repository import Repository

Tensors = dict[str, np.ndarray]
# When the request being served must be done (event-loop time), set by the service for the request's
# whole context: a backend may run work in deadline order (the embedded batcher does). None: no deadline.
REQUEST_DEADLINE: ContextVar[float | None] = ContextVar("ganserve_request_deadline", default=None)


@runtime_checkable
class Backend(Protocol):
    """Loads a model repository and runs inference on its models."""

    async def load(self) -> None:
        """Loads and warms up every model it can. A model that fails becomes a problem in
        :attr:`repository`; it never stops the others. Ready once this returns."""

    def ready(self) -> bool:
        """True while requests can be served: after :meth:`load`, before :meth:`close`, and (for a
        remote server) while the server answers."""

    def readiness(self) -> str:
        """``"ready"``, or why not, in a few words (``/readyz`` shows it)."""

    @property
    def repository(self) -> Repository:
        """The models being served (their metadata) and the problems of those that are not."""

    async def infer(self, model: str, version: int, inputs: Tensors) -> Tensors:
        """Runs one request: every input is ``[n, ...]``; returns every output as ``[n, ...]``.

        Raises :class:`ganserve.serve.errors.ModelNotFound` for a model or version not loaded and
        :class:`ganserve.serve.errors.QueueFull` when the model's queue is full. May be cancelled (deadline).
        """

    async def close(self) -> None:
        """Releases sessions and connections; queued requests fail with NotReady."""
