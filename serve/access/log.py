"""The access log: one JSON line per request, at ``info``, on the logger ``ganserve.access``.

Fields: ``time`` (UTC, ISO 8601), ``request_id``, ``protocol``, ``route`` (route template or RPC),
``model``, ``key_id`` (the API key's id, never the key; empty when keys are off), ``client``
(address:port), ``status`` (HTTP status or gRPC status name), ``duration_ms``, ``bytes_in`` and
``bytes_out`` (bodies / messages)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from ganserve.serve.access.context import RequestContext, RequestIdFilter

ACCESS_LOGGER = "ganserve.access"
_log = logging.getLogger(ACCESS_LOGGER)
# The format of every other log line: the request id ties lines of one request together.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def log_access(context: RequestContext, *, status: int | str, duration_s: float, bytes_in: int,
               bytes_out: int) -> None:
    """Writes the request's access-log line (when ``info`` is enabled for ``ganserve.access``)."""
    if not _log.isEnabledFor(logging.INFO):
        return
    line = json.dumps({
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"), "request_id": context.request_id,
        "protocol": context.protocol, "route": context.route, "model": context.model,
        "key_id": context.key_id, "client": context.client, "status": status,
        "duration_ms": round(duration_s * 1000, 3), "bytes_in": bytes_in, "bytes_out": bytes_out,
    }, separators=(",", ":"))
    # a record made directly: logging's own info() walks the stack to find its caller, every request
    _log.handle(_log.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, line, None, None))


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is written (not the stream of the moment it
    was made, which may be closed by then: a gateway run in-process by a test, then another)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str, *, access_log: bool) -> None:
    """The gateway's logging (``ganserve serve``): lines with the request id, and the access log as
    bare JSON lines on the same stream (``access_log`` off: not written). Calling it again replaces
    what it set up. Logging set up already by someone else (a test runner, a program that runs the
    gateway in-process) is left alone, as :func:`logging.basicConfig` does."""
    if any(not isinstance(h, _Stderr) for h in logging.getLogger().handlers):
        return
    lines = _Stderr()
    lines.addFilter(RequestIdFilter())
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, handlers=[lines], force=True)
    access = logging.getLogger(ACCESS_LOGGER)
    for handler in [h for h in access.handlers if isinstance(h, _Stderr)]:
        access.removeHandler(handler)
    access.propagate = False
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
