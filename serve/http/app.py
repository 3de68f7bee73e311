"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from ganserve.serve.http.access import install_access
from ganserve.serve.http.direct import DirectGenerate
from ganserve.serve.http.errors import install_error_handlers
from ganserve.serve.http.middleware import CancelOnDisconnect, JsonBodyLimit
from ganserve.serve.http.playground import install_docs, install_playground
from ganserve.serve.http.routes import metrics_router, router
from ganserve.serve.runtime import Runtime
from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
# FastAPI's own OpenTelemetry (newer FastAPI): off. The gateway traces its requests itself
# (ganserve.serve.access.tracing, settings otlp_*) and counts them in Prometheus; FastAPI's would
# add a second span per request, and it looks up the global providers on every request.
_NATIVE_TELEMETRY_OFF = ({"telemetry": {"tracing": False, "metrics": False, "logs": False}}
                         if "telemetry" in inspect.signature(FastAPI).parameters else {})
DESCRIPTION = """Images from GAN generators served with ONNX Runtime (or Triton).

Errors have one body: `{"error": {"code": "...", "message": "..."}}`. Same request (model, version,
seed, parameters) -> same image bytes, over HTTP or gRPC, batched or not."""


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> FastAPI:
    """The HTTP app. Given a ``runtime`` (shared with the gRPC server), the app uses it and leaves its
    life to the caller; without one, the app's lifespan builds one and loads the models in the
    background (``/healthz`` answers at once, ``/readyz`` once the models are warm)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:  # owned by the caller, already on app.state
            yield
            return
        own = app.state.runtime = Runtime(settings)
        loading = asyncio.create_task(own.load(), name="load-models")
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await own.close()

    try:
        app_version = version("ganserve")
    except PackageNotFoundError:  # running from a source tree that was never installed
        app_version = "0+unknown"
    public_docs = settings.docs_endpoint == "public"  # else on the admin port (ganserve.serve.http.admin), or off
    app = FastAPI(title="ganserve gateway", version=app_version, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,  # install_docs: the same pages with local assets
                  openapi_url="/openapi.json" if public_docs else None, **_NATIVE_TELEMETRY_OFF)
    if runtime is not None:
        app.state.runtime = runtime
    _document_limits(app, settings)
    install_error_handlers(app)
    app.add_middleware(DirectGenerate)  # innermost: POST /generate without FastAPI's routing
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(JsonBodyLimit, max_bytes=settings.max_json_bytes)
    install_access(app, settings)  # outermost: request ids, access log, CORS, API keys, rate limits
    app.include_router(router)
    if settings.metrics_endpoint == "public":
        app.include_router(metrics_router)
    if public_docs:
        install_docs(app)
    install_playground(app)
    return app


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Puts this gateway's limits (settings) into its OpenAPI schema."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            components = schema["components"]["schemas"]
            components["GenerateRequest"]["properties"]["n"]["maximum"] = settings.max_images_per_request
            components["InterpolateRequest"]["properties"]["frames"]["maximum"] = \
                settings.max_interpolation_frames
            for name in ("prompt", "prompt_b"):
                for variant in components["GenerateRequest"]["properties"][name].get("anyOf", []):
                    if variant.get("type") == "string":
                        variant["maxLength"] = settings.max_prompt_chars
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
