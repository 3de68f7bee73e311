"""Test support for the client: calling it sync or async, the gateway's answers fetched directly with
httpx (the reference the client must match), small images, and a URL nothing answers at."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
from typing import Any

import httpx
import numpy as np
from PIL import Image

from ganserve.client import AsyncClient, Client
from tests.serve.helpers import RunningGateway

MODES = ("sync", "async")
PROTOCOLS = ("http", "grpc")


def url(gateway: RunningGateway, protocol: str) -> str:
    return gateway.http_url if protocol == "http" else f"grpc://{gateway.grpc_target}"


def call(address: str, mode: str, method: str, *args: Any, client: dict[str, Any] | None = None,
         **kwargs: Any) -> Any:
    """``Client(address).method(*args, **kwargs)``, or the same through ``AsyncClient`` under ``asyncio.run``."""
    options = client or {}
    if mode == "sync":
        with Client(address, **options) as sync:
            return getattr(sync, method)(*args, **kwargs)

    async def main() -> Any:
        async with AsyncClient(address, **options) as aio:
            return await getattr(aio, method)(*args, **kwargs)

    return asyncio.run(main())


def direct(gateway: RunningGateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of ``POST path`` sent with httpx."""
    response = httpx.post(f"{gateway.http_url}{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def direct_images(gateway: RunningGateway, body: dict[str, Any]) -> list[tuple[int, bytes]]:
    """(seed, file) of each image of ``POST /generate``."""
    return [(i["seed"], base64.b64decode(i["data"])) for i in direct(gateway, "/generate", body)["images"]]


def direct_upscale(gateway: RunningGateway, image: bytes, **params: Any) -> bytes:
    response = httpx.post(f"{gateway.http_url}/upscale", params=params, content=image, timeout=30,
                          headers={"Content-Type": "image/png", "Accept": "image/png"})
    assert response.status_code == 200, response.text
    return response.content


def png(shape: tuple[int, ...], seed: int = 0) -> bytes:
    """A PNG of random pixels, ``shape`` = (H, W) or (H, W, C)."""
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def unused_port() -> int:
    """A loopback port nothing listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
