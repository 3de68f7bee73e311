"""The HTTP transports (httpx, sync and async): a :class:`Call` as a request of docs/gateway.md, the JSON
answer as a reply, failures as :mod:`ganserve.client.errors`."""

from __future__ import annotations

import base64
import os
import re
from typing import Any

import httpx

from ganserve.client import errors
from ganserve.client._operations import Call, Reply

_ROUTES = {"generate": ("POST", "/generate"), "interpolate": ("POST", "/interpolate"),
           "upscale": ("POST", "/upscale"), "models": ("GET", "/models")}


def request(call: Call) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client.request`` for ``call`` (always answered as JSON)."""
    method, path = _ROUTES[call.endpoint]
    headers = {"Accept": "application/json"}
    if call.upload is not None:  # the image is the raw body, the parameters go in the query
        if call.upload.media_type is None:  # a form's file: the gateway says what it is not
            body: dict[str, Any] = {"files": {"image": ("upload", call.upload.data)}}
        else:
            body = {"content": call.upload.data}
            headers["Content-Type"] = call.upload.media_type
        return {"method": method, "url": path, "params": call.fields, "headers": headers} | body
    return {"method": method, "url": path, "headers": headers} | ({"json": call.fields} if method == "POST" else {})


def _decoded(value: Any) -> Any:
    """The JSON answer with every image's base64 ``data`` as bytes."""
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {key: _decoded(v) for key, v in value.items()}
    if "media_type" in value and isinstance(value.get("data"), str):
        out["data"] = base64.b64decode(value["data"])
    return out


def reply(response: httpx.Response, *, url: str) -> Reply:
    if not response.is_success:
        raise errors.from_http(response.status_code, response.content, url=url,
                               retry_after=response.headers.get("retry-after"))
    try:
        return _decoded(response.json())
    except ValueError:
        raise errors.GanserveError(f"{url} answered {response.request.url.path} with something other than "
                                   f"the gateway's JSON; is it a ganserve gateway?", code="bad_response") from None


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in the system's words ("Connection refused", "Name or service not known"):
    the first OS error in the chain of causes, else the exception's own message."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    return re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or type(exc).__name__


def failure(exc: httpx.TransportError, *, url: str, timeout: float | None) -> errors.GanserveError:
    """The error of a request that got no answer."""
    reason = _reason(exc)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return errors.GatewayUnavailable(url, reason)
    if isinstance(exc, httpx.TimeoutException):
        return errors.DeadlineExceeded(f"no answer from {url} within the client's timeout of {timeout} s")
    return errors.GatewayUnavailable(url, f"the connection failed ({reason})")


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class HttpTransport:
    def __init__(self, url: str, *, timeout: float | None, api_key: str | None = None) -> None:
        self.url, self._timeout = url, timeout
        self._http = httpx.Client(base_url=url, timeout=timeout, headers=auth_headers(api_key))

    def send(self, call: Call) -> Reply:
        try:
            response = self._http.request(**request(call))
        except httpx.TransportError as exc:
            raise failure(exc, url=self.url, timeout=self._timeout) from exc
        return reply(response, url=self.url)

    def close(self) -> None:
        self._http.close()


class AsyncHttpTransport:
    def __init__(self, url: str, *, timeout: float | None, api_key: str | None = None) -> None:
        self.url, self._timeout = url, timeout
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout, headers=auth_headers(api_key))

    async def send(self, call: Call) -> Reply:
        try:
            response = await self._http.request(**request(call))
        except httpx.TransportError as exc:
            raise failure(exc, url=self.url, timeout=self._timeout) from exc
        return reply(response, url=self.url)

    async def close(self) -> None:
        await self._http.aclose()
