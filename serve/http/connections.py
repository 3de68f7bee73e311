"""HTTP connection limits for uvicorn: a cap on open connections, a deadline for the request line
and headers, and one for the request body.

Every open connection holds a file descriptor. uvicorn bounds only the idle time between requests
on a kept-alive connection (``timeout_keep_alive``): a client that connects and says nothing, or
sends its headers or body a byte at a time, holds its descriptor for as long as it likes, and once
enough of them have exhausted the process's descriptors every new connection is reset with nothing
logged. :class:`HttpConnections` closes each of those in bounded time and refuses connections over
``max_connections`` with an answer and a log line instead::

    connections = HttpConnections(settings)
    uvicorn.Config(connections.wrap(app), http=connections.protocol,
                   timeout_keep_alive=settings.http_keepalive_timeout_s, ...)

- ``protocol`` (uvicorn's HTTP protocol factory) refuses a connection over the cap with a JSON 503
  and ``Connection: close``, and closes a connection that has not sent a request's headers within
  ``http_header_timeout_s`` of opening (or of the next request's first byte) with a JSON 408.
- ``wrap`` (an ASGI middleware) ends a request whose body has not arrived in full within
  ``http_body_timeout_s`` with a JSON 408, and the connection closes.

Both 408s and the 503 have the gateway's error body, ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ganserve.serve.access.context import REQUEST_ID_SCOPE_KEY
from ganserve.serve.settings import Settings

log = logging.getLogger(__name__)
LOG_INTERVAL_S = 10.0  # after the first line of a run of refusals (or timeouts), one line this often
REFUSAL_LINGER_S = 1.0  # longest a refused connection stays open for its client to read the 503
MAX_LINGERING = 64      # refused connections lingering at once; past that, one more is closed unanswered


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response with the gateway's JSON error body, ending the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    phrase = {408: "Request Timeout", 503: "Service Unavailable"}[status]
    lines = [f"HTTP/1.1 {status} {phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close",
             *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RateLimitedLog:
    """Logs the first of a run of events at once, then at most one line per ``interval_s`` saying
    how many more there were: a flood of refused or timed-out connections shows in the log without
    the log becoming a flood. Runs on the event loop (its callers are protocol callbacks)."""

    def __init__(self, level: int, *, interval_s: float = LOG_INTERVAL_S) -> None:
        self._level = level
        self._interval_s = interval_s
        self._more = 0  # events since the last line
        self._last: tuple[str, tuple[object, ...]] = ("", ())
        self._timer: asyncio.TimerHandle | None = None

    def event(self, message: str, *args: object) -> None:
        if self._timer is None:  # the first for a while: say so now
            log.log(self._level, message, *args)
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._summary)
        else:
            self._more += 1
            self._last = (message, args)

    def _summary(self) -> None:
        self._timer = None
        if self._more:
            message, args = self._last
            log.log(self._level, message + " (%d more in the last %g s)", *args, self._more, self._interval_s)
            self._more = 0
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._summary)


class HttpConnections:
    """The HTTP connection limits of one gateway, from its settings (``http_header_timeout_s``,
    ``http_body_timeout_s``, ``max_connections``; ``http_keepalive_timeout_s`` goes to uvicorn)."""

    def __init__(self, settings: Settings, *, base: type[asyncio.Protocol] = AutoHTTPProtocol) -> None:
        self.max_connections = settings.max_connections
        self.header_timeout_s = settings.http_header_timeout_s
        self.body_timeout_s = settings.http_body_timeout_s
        # uvicorn's own protocol (httptools when installed, else h11) with the header deadline mixed in.
        self._protocol_class: type[asyncio.Protocol] = type(f"Guarded{base.__name__}", (_HeaderDeadline, base), {})
        # Made but not yet connected: uvicorn counts a connection once connection_made runs, and a
        # burst of accepts makes several protocols before the first of them runs.
        self._pending: weakref.WeakSet[asyncio.Protocol] = weakref.WeakSet()
        self._server_state: Any = None  # uvicorn's, from the first connection
        self._lingering: set[_Refusal] = set()
        self.refused = RateLimitedLog(logging.WARNING)
        self.header_timeouts = RateLimitedLog(logging.INFO)
        self.body_timeouts = RateLimitedLog(logging.INFO)
        self._refusal = error_response(
            503, "too_many_connections", f"the gateway has its maximum of {self.max_connections} HTTP "
            f"connections open (max_connections); retry shortly", {"retry-after": "1"})

    def protocol(self, *, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
        """uvicorn's HTTP protocol factory (``uvicorn.Config(http=...)``): one protocol per accepted
        connection, or a :class:`_Refusal` when ``max_connections`` are open already."""
        self._server_state = server_state
        if len(server_state.connections) + len(self._pending) >= self.max_connections:
            self.refused.event("HTTP connection refused: %d connections open (max_connections)",
                               self.max_connections)
            return _Refusal(self._refusal, self._lingering)
        protocol = self._protocol_class(config=config, server_state=server_state, app_state=app_state,
                                        _loop=_loop)
        protocol._guard = self  # type: ignore[attr-defined]
        self._pending.add(protocol)
        return protocol

    def requests_in_progress(self) -> int:
        """HTTP requests read (headers complete) and not yet answered: uvicorn's request tasks."""
        return len(self._server_state.tasks) if self._server_state is not None else 0

    def connected(self, protocol: asyncio.Protocol) -> None:
        self._pending.discard(protocol)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind the body deadline."""
        return _BodyDeadline(app, timeout_s=self.body_timeout_s, log=self.body_timeouts)


class _HeaderDeadline:
    """Mixed into uvicorn's HTTP protocol: a connection must complete each request's headers in
    ``http_header_timeout_s``, counted from the connection opening (a client that never sends a
    byte is closed too) and then from the first byte of each further request (the idle time before
    it is uvicorn's keep-alive timeout). uvicorn starts a new request cycle (``self.cycle``) when a
    request's headers are complete: that ends the deadline, for httptools and h11 alike. (Part of a
    request pipelined behind one still being answered starts no deadline; once the answer is sent,
    uvicorn's keep-alive timeout closes the connection unless the rest arrives.)"""

    _guard: HttpConnections
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._guard.connected(self)  # type: ignore[arg-type]
        super().connection_made(_OneWrite(transport, self.loop))  # type: ignore[misc]
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self._guard.header_timeout_s, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not cycle:  # a request's headers are complete
            self._cancel_header_timer()
        elif self._header_timer is None and (cycle is None or cycle.response_complete) \
                and not self.transport.is_closing():
            # Part of the next request: its headers must follow in time. (A request that arrives
            # whole, the usual case, never starts a timer.)
            self._header_timer = self.loop.call_later(self._guard.header_timeout_s, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # closed already, or a response is under way (the next request waits for it)
        timeout = self._guard.header_timeout_s
        self.transport.write(error_response(
            408, "request_timeout", f"the request line and headers did not arrive within {timeout:g} s "
            f"(http_header_timeout_s)"))
        self.transport.close()
        self._guard.header_timeouts.event(
            "HTTP connection closed with 408: no complete request headers within %g s (http_header_timeout_s)",
            timeout)


class _OneWrite:
    """uvicorn's transport, with a response's head and body sent in one write: uvicorn writes the
    head when the app sends ``http.response.start`` and the body on the next message, two writes
    (two system calls, two TCP segments, and a client woken twice). A head is held until the next
    write in the same event-loop step (the body, when it is at most ``_JOIN_MAX_BYTES``), or the end
    of that step, whichever comes first: nothing waits for the app."""

    __slots__ = ("_held", "_loop", "_transport")
    _JOIN_MAX_BYTES = 64 * 1024  # a larger body goes in its own write rather than be copied

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= self._JOIN_MAX_BYTES:
                self._transport.write(held + data)
                return
            self._transport.write(held)
        elif data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n":  # a response's head
            self._held = data
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's
        return getattr(self._transport, name)


class _Refusal(asyncio.Protocol):
    """A connection over ``max_connections``: answered 503 at once, then closed.

    Closing straight after writing, with the client's request still unread, would make the kernel
    send a reset that can destroy the 503 before the client reads it. So the connection is
    half-closed (the client sees the answer, then end of stream), what the client sends is read and
    dropped, and it closes when the client does, or after ``REFUSAL_LINGER_S`` at most. Past
    ``MAX_LINGERING`` refusals at once, a connection is closed without an answer: a flood of new
    connections must not hold more descriptors than the cap allows."""

    def __init__(self, response: bytes, lingering: set[_Refusal]) -> None:
        self._response = response
        self._lingering = lingering
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self._lingering) >= MAX_LINGERING:
            transport.abort()
            return
        self._lingering.add(self)
        transport.write(self._response)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request it will not serve

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lingering.discard(self)
        if self._timer is not None:
            self._timer.cancel()


class _BodyTimedOut(BaseException):
    """Raised out of ``receive`` when the body is late. A BaseException, like a cancellation, so
    that no ``except Exception`` on the way (FastAPI's body parsing, the gateway's 500 handler)
    turns it into another answer: it reaches :class:`_BodyDeadline`, which answers 408."""

    http_status = 408  # what the request is answered (the access log, on the way out, says so)


class _BodyDeadline:
    """ASGI middleware: a request's whole body must arrive within ``timeout_s`` of the app's first
    ``receive`` (not of each chunk: a client sending a byte a second would otherwise hold the
    connection for as long as the body is long). A late body ends the request with a JSON 408 and
    ``Connection: close``; uvicorn then closes the connection. Once the body is complete, later
    ``receive`` calls (waiting for a disconnect) are not limited."""

    def __init__(self, app: ASGIApp, *, timeout_s: float, log: RateLimitedLog) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_done = False
        started = False

        async def receive_in_time() -> Message:
            nonlocal deadline, body_done
            if body_done:
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimedOut from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_watched)
        except _BodyTimedOut:
            self.log.event("HTTP request ended with 408: its body did not arrive within %g s "
                           "(http_body_timeout_s)", self.timeout_s)
            if started:
                raise  # too late for a 408: uvicorn closes the connection
            request_id = scope.get(REQUEST_ID_SCOPE_KEY, "")  # given by the app's RequestLog
            body = json.dumps({"error": {"code": "request_timeout", "message": (
                f"the request body did not arrive within {self.timeout_s:g} s (http_body_timeout_s)"),
                "request_id": request_id}}).encode()
            await send({"type": "http.response.start", "status": 408, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"), (b"x-request-id", request_id.encode())]})
            await send({"type": "http.response.body", "body": body})
