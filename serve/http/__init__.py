"""HTTP adapter (FastAPI) over :class:`ganserve.serve.service.GatewayService`."""

from ganserve.serve.http.app import create_app

__all__ = ["create_app"]
