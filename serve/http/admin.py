"""The admin port: what operators need and the public should not see, on a second HTTP port
(``admin_port``) that a NetworkPolicy can keep to the cluster: ``/metrics`` when ``metrics_endpoint``
is ``admin``, the API docs (``/docs``, ``/redoc``, ``/openapi.json`` of the public API) when
``docs_endpoint`` is ``admin``, and ``/healthz``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ganserve.serve.http.playground import install_docs
from ganserve.serve.http.routes import metrics_router
from ganserve.serve.runtime import Runtime
from ganserve.serve.settings import Settings


def wants_admin_port(settings: Settings) -> bool:
    return "admin" in (settings.metrics_endpoint, settings.docs_endpoint)


def create_admin_app(settings: Settings, *, public: FastAPI, runtime: Runtime) -> FastAPI:
    """The admin port's app; ``public``: the public app, whose OpenAPI schema the docs show."""
    docs = settings.docs_endpoint == "admin"
    app = FastAPI(title=public.title, version=public.version, description=public.description,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json" if docs else None)
    app.state.runtime = runtime
    if settings.metrics_endpoint == "admin":
        app.include_router(metrics_router)
    if docs:
        app.openapi = public.openapi  # type: ignore[method-assign]
        install_docs(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "live"})

    return app
