"""The HTTP side of :mod:`ganserve.serve.access`: two plain ASGI middlewares.

:class:`RequestLog` (outermost) gives each request its context and id, puts ``X-Request-ID`` (and,
for a rate-limited caller, ``RateLimit-*``) on every response and writes the access-log line.
:class:`GateKeeper` (inside CORS, so that its refusals carry CORS headers) refuses cross-site form
posts and passes each request through the :class:`~ganserve.serve.access.gate.Gate`: API key,
endpoint scope, rate limit. Health checks, pages (playground, API docs) and CORS preflights are not
gated.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ganserve.serve import errors
from ganserve.serve.access.context import (
    REQUEST_ID_HEADER,
    REQUEST_ID_SCOPE_KEY,
    RequestContext,
    begin,
    current,
    end,
    request_id_from,
)
from ganserve.serve.access.keys import presented_key
from ganserve.serve.access.log import log_access
from ganserve.serve.access.tracing import Tracing
from ganserve.serve.http.errors import HTTP_STATUS, error_headers
from ganserve.serve.http.middleware import refuse
from ganserve.serve.settings import Settings

_REQUEST_ID = REQUEST_ID_HEADER.encode()
_NO_TRACING = Tracing()  # off: for an app without a runtime yet
_MAX_ROUTE_CHARS = 200
# API paths -> the endpoint names of key scopes and metrics labels
ENDPOINTS = {"/generate": "generate", "/interpolate": "interpolate", "/upscale": "upscale",
             "/models": "list_models"}
_OPEN_PATHS = ("/healthz", "/readyz")  # never gated (probes)
# Bodies a browser sends cross-site without asking first (no CORS preflight): an HTML form's
# enctypes. A page on any site can make its visitor's browser post these.
_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded", b"text/plain")
# CORS: what pages of allowed origins may send, and which answer headers their scripts may read
CORS_REQUEST_HEADERS = ("Authorization", "X-API-Key", "X-Request-ID", "Content-Type", "Accept")
CORS_EXPOSED_HEADERS = ("X-Request-ID", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                        "RateLimit-Reset", "X-Ganserve-Model", "X-Ganserve-Model-Version", "X-Ganserve-Seed",
                        "X-Ganserve-Warning")


class RequestLog:
    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app, self.access_log = app, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == _REQUEST_ID), None)
        client = scope.get("client")
        context = RequestContext(request_id=request_id_from(given), protocol="http",
                                 route=scope["path"][:_MAX_ROUTE_CHARS],
                                 client=f"{client[0]}:{client[1]}" if client else "")
        request_id = context.request_id.encode()
        scope[REQUEST_ID_SCOPE_KEY] = context.request_id  # for answers given outside the app (a late body's 408)
        status, bytes_in, bytes_out = 0, 0, 0

        async def counted_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def marked_send(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (_REQUEST_ID, request_id)]
                if context.bucket is not None and status != 429:  # a 429 has its own
                    headers += [(k.lower().encode(), v.encode())
                                for k, v in context.bucket.headers(time.monotonic()).items()]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        token = begin(context)
        start = time.perf_counter()
        tracing = _tracing(scope)
        with tracing.request_span(f"{scope['method']} {context.route}", carrier=_carrier(scope["headers"]),
                                  **{"http.request.method": scope["method"], "url.path": context.route,
                                     "ganserve.request_id": context.request_id}) as span:
            context.tracer, context.span = tracing.tracer, span
            try:
                await self.app(scope, counted_receive, marked_send)
            except BaseException as exc:
                if not status:  # answered outside the app (a bug: 500), or not at all (the client left: 499)
                    status = getattr(exc, "http_status", 500 if isinstance(exc, Exception) else 499)
                raise
            finally:
                route = scope.get("route")
                if route is not None and getattr(route, "path", None):
                    context.route = route.path
                if span is not None:
                    span.update_name(f"{scope['method']} {context.route}")
                    span.set_attributes({"http.route": context.route, "http.response.status_code": status or 499,
                                         "ganserve.model": context.model, "ganserve.key_id": context.key_id})
                if self.access_log:
                    log_access(context, status=status or 499, duration_s=time.perf_counter() - start,
                               bytes_in=bytes_in, bytes_out=bytes_out)
                end(token)


def _tracing(scope: Scope) -> Tracing:
    runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
    return runtime.tracing if runtime is not None else _NO_TRACING


def _carrier(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The W3C trace-context headers of a request, for the request's span to join the caller's trace."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}


class GateKeeper:
    def __init__(self, app: ASGIApp, *, cors_origins: frozenset[str], cross_site_forms: bool) -> None:
        self.app, self.cors_origins, self.cross_site_forms = app, cors_origins, cross_site_forms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        context = current()
        if scope["type"] != "http" or context is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in _OPEN_PATHS or scope["method"] == "OPTIONS" or (
                scope["method"] in ("GET", "HEAD") and path not in ENDPOINTS and path != "/metrics"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        endpoint = ENDPOINTS.get(path, path[:_MAX_ROUTE_CHARS])
        try:
            if scope["method"] == "POST" and not self.cross_site_forms:
                self._refuse_cross_site_forms(headers)
            runtime = scope["app"].state.runtime
            credential = presented_key(authorization=headers.get(b"authorization", b"").decode("latin-1"),
                                       api_key=headers.get(b"x-api-key", b"").decode("latin-1"))
            runtime.gate.enter(context, credential=credential, endpoint=endpoint)
        except errors.ServiceError as exc:
            runtime = getattr(scope["app"].state, "runtime", None)
            if runtime is not None and path in ENDPOINTS:  # never reached the service: count it here
                runtime.metrics.requests.labels("http", endpoint, "", exc.code).inc()
            await refuse(send, receive, HTTP_STATUS[type(exc)], exc.code, exc.message, error_headers(exc))
            return
        await self.app(scope, receive, send)

    def _refuse_cross_site_forms(self, headers: dict[bytes, bytes]) -> None:
        """A form post (or text/plain) from a page of another site: :class:`PermissionDenied`."""
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type not in _FORM_TYPES:
            return  # any other type makes a browser ask first (CORS preflight)
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin in self.cors_origins or "*" in self.cors_origins:
            return
        own = headers.get(b"host", b"").decode("latin-1")
        cross = headers.get(b"sec-fetch-site", b"") == b"cross-site" or (
            origin and (origin == "null" or urlsplit(origin).netloc != own))
        if cross:
            raise errors.PermissionDenied(
                f"a form post from another site's page (Origin {origin[:100] or 'unknown'}) is refused: "
                f"send the request from a page on an allowed origin (cors_allow_origins), or from a "
                f"program (no Origin header)")


def install_access(app: FastAPI, settings: Settings) -> None:
    """Adds, outside the app's other middleware: :class:`GateKeeper`, CORS (when
    ``cors_allow_origins`` names any) and :class:`RequestLog` (outermost)."""
    origins = frozenset(filter(None, (o.strip() for o in settings.cors_allow_origins.split(","))))
    app.add_middleware(GateKeeper, cors_origins=origins, cross_site_forms=settings.cross_site_forms)
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=sorted(origins), allow_methods=["GET", "POST"],
                           allow_headers=list(CORS_REQUEST_HEADERS), expose_headers=list(CORS_EXPOSED_HEADERS),
                           max_age=600)
    app.add_middleware(RequestLog, access_log=settings.access_log)
