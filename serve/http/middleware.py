"""ASGI middleware of the HTTP app: a size limit on JSON bodies, checked before anything parses them,
and requests that stop when their client goes away.

Both are plain ASGI (no ``BaseHTTPMiddleware``, which would run every request through an extra task
and stream copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ganserve.serve.http.errors import error_body
from ganserve.serve.images import UPLOAD_MEDIA_TYPES

# Bodies these content types carry are uploads, limited by max_upload_bytes where they are read.
_UPLOAD_TYPES = (*UPLOAD_MEDIA_TYPES, "multipart/form-data")
# After a 413, the rest of the body is read and dropped for a while (as nginx's lingering close), so
# that a client still sending gets to read the answer instead of a reset connection.
_DRAIN_S = 2.0
_DRAIN_BYTES = 64 * 1024 * 1024


async def refuse(send: Send, receive: Receive, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
    """Answers with the gateway's error body, then drops the rest of the request body (the response
    completes only afterwards: uvicorn stops reading a request once its response is complete)."""
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await _drain(receive)
    await send({"type": "http.response.body", "body": b""})


async def _drain(receive: Receive) -> None:
    """Reads and drops what is left of a refused body (bounded in time and bytes)."""
    drained = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_S):
            while drained < _DRAIN_BYTES:
                message = await receive()
                drained += len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


class JsonBodyLimit:
    """Reads every non-upload request body up to ``max_bytes`` before the app sees it: a larger one
    is answered 413 ``payload_too_large`` at once (from its ``Content-Length``, or as soon as the
    bytes received pass the limit), never parsed. The app then reads the body from memory."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
        if content_type in _UPLOAD_TYPES:
            await self.app(scope, receive, send)
            return
        too_large = (f"the request body is larger than {self.max_bytes} bytes (max_json_bytes); JSON "
                     f"requests are small, images go to /upscale as uploads")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await refuse(send, receive, 413, "payload_too_large", too_large)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left while sending; there is no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await refuse(send, receive, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_first({"type": "http.request", "body": b"".join(chunks), "more_body": False},
                                           receive), send)


def replay_first(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that gives ``first`` (a message already read) once, then reads on."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return first
        return await receive()

    return replay


class CancelOnDisconnect:
    """Cancels a request's handler when its client disconnects before the response is complete, so
    that its queued work is dropped and its running work stops at the next batch or tile
    (:mod:`ganserve.serve.batcher`, :meth:`ganserve.serve.service.GatewayService.upscale`), instead of running on to
    its deadline for nobody.

    Once the app has read the whole body, a watcher waits on the connection (uvicorn's ``receive``
    then returns only ``http.disconnect``: when the client goes, or after the response is sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = asyncio.Event()
        responded = False

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                responded = True
            await send(message)

        # The app runs in this task; the watcher cancels it (one task per request, not two).
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        gone = finished = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            nonlocal gone
            await body_read.wait()
            message = await receive()
            if message["type"] == "http.disconnect" and not responded and not finished:
                gone = True
                task.cancel()

        def start_watching() -> None:
            nonlocal watcher
            if not finished:
                watcher = loop.create_task(watch())

        # The watcher starts once the app first waits for something (the loop's next step): a request
        # answered in one step (a lone dcgan image, inline) never had a moment to be cancelled in,
        # and skips a task's creation, first step and cancellation (~20 us of the loop's time).
        starting = loop.call_soon(start_watching)
        try:
            await self.app(scope, tracked_receive, tracked_send)
        except asyncio.CancelledError:
            if not gone:  # cancelled from outside (shutdown): not ours to swallow
                raise
            task.uncancel()  # ours: the request ends here, quietly
        finally:
            finished = True  # (no await since the app returned: the watcher cannot cancel after this)
            starting.cancel()
            if watcher is not None:
                watcher.cancel()
