"""The gateway's errors as Python exceptions: one type per ``error.code`` of docs/gateway.md ("Errors").

Every failure of a client call raises a :class:`GanserveError`. Answers from the gateway are mapped once,
by :func:`from_http` (status, ``{"error": {"code", "message"}}`` body, ``Retry-After``) and
:func:`from_grpc` (status code, details, the ``ganserve-error-code`` trailing metadata); a call that no
gateway answers raises :class:`GatewayUnavailable`.
"""

from __future__ import annotations

import json


class GanserveError(Exception):
    """Base of every error a client call raises.

    ``code`` is the gateway's machine-readable code (``error.code`` over HTTP, the
    ``ganserve-error-code`` trailer over gRPC); ``http_status`` and ``grpc_code`` (a ``grpc.StatusCode``
    name such as ``"NOT_FOUND"``) are what the gateway answered or, for the other protocol, what
    docs/gateway.md maps the code to."""

    code: str = "error"
    http_status: int | None = None
    grpc_code: str | None = None
    retryable = False  # worth sending again later (the clients' ``retries``)

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None,
                 grpc_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        if grpc_code is not None:
            self.grpc_code = grpc_code


class InvalidArgument(GanserveError):
    """A parameter is missing, malformed or out of range (or the upload is a corrupt image)."""

    code, http_status, grpc_code = "invalid_argument", 422, "INVALID_ARGUMENT"


class ModelNotFound(GanserveError):
    """No loaded model (or version) matches the request."""

    code, http_status, grpc_code = "model_not_found", 404, "NOT_FOUND"


class PayloadTooLarge(GanserveError):
    """The upload or body is over the gateway's limits (``max_upload_bytes``, ``max_pixels``, ...)."""

    code, http_status, grpc_code = "payload_too_large", 413, "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(GanserveError):
    """The upload is not an image in a format the gateway decodes."""

    code, http_status, grpc_code = "unsupported_media_type", 415, "INVALID_ARGUMENT"


class QueueFull(GanserveError):
    """The gateway has as much work in flight as it admits: try again in ``retry_after_s`` seconds
    (``None`` when the gateway did not say: gRPC carries no ``Retry-After``)."""

    code, http_status, grpc_code = "queue_full", 429, "RESOURCE_EXHAUSTED"
    retryable = True

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None,
                 grpc_code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, code=code, http_status=http_status, grpc_code=grpc_code)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(GanserveError):
    """The request did not finish in time: the gateway's deadline, or the client's ``timeout``."""

    code, http_status, grpc_code = "deadline_exceeded", 504, "DEADLINE_EXCEEDED"


class NotReady(GanserveError):
    """The gateway is warming up or shutting down (or at its connection cap)."""

    code, http_status, grpc_code = "not_ready", 503, "UNAVAILABLE"
    retryable = True


class UpstreamError(GanserveError):
    """The inference server behind the gateway (Triton) failed the request."""

    code, http_status, grpc_code = "upstream_error", 502, "INTERNAL"


class Unauthenticated(GanserveError):
    """The gateway wants an API key and got none, or one it does not know (``api_key``)."""

    code, http_status, grpc_code = "unauthenticated", 401, "UNAUTHENTICATED"


class PermissionDenied(GanserveError):
    """The API key may not call this endpoint or use this model."""

    code, http_status, grpc_code = "permission_denied", 403, "PERMISSION_DENIED"


class RateLimited(QueueFull):
    """The caller is over its rate limit: try again in ``retry_after_s`` seconds."""

    code, http_status, grpc_code = "rate_limited", 429, "RESOURCE_EXHAUSTED"


class GatewayUnavailable(GanserveError):
    """Nothing answers at the URL: connection refused, unknown host, or the connection broke."""

    code = "gateway_unavailable"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no gateway answers at {url}: {reason}")
        self.url = url
        self.reason = reason


ERROR_TYPES: tuple[type[GanserveError], ...] = (
    InvalidArgument, ModelNotFound, PayloadTooLarge, UnsupportedMediaType, QueueFull, DeadlineExceeded,
    NotReady, UpstreamError, Unauthenticated, PermissionDenied, RateLimited,
)
_BY_CODE = {error.code: error for error in ERROR_TYPES}
# Answers without one of the gateway's own codes (a proxy, the HTTP server or gRPC runtime themselves)
_BY_HTTP_STATUS = {401: Unauthenticated, 403: PermissionDenied, 413: PayloadTooLarge, 415: UnsupportedMediaType, 422: InvalidArgument, 429: QueueFull,
                   408: DeadlineExceeded, 504: DeadlineExceeded, 503: NotReady, 502: UpstreamError}
_BY_GRPC_CODE = {"INVALID_ARGUMENT": InvalidArgument, "NOT_FOUND": ModelNotFound,
                 "UNAUTHENTICATED": Unauthenticated, "PERMISSION_DENIED": PermissionDenied,
                 "RESOURCE_EXHAUSTED": QueueFull, "DEADLINE_EXCEEDED": DeadlineExceeded}


def from_http(status: int, body: bytes, *, url: str, retry_after: str | None = None) -> GanserveError:
    """The error of an HTTP answer whose status is not 2xx."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):  # not the gateway's JSON error body
        text = body[:200].decode("utf-8", "replace").strip()
        code, message = "http_error", f"HTTP {status} from {url}" + (f": {text}" if text else "")
    kind = _BY_CODE.get(code) or _BY_HTTP_STATUS.get(status, GanserveError)
    if issubclass(kind, QueueFull):
        seconds = retry_after.strip() if retry_after else ""
        return kind(message, code=code, http_status=status,
                         retry_after_s=float(seconds) if seconds.replace(".", "", 1).isdigit() else None)
    return kind(message, code=code, http_status=status)


def from_grpc(status: str, details: str, *, code: str | None, url: str) -> GanserveError:
    """The error of a failed gRPC call: ``status`` is the ``grpc.StatusCode`` name, ``code`` the
    ``ganserve-error-code`` trailer (``None`` when the gateway's service did not answer)."""
    if code in _BY_CODE:
        return _BY_CODE[code](details, code=code, grpc_code=status)
    if status == "UNAVAILABLE":  # the channel found no server (or lost it)
        return GatewayUnavailable(url, details)
    if status == "RESOURCE_EXHAUSTED" and "larger than max" in details:  # gRPC's own message size limit
        return PayloadTooLarge(details, grpc_code=status)
    if status in _BY_GRPC_CODE:
        return _BY_GRPC_CODE[status](details, code=code, grpc_code=status)
    return GanserveError(details, code=code or status.lower(), grpc_code=status)
