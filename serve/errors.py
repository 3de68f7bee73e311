"""Failures a client can cause, one type each.

The service raises these; each adapter maps them exactly once: :data:`ganserve.serve.http.errors.HTTP_STATUS`
and :data:`ganserve.serve.grpc.servicer.GRPC_CODE`. Every type carries a stable machine-readable ``code``
(the ``error.code`` of an HTTP error body, the ``ganserve-error-code`` trailer of a gRPC status).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a request can end with, other than a bug."""

    code: str = "error"

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.model = model  # the resolved model, when known (a metrics label)


class InvalidArgument(ServiceError):
    """A parameter is missing, malformed or out of range."""

    code = "invalid_argument"


class ModelNotFound(ServiceError):
    """No loaded model (or version) matches the request."""

    code = "model_not_found"


class PayloadTooLarge(ServiceError):
    """An upload is larger than ``max_upload_bytes`` or ``max_pixels``."""

    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    """An upload is not an image the gateway can decode."""

    code = "unsupported_media_type"


class QueueFull(ServiceError):
    """The model's queue holds ``max_queue_depth`` images already; try again shortly."""

    code = "queue_full"

    def __init__(self, message: str, *, model: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, model=model)
        self.retry_after_s = retry_after_s


class Unauthenticated(ServiceError):
    """API keys are on and the request has no valid key."""

    code = "unauthenticated"


class PermissionDenied(ServiceError):
    """The request's API key may not call this endpoint or use this model."""

    code = "permission_denied"


class RateLimited(ServiceError):
    """The caller's rate-limit bucket does not hold the request's price; ``headers``: ``Retry-After``
    and the ``RateLimit-*`` fields (HTTP headers; gRPC trailing metadata, in lower case)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, headers: dict[str, str],
                 model: str | None = None) -> None:
        super().__init__(message, model=model)
        self.retry_after_s = retry_after_s
        self.headers = headers


class DeadlineExceeded(ServiceError):
    """The request did not finish within ``request_timeout_s`` (or the client's deadline)."""

    code = "deadline_exceeded"


class NotReady(ServiceError):
    """The gateway is still warming up, or shutting down."""

    code = "not_ready"


class UpstreamError(ServiceError):
    """The inference server (Triton) refused or failed the request; the message is its own."""

    code = "upstream_error"


# Every concrete type, for the adapters' mapping tables and the test that they are complete.
ERROR_TYPES: tuple[type[ServiceError], ...] = (
    InvalidArgument, ModelNotFound, PayloadTooLarge, UnsupportedMediaType, QueueFull,
    DeadlineExceeded, NotReady, UpstreamError, Unauthenticated, PermissionDenied, RateLimited,
)
