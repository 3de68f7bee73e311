"""/docs (Swagger UI) and /redoc render the gateway's API in a real headless Chromium with nothing but
the gateway to talk to: every request the pages make goes to the gateway (the ``visit`` fixture aborts
and reports any other), so they work offline."""

from __future__ import annotations

import httpx
import pytest

from tests.serve.helpers import RunningGateway

pytestmark = pytest.mark.timeout(120)

OPERATIONS = {("POST", "/generate"), ("POST", "/interpolate"), ("POST", "/upscale"), ("GET", "/models"),
              ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


def open_docs(visit, gateway: RunningGateway, path: str):
    """The page at ``path``, whose HTML names no CDN."""
    html = httpx.get(f"{gateway.http_url}{path}").text.lower()
    assert "cdn" not in html and "googleapis" not in html and "http" not in html.replace(gateway.http_url, "")
    return visit(path)


def test_swagger_ui_renders_every_operation_offline(visit, gateway: RunningGateway) -> None:
    v = open_docs(visit, gateway, "/docs")
    page = v.page
    page.wait_for_selector(".opblock-summary")
    shown = set(zip(page.eval_on_selector_all(".opblock-summary-method", "ms => ms.map(m => m.textContent)"),
                    page.eval_on_selector_all(".opblock-summary-path", "ps => ps.map(p => p.dataset.path)")))
    assert shown == OPERATIONS
    assert page.text_content(".info .title").startswith("ganserve gateway")
    page.click(".opblock-summary-path[data-path='/generate']")  # open one: its request body schema shows
    opened = page.locator(".opblock.is-open")
    opened.locator(".opblock-section-request-body").wait_for()
    assert '"prompt_b"' in opened.text_content()  # the request body's example, from the schema
    assert {f"{gateway.http_url}/docs-assets/swagger-ui-bundle.js", f"{gateway.http_url}/openapi.json"} <= set(v.requests)
    v.screenshot("docs", full_page=False)


def test_redoc_renders_offline(visit, gateway: RunningGateway) -> None:
    v = open_docs(visit, gateway, "/redoc")
    page = v.page
    page.wait_for_selector("h2:has-text('Generate images')")
    for summary in ("Walk the latent space between two seeds", "Upscale an image with a super-resolution model",
                    "Loaded models and load problems"):
        assert page.locator(f"h2:has-text('{summary}')").count() == 1
    assert f"{gateway.http_url}/docs-assets/redoc.standalone.js" in v.requests
    v.screenshot("redoc", full_page=False)
