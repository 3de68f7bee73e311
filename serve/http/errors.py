"""Errors as HTTP responses: the one mapping from service errors to status codes, and handlers that
give every failure the same JSON body, ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ganserve.serve import errors
from ganserve.serve.access.context import REQUEST_ID_SCOPE_KEY, current_request_id
from ganserve.serve.http.schemas import ErrorBody

log = logging.getLogger(__name__)

# The one mapping from service errors to HTTP status codes.
HTTP_STATUS: dict[type[errors.ServiceError], int] = {
    errors.InvalidArgument: 422,
    errors.ModelNotFound: 404,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.QueueFull: 429,
    errors.DeadlineExceeded: 504,
    errors.NotReady: 503,
    errors.UpstreamError: 502,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.RateLimited: 429,
}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
               415: "unsupported_media_type"}
def error_body(code: str, message: str) -> dict[str, Any]:
    """The one error body; ``request_id``: the request's id (also its ``X-Request-ID`` header)."""
    return {"error": {"code": code, "message": message, "request_id": current_request_id()}}


def error_headers(exc: errors.ServiceError) -> dict[str, str] | None:
    """The headers an error carries: ``Retry-After`` (queue full, rate limited), ``RateLimit-*``,
    ``WWW-Authenticate`` (no valid key)."""
    if isinstance(exc, errors.RateLimited):
        return exc.headers
    if isinstance(exc, errors.QueueFull):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, errors.Unauthenticated):
        return {"WWW-Authenticate": 'Bearer realm="ganserve"'}
    return None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": ", ".join(e.code for e, s in HTTP_STATUS.items() if s == status)}
    for status in sorted(set(HTTP_STATUS.values()))
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def service_error_response(exc: errors.ServiceError) -> JSONResponse:
    return error_response(HTTP_STATUS[type(exc)], exc.code, exc.message, error_headers(exc))


def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ServiceError)
    return service_error_response(exc)


def _not_json(request: Request, exc: RequestValidationError) -> str | None:
    """The 415 message when a JSON route got a body it did not parse as JSON, else None.

    FastAPI parses a body as JSON only under ``Content-Type: application/json`` (or ``+json``); any
    other type, or none (FastAPI's strict content type: a browser may post a body without one, or as
    a form, without asking first), hands the model the raw bytes, which it refuses as "Input should
    be a valid dictionary" - a message that does not name the header. ``curl -d`` sends
    ``application/x-www-form-urlencoded`` unless told otherwise."""
    route = request.scope.get("route")
    if not (isinstance(exc.body, bytes) and isinstance(route, APIRoute) and route.body_field is not None):
        return None
    sent = request.headers.get("content-type", "")[:100]
    got = f"it came with Content-Type: {sent}" if sent else "it came without a Content-Type"
    return (f"{request.url.path} takes a JSON body with the header 'Content-Type: application/json'; {got} "
            f"(curl -d sends application/x-www-form-urlencoded unless given -H 'Content-Type: application/json')")


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A body or query that does not match the schema: 422 invalid_argument, like the service's; a
    body that is not declared as JSON: 415 unsupported_media_type, naming the header."""
    assert isinstance(exc, RequestValidationError)
    route = request.scope.get("route")
    runtime = getattr(request.app.state, "runtime", None)
    not_json = _not_json(request, exc)
    code = errors.UnsupportedMediaType.code if not_json else errors.InvalidArgument.code
    if runtime is not None and route is not None:  # never reached the service: count it here
        runtime.metrics.requests.labels("http", route.name, "", code).inc()
    if not_json:
        return error_response(415, code, not_json)
    problems = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return error_response(422, errors.InvalidArgument.code, "; ".join(problems) or "invalid request")


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette answers a bug outside the app's middleware, where the request's context has ended:
    # its id comes from the scope (ganserve.serve.http.access.RequestLog leaves it there).
    request_id = request.scope.get(REQUEST_ID_SCOPE_KEY, "")
    log.exception("unexpected error serving %s %s", request.method, request.url.path, exc_info=exc,
                  extra={"request_id": request_id or "-"})
    return JSONResponse({"error": {"code": "internal", "message": "internal error; the gateway's log has the "
                                   "details", "request_id": request_id}}, status_code=500,
                        headers={"X-Request-ID": request_id} if request_id else None)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
