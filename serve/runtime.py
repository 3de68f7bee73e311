"""What one gateway process owns: settings, metrics, the backend and the service, and readiness."""

from __future__ import annotations

import logging

from serve.backends import Backend, create_backend
from serve.metrics import Metrics
from serve.service import GatewayService
from serve.settings import Settings

log = logging.getLogger(__name__)


class Runtime:
    """Built before anything listens; :meth:`load` warms the models up (ready afterwards)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.backend: Backend = create_backend(settings, metrics=self.metrics)
        self.service = GatewayService(backend=self.backend, settings=settings)
        self._stopping = False
        self.metrics.ready.set(0)

    async def load(self) -> None:
        """Loads and warms up every model (a broken model is reported, the rest load)."""
        await self.backend.load()
        repo = self.backend.repository
        self.metrics.models_loaded.set(sum(len(v) for v in repo.models.values()))
        self.metrics.model_load_problems.set(len(repo.problems))
        self.metrics.ready.set(1 if self.ready() else 0)

    def ready(self) -> bool:
        """Models are loaded, at least one serves, and no shutdown has begun."""
        return self.backend.ready() and bool(self.backend.repository.models) and not self._stopping

    def readiness(self) -> str:
        """Why the gateway is (not) ready, in a few words."""
        if self._stopping:
            return "shutting down"
        if not self.backend.ready():
            return self.backend.readiness()
        if not self.backend.repository.models:
            return "no model loaded"
        return "ready"

    def begin_shutdown(self) -> None:
        """Readiness goes false at once (load balancers stop sending); in-flight work continues."""
        self._stopping = True
        self.metrics.ready.set(0)

    async def close(self) -> None:
        self.begin_shutdown()
        await self.backend.close()
