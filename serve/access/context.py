"""One request's identity, visible to every layer it passes through (adapters, service, backends,
log records) through a context variable: asyncio copies it into the tasks a request starts.

Request IDs: a client may send its own (HTTP ``X-Request-ID``, gRPC metadata ``x-request-id``) to
follow a call through its logs and ours; one that is empty, too long or holds characters outside
:data:`_ID_PATTERN` is replaced by a new one (never echoed). Otherwise the gateway makes one.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ganserve.serve.access.keys import ApiKey
    from ganserve.serve.access.ratelimit import TokenBucket

REQUEST_ID_HEADER = "x-request-id"   # HTTP header and gRPC metadata key (lower case, as gRPC needs)
REQUEST_ID_SCOPE_KEY = "ganserve.request_id"  # where an HTTP request's id sits in its ASGI scope
MAX_REQUEST_ID_CHARS = 128
# Letters, digits and the punctuation of UUIDs, ULIDs, W3C trace ids and AWS/GCP request ids.
_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:/+=@-]{{1,{MAX_REQUEST_ID_CHARS}}}")


@dataclass
class RequestContext:
    """What is known of a request so far; the adapter creates it, the rest fills it in."""

    request_id: str
    protocol: str                     # "http" or "grpc"
    route: str = ""                   # route template ("/generate") or RPC ("/ganserve.v1.Gateway/Generate")
    client: str = ""                  # the peer's address
    model: str = ""                   # the model that served it, once resolved
    key: ApiKey | None = None         # the API key it presented (keys on)
    bucket: TokenBucket | None = None  # the rate-limit bucket it draws on (limits on)
    gate: Charger | None = None        # the gate it passed (what charges its work)
    tracer: Any = None                 # OpenTelemetry's tracer, when tracing is on
    span: Any = None                   # the request's span, when traced

    @property
    def key_id(self) -> str:
        return self.key.id if self.key is not None else ""


class Charger(Protocol):
    """What charges a request's work to its rate limit (:class:`ganserve.serve.access.gate.Gate`)."""

    def charge(self, context: RequestContext, seconds: float, *, what: str) -> None: ...


_CURRENT: ContextVar[RequestContext | None] = ContextVar("ganserve_request", default=None)


def request_id_from(value: str | bytes | None) -> str:
    """The client's request id when it is acceptable, else a new one (32 hex digits)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _ID_PATTERN.fullmatch(value):
        return value
    return uuid.uuid4().hex


def begin(context: RequestContext) -> Token[RequestContext | None]:
    return _CURRENT.set(context)


def end(token: Token[RequestContext | None]) -> None:
    _CURRENT.reset(token)


def current() -> RequestContext | None:
    """The request being served by the running task, if any."""
    return _CURRENT.get()


def current_request_id() -> str:
    context = _CURRENT.get()
    return context.request_id if context is not None else ""


def note_model(name: str) -> None:
    """Records the model a request resolved to (for its access-log line)."""
    context = _CURRENT.get()
    if context is not None:
        context.model = name


class RequestIdFilter(logging.Filter):
    """Gives every log record a ``request_id`` attribute (``-`` outside a request), so that a format
    with ``%(request_id)s`` ties each line to its request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True
