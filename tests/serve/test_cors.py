"""Browsers: CORS for allowed origins only, and cross-site form posts refused, checked with real HTTP
requests carrying the headers a browser sends (Origin, Sec-Fetch-Site, preflights)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from ganserve.serve.access.keys import digest_of
from tests.serve.helpers import RunningGateway, running_gateway, test_settings

APP = "https://app.example.com"
EVIL = "https://evil.example.net"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _form_upscale(gw: RunningGateway, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.http_url}/upscale", files={"image": ("a.png", _png(), "image/png")},
                      headers=headers, timeout=30)


def test_cross_site_form_posts_are_refused(full_gateway: RunningGateway) -> None:
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"},
                    {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}):
        r = _form_upscale(full_gateway, **headers)
        assert r.status_code == 403, headers
        error = r.json()["error"]
        assert error["code"] == "permission_denied" and "form post from another site" in error["message"]
        assert error["request_id"] == r.headers["x-request-id"]
    # the other body types a browser posts without asking first
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        r = httpx.post(f"{full_gateway.http_url}/generate", content=b'{"seed": 1}',
                       headers={"Content-Type": content_type, "Origin": EVIL})
        assert r.status_code == 403, content_type


def test_programs_and_same_origin_pages_may_post_forms(full_gateway: RunningGateway) -> None:
    assert _form_upscale(full_gateway).status_code == 200  # a program: no Origin
    own = full_gateway.http_url  # the playground's page, served by the gateway itself
    assert _form_upscale(full_gateway, Origin=own, **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    # JSON needs a CORS preflight, which no origin passes by default: not refused here
    r = httpx.post(f"{full_gateway.http_url}/generate", json={"seed": 1}, headers={"Origin": EVIL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_no_cors_by_default(full_gateway: RunningGateway) -> None:
    preflight = httpx.options(f"{full_gateway.http_url}/generate", headers={
        "Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture(scope="module")
def cors(full_repo: Path):
    settings = test_settings(full_repo, cors_allow_origins=f"{APP}, https://other.example.com",
                             api_keys=f"web {digest_of('web-key')}")
    with running_gateway(settings) as gw:
        yield gw


def test_allowed_origins_pass_preflight_and_read_the_answer(cors: RunningGateway) -> None:
    preflight = httpx.options(f"{cors.http_url}/generate", headers={
        "Origin": APP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-request-id"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == APP
    assert {"authorization", "content-type", "x-request-id"} <= {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    denied = httpx.options(f"{cors.http_url}/generate", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in denied.headers
    r = httpx.post(f"{cors.http_url}/generate", json={"seed": 1},
                   headers={"Origin": APP, "Authorization": "Bearer web-key"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after", "ratelimit-remaining"} <= exposed


def test_refusals_carry_cors_headers_so_pages_can_read_them(cors: RunningGateway) -> None:
    r = httpx.post(f"{cors.http_url}/generate", json={"seed": 1}, headers={"Origin": APP})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP


def test_allowed_origins_may_post_forms(cors: RunningGateway) -> None:
    r = _form_upscale(cors, Origin=APP, **{"Sec-Fetch-Site": "cross-site", "X-API-Key": "web-key"})
    assert r.status_code == 200
    assert _form_upscale(cors, Origin=EVIL, **{"X-API-Key": "web-key"}).status_code == 403


def test_cross_site_forms_can_be_allowed(full_repo: Path) -> None:
    with running_gateway(test_settings(full_repo, cross_site_forms=True)) as gw:
        assert _form_upscale(gw, Origin=EVIL).status_code == 200
