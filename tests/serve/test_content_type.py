"""JSON endpoints and the Content-Type header (docs/gateway.md, "Content-Type"): a body on /generate or
/interpolate is JSON only when declared as such; any other type, or none, is 415
``unsupported_media_type`` naming the header (never a 422 that does not, never a 5xx), and /upscale
(uploads only, no JSON form) keeps taking raw and multipart images."""

from __future__ import annotations

import io
import shutil
import subprocess

import httpx
import pytest
from PIL import Image

from tests.serve.helpers import RunningGateway

JSON_BODIES = {"/generate": b'{"seed": 7}', "/interpolate": b'{"seed_a": 1, "seed_b": 2, "frames": 2}'}
NOT_JSON = [None, "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x",
            "image/png", "application/octet-stream"]


@pytest.mark.parametrize("path", sorted(JSON_BODIES))
@pytest.mark.parametrize("content_type", NOT_JSON)
def test_a_json_body_not_declared_as_json_is_415_naming_the_header(full_gateway: RunningGateway, path: str,
                                                                    content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = httpx.post(f"{full_gateway.http_url}{path}", content=JSON_BODIES[path], headers=headers)
    assert r.status_code == 415, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "'Content-Type: application/json'" in error["message"] and path in error["message"]
    assert (f"Content-Type: {content_type}" if content_type else "without a Content-Type") in error["message"]


@pytest.mark.parametrize("path", sorted(JSON_BODIES))
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/merge-patch+json"])
def test_json_declared_as_json_is_served(full_gateway: RunningGateway, path: str, content_type: str) -> None:
    r = httpx.post(f"{full_gateway.http_url}{path}", content=JSON_BODIES[path],
                   headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny"


def test_the_refusal_is_counted_under_its_own_code(full_gateway: RunningGateway) -> None:
    def refused() -> float:
        for line in httpx.get(f"{full_gateway.http_url}/metrics").text.splitlines():
            if (line.startswith("ganserve_requests_total{") and 'endpoint="generate"' in line
                    and 'outcome="unsupported_media_type"' in line):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = refused()
    httpx.post(f"{full_gateway.http_url}/generate", content=b"{}", headers={"Content-Type": "text/plain"})
    assert refused() == before + 1


def test_curl_d_without_the_header_gets_the_message(full_gateway: RunningGateway) -> None:
    """The case in point: ``curl -d`` sends application/x-www-form-urlencoded."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-d", '{"seed": 42}',
                          f"{full_gateway.http_url}/generate"], capture_output=True, text=True, timeout=30, check=False)
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "415", out.stdout
    assert "application/x-www-form-urlencoded" in body and "-H 'Content-Type: application/json'" in body


def _png(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upscale_still_takes_raw_and_multipart_images(full_gateway: RunningGateway) -> None:
    url = f"{full_gateway.http_url}/upscale?model=sr2x"
    raw = httpx.post(url, content=_png(), headers={"Content-Type": "image/png", "Accept": "image/png"})
    form = httpx.post(url, files={"image": ("a.png", _png(), "image/png")}, headers={"Accept": "image/png"})
    for r in (raw, form):
        assert r.status_code == 200, r.text
        assert Image.open(io.BytesIO(r.content)).size == (16, 16)


@pytest.mark.parametrize("content_type", [None, "application/json", "application/x-www-form-urlencoded"])
def test_upscale_has_no_json_form_and_says_so(full_gateway: RunningGateway, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = httpx.post(f"{full_gateway.http_url}/upscale", content=b'{"image": "aGk="}', headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"
    assert "multipart/form-data" in r.json()["error"]["message"]
