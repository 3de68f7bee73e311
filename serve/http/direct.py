"""``POST /generate`` without FastAPI's routing: the gateway's busiest endpoint, answered by the same
code as its route (:func:`ganserve.serve.http.routes.generate_response`), inside the same middleware
(request ids, access log, keys and rate limits, body limits, cancellation).

FastAPI's part of a request (exception middleware, the exit stack, matching the path against every
route, solving the endpoint's dependencies, reading the body through a ``Request``) cost about as much
CPU as dcgan's whole image on this project's 2-core machine (``docs/benchmarks.md``). This ASGI
middleware, the innermost, takes the requests it can answer the same way: a JSON body that parses and
validates as :class:`~ganserve.serve.http.schemas.GenerateRequest`. Anything else (a body that does not
validate, another content type, a mounted app's root path) goes on to FastAPI with the body as it
came, so every refusal keeps its one place and its one message.
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ganserve.serve import errors
from ganserve.serve.http import schemas
from ganserve.serve.http.errors import service_error_response
from ganserve.serve.http.middleware import replay_first
from ganserve.serve.http.routes import generate_response, router

PATH = "/generate"


class DirectGenerate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # FastAPI's route for PATH (the access log and traces name it), from the routes' own router: an
        # app's route list holds included routers, not their routes, in newer FastAPI
        self._route = next(r for r in router.routes if getattr(r, "path", None) == PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        runtime = getattr(scope["app"].state, "runtime", None)
        content_type, accept = _headers(scope["headers"])
        if runtime is None or content_type != b"application/json":
            await self.app(scope, receive, send)
            return
        message = await receive()
        body = _parse(message)
        if body is None:  # FastAPI refuses it (or reads the rest of it) with its one message
            await self.app(scope, replay_first(message, receive), send)
            return
        scope["route"] = self._route
        try:
            response = await generate_response(runtime, body, accept=accept)
        except errors.ServiceError as exc:
            response = service_error_response(exc)
        await response(scope, receive, send)


def _headers(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, str | None]:
    """(the body's media type, lower case without parameters; the Accept header)"""
    content_type, accept = b"", None
    for name, value in headers:
        if name == b"content-type":
            content_type = value.split(b";", 1)[0].strip().lower()
        elif name == b"accept":
            accept = value.decode("latin-1")
    return content_type, accept


def _parse(message: Message) -> schemas.GenerateRequest | None:
    """The request when ``message`` holds its whole body and it is a valid one, else None."""
    if message["type"] != "http.request" or message.get("more_body", False):
        return None
    try:
        data = json.loads(message.get("body", b""))
        return schemas.GenerateRequest.model_validate(data) if isinstance(data, dict) else None
    except (ValueError, ValidationError):  # json's errors are ValueErrors
        return None

