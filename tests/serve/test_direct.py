"""``POST /generate`` answered without FastAPI's routing (ganserve.serve.http.direct): the same answers as
FastAPI's route, byte for byte, and everything it cannot answer goes on to FastAPI with its body intact.

The real gateway (uvicorn, the whole middleware) serves both paths: a body declared
``application/json`` takes the direct path; the same body declared ``application/ganserve+json``
(which FastAPI also reads as JSON) takes FastAPI's route."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from ganserve.serve.http import create_app
from ganserve.serve.http.direct import DirectGenerate
from ganserve.serve.runtime import Runtime
from tests.serve.helpers import RunningGateway, test_settings

VIA_FASTAPI = "application/ganserve+json"  # FastAPI parses +json types as JSON; the direct path does not take them

CASES: list[tuple[dict[str, Any], dict[str, str]]] = [
    ({"seed": 5}, {"Accept": "image/png"}),                          # raw PNG
    ({"seed": 5, "n": 3}, {}),                                       # JSON envelope, three images
    ({"model": "tiny", "version": 1, "seed": 9, "truncation": 0.7}, {"Accept": "image/png"}),
    ({"model": "tiny", "seed": 2**64 - 1}, {}),                      # the largest seed
    ({"model": "nosuchmodel", "seed": 1}, {}),                       # 404 from the service
    ({"seed": 1, "n": 2}, {"Accept": "image/png"}),                  # 422: raw needs n = 1 (the route's rule)
    ({"seed": -1}, {}),                                              # 422 from the service's range check
    ({"seed": 1, "n": 1000}, {}),                                    # 422: max_images_per_request
]


def _post(gateway: RunningGateway, body: bytes, content_type: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{gateway.http_url}/generate", content=body,
                      headers={"Content-Type": content_type, **headers}, timeout=30)


def _same(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    skip = {"x-request-id", "date"}
    assert {k: v for k, v in a.headers.items() if k not in skip} == \
        {k: v for k, v in b.headers.items() if k not in skip}
    if a.headers["content-type"] == "application/json":
        da, db = a.json(), b.json()
        if "error" in da:
            da["error"].pop("request_id"), db["error"].pop("request_id")
        assert da == db
    else:
        assert a.content == b.content


@pytest.mark.parametrize(("body", "headers"), CASES, ids=[json.dumps(b) for b, _ in CASES])
def test_the_direct_path_answers_as_fastapis_route_does(gateway: RunningGateway, body: dict[str, Any],
                                                        headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    _same(_post(gateway, data, "application/json", headers), _post(gateway, data, VIA_FASTAPI, headers))


@pytest.mark.parametrize("data", [b'{"seed": "7"}', b'{"seed": 1, "colour": "red"}', b'{"seed": 1', b"[1, 2]",
                                  b"", b'{"format": "bmp"}', b'{"seed": 1.5}'])
def test_bodies_fastapi_refuses_are_refused_the_same_way(gateway: RunningGateway, data: bytes) -> None:
    direct, routed = _post(gateway, data, "application/json", {}), _post(gateway, data, VIA_FASTAPI, {})
    assert direct.status_code == 422, direct.text
    _same(direct, routed)


def test_both_paths_count_and_log_the_request_the_same_way(gateway: RunningGateway,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    def served() -> float:
        line = next(x for x in gateway.metrics_text().splitlines() if x.startswith(
            'ganserve_requests_total{endpoint="generate",model="tiny",outcome="ok",protocol="http"}'))
        return float(line.rsplit(" ", 1)[1])

    before = served()
    with caplog.at_level("INFO", logger="ganserve.access"):
        for content_type in ("application/json", VIA_FASTAPI):
            _post(gateway, b'{"model": "tiny", "seed": 3}', content_type, {"X-Request-ID": f"via-{content_type[12:16]}"})
    assert served() == before + 2
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ganserve.access"]
    by_id = {x["request_id"]: x for x in lines}
    for request_id in ("via-json", "via-gans"):
        assert by_id[request_id]["route"] == "/generate"
        assert by_id[request_id]["model"] == "tiny"
        assert by_id[request_id]["status"] == 200


class _Behind:
    """The app behind DirectGenerate in the test below: records what reaches it, answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_what_the_direct_path_does_not_take_reaches_fastapi_whole(model_repo: Path) -> None:
    """DirectGenerate in front of an app that records what reaches it (standing in for FastAPI, so that
    the test sees which requests pass), with a real gateway app and runtime in the scope."""
    behind = _Behind()
    direct = DirectGenerate(behind)
    settings = test_settings(model_repo)

    async def call(app: Any, path: str, messages: list[bytes], content_type: bytes = b"application/json") -> int:
        scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"content-type", content_type)],
                 "app": app, "root_path": ""}
        pending = [{"type": "http.request", "body": m, "more_body": i < len(messages) - 1}
                   for i, m in enumerate(messages)]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return pending.pop(0) if pending else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await direct(scope, receive, send)
        return sent[0]["status"]

    async def main() -> None:
        runtime = Runtime(settings)
        await runtime.load()
        app = create_app(settings, runtime=runtime)
        try:
            assert await call(app, "/generate", [b'{"seed": 4, "model": "tiny"}']) == 200
            assert await call(app, "/generate", [b'{"seed": 4, "model": "nosuchmodel"}']) == 404
            assert behind.bodies == []
            passed = [([b'{"seed": 4,', b' "model": "tiny"}'], b"application/json"),  # a body in two parts
                      ([b'{"seed": "4"}'], b"application/json"),                     # does not validate
                      ([b'{"seed": 4}'], b"text/plain"),                             # not declared JSON
                      ([b'{"seed": 4}'], b"application/x+json")]
            for messages, content_type in passed:
                assert await call(app, "/generate", messages, content_type) == 299
                assert behind.bodies[-1] == b"".join(messages)
            assert await call(app, "/generate/", [b'{"seed": 4}']) == 299
            assert await call(app, "/interpolate", [b"{}"]) == 299
            assert len(behind.bodies) == len(passed) + 2
        finally:
            await runtime.close()

    asyncio.run(main())
