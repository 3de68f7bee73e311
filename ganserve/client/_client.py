"""``Client`` and ``AsyncClient``: the operations of :mod:`ganserve.client._operations` bound to a transport
(HTTP or gRPC), with optional retries. Each method is the operation's own function (its signature and
docstring), run by the client's ``_run``: sync, or a coroutine to await."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from ganserve.client import _operations as ops
from ganserve.client._grpc import AsyncGrpcTransport, GrpcTransport
from ganserve.client._http import AsyncHttpTransport, HttpTransport
from ganserve.client.errors import GanserveError

P = ParamSpec("P")
T = TypeVar("T")
DEFAULT_URL = "http://localhost:8000"
DEFAULT_TIMEOUT_S = 300.0  # above the gateway's own deadlines (upscale_timeout_s: 180 s)


def endpoint(url: str, *, grpc: bool = False) -> tuple[str, bool]:
    """(the URL with its scheme, whether it is gRPC): ``http://host:port`` or ``https://...`` -> HTTP,
    ``grpc://host:port`` -> gRPC; a bare ``host:port`` is gRPC with ``grpc=True``, else HTTP."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator:
        scheme, rest = ("grpc" if grpc else "http"), url.strip()
    scheme, rest = scheme.lower(), rest.rstrip("/")
    if scheme not in ("http", "https", "grpc"):
        raise ValueError(f"gateway URL {url!r}: use http://HOST:PORT or grpc://HOST:PORT")
    if grpc and scheme != "grpc":
        raise ValueError(f"gateway URL {url!r} is an HTTP URL, but grpc=True")
    if not rest:
        raise ValueError(f"gateway URL {url!r} names no host")
    return f"{scheme}://{rest}", scheme == "grpc"


@dataclass(frozen=True)
class Retries:
    """Sending a request again after a retryable refusal (429 ``queue_full``, 503 ``not_ready``)."""

    attempts: int = 0          # how many times a request may be sent again (0: never)
    max_wait_s: float = 30.0   # longest wait before one: a longer Retry-After ends the retrying at once

    def delay(self, error: GanserveError, attempt: int) -> float | None:
        """Seconds to wait before sending again after ``error`` on try ``attempt`` (0 first); None: give up."""
        if not error.retryable or attempt >= self.attempts:
            return None
        seconds = getattr(error, "retry_after_s", None)
        seconds = min(0.25 * 2 ** attempt, self.max_wait_s) if seconds is None else seconds  # gRPC: no Retry-After
        return seconds if seconds <= self.max_wait_s else None


class _Base:
    """What both clients hold: the URL, a transport of its protocol and the retry policy."""

    _transports: tuple[Callable[..., Any], Callable[..., Any]]  # (HTTP, gRPC)

    def __init__(self, url: str = DEFAULT_URL, *, grpc: bool = False, timeout: float | None = DEFAULT_TIMEOUT_S,
                 retries: int = 0, max_retry_wait_s: float = 30.0, api_key: str | None = None) -> None:
        self.url, is_grpc = endpoint(url, grpc=grpc)
        self.protocol = "grpc" if is_grpc else "http"
        http, rpc = self._transports
        self._transport = (rpc if is_grpc else http)(self.url, timeout=timeout, api_key=api_key)
        self._retries = Retries(retries, max_retry_wait_s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _signature(build: Callable[..., Any], *, awaitable: bool) -> inspect.Signature:
    """The method's signature: ``self``, then the operation's parameters; it returns what the operation's
    parser does (awaitable for the async client)."""
    signature = inspect.signature(build)
    returns = str(signature.return_annotation)
    assert returns.startswith("Operation[") and returns.endswith("]"), returns
    returns = returns.removeprefix("Operation[").removesuffix("]")
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    return signature.replace(parameters=[self, *signature.parameters.values()],
                             return_annotation=f"Awaitable[{returns}]" if awaitable else returns)


def _sync(build: Callable[P, ops.Operation[T]]) -> Callable[Concatenate[Client, P], T]:
    @functools.wraps(build)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(build(*args, **kwargs))

    method.__signature__ = _signature(build, awaitable=False)  # type: ignore[attr-defined]
    return method


def _async(build: Callable[P, ops.Operation[T]]) -> Callable[Concatenate[AsyncClient, P], Awaitable[T]]:
    @functools.wraps(build)
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(build(*args, **kwargs))

    method.__signature__ = _signature(build, awaitable=True)  # type: ignore[attr-defined]
    return method


class Client(_Base):
    """A client of a running gateway: ``Client("http://localhost:8000")`` or ``Client("grpc://localhost:50051")``.

    url: ``http://HOST:PORT`` (or https), ``grpc://HOST:PORT``, or ``HOST:PORT`` with ``grpc=True``;
    timeout: seconds one request may take (None: no limit); retries: how many times a request refused
    with 429 ``queue_full`` / ``rate_limited`` or 503 ``not_ready`` is sent again, after the gateway's
    ``Retry-After`` (gRPC: 0.25 s, doubling), at most ``max_retry_wait_s`` each; api_key: sent with every
    call (``Authorization: Bearer``; gRPC metadata ``authorization``) to a gateway with API keys on. Every
    failure raises a
    :class:`~ganserve.client.errors.GanserveError`. Use it in a ``with`` block, or call ``close()``.
    """

    _transports = (HttpTransport, GrpcTransport)

    def _run(self, operation: ops.Operation[T]) -> T:
        for attempt in itertools.count():
            try:
                return operation.parse(self._transport.send(operation.call))
            except GanserveError as exc:
                if (delay := self._retries.delay(exc, attempt)) is None:
                    raise
            time.sleep(delay)
        raise AssertionError("unreachable")

    generate = _sync(ops.generate)
    interpolate = _sync(ops.interpolate)
    upscale = _sync(ops.upscale)
    models = _sync(ops.models)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """:class:`Client` for asyncio: the same arguments and methods, each a coroutine. Use it in an
    ``async with`` block, or await ``close()``."""

    _transports = (AsyncHttpTransport, AsyncGrpcTransport)

    async def _run(self, operation: ops.Operation[T]) -> T:
        for attempt in itertools.count():
            try:
                return operation.parse(await self._transport.send(operation.call))
            except GanserveError as exc:
                if (delay := self._retries.delay(exc, attempt)) is None:
                    raise
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    generate = _async(ops.generate)
    interpolate = _async(ops.interpolate)
    upscale = _async(ops.upscale)
    models = _async(ops.models)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
