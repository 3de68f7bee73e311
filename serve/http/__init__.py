"""HTTP adapter (FastAPI) over :class:`serve.service.GatewayService`."""

from serve.http.app import create_app

__all__ = ["create_app"]
