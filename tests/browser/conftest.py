"""A real headless Chromium (Debian's package, scripts/install-tools.sh) driven by Playwright, and one
gateway on the shipped models, shared by the browser tests. Without a browser the tests skip, saying
why; under CI (``CI=true``) they fail instead. Screenshots go to test-artifacts/browser/ (git-ignored)."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.serve.helpers import RunningGateway, running_gateway, test_settings

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "model_repository"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("GANSERVE_CHROMIUM", "/usr/bin/chromium"))
# ../shared/guides/offline.md: headless without a sandbox (root in CI), and nothing phoning home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHIPPED = ("dcgan", "srresnet", "text2img")


def unavailable(reason: str) -> None:
    """Skip, or under CI fail: CI must run the browser tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the browser tests",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (the 'dev' extra: scripts/bootstrap.sh)")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (scripts/install-tools.sh installs Debian's chromium as root)")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                  headless=True)
        except Exception as exc:  # noqa: BLE001 - Playwright's Error, whatever the cause
            unavailable(f"Chromium at {CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="package")
def gateway() -> Iterator[RunningGateway]:
    missing = [name for name in SHIPPED if not (REPOSITORY / name / "config.pbtxt").is_file()]
    if missing:
        pytest.skip(f"model_repository/ does not ship {', '.join(missing)} yet")
    with running_gateway(test_settings(REPOSITORY, batch_max_queue_delay_ms=None)) as running:
        yield running


@dataclass
class Visit:
    """A page on the gateway, with every request it made and every script error it raised."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests to anything but the gateway (data: and blob: URLs stay in the page)."""
        return [url for url in self.requests
                if urlsplit(url).scheme not in ("data", "blob") and not url.startswith(self.origin + "/")]

    def screenshot(self, name: str, selector: str | None = None, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if selector:
            self.page.locator(selector).screenshot(path=str(path), animations="disabled")
        else:
            self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    def images(self, selector: str) -> list[Image.Image]:
        """The images the page shows at ``selector``, read back as files (data: or blob: URLs) and
        decoded with Pillow."""
        urls = self.page.eval_on_selector_all(selector, """imgs => Promise.all(imgs.map(async img => {
            const blob = await (await fetch(img.src)).blob();
            return await new Promise(done => { const r = new FileReader(); r.onload = () => done(r.result);
                                               r.readAsDataURL(blob); });
        }))""")
        return [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for url in urls]

    def image_bytes(self, selector: str) -> list[bytes]:
        urls = self.page.eval_on_selector_all(selector, "imgs => imgs.map(img => img.src)")
        return [base64.b64decode(url.split(",", 1)[1]) for url in urls]

    def broken_images(self) -> list[str]:
        """<img> elements that are shown but did not decode."""
        return self.page.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => i.getAttribute('src') && i.complete && i.naturalWidth === 0"
                   " && i.offsetParent !== null).map(i => i.alt || i.src.slice(0, 40))")


@pytest.fixture
def visit(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``visit(path, origin=...)`` opens a page of a gateway (by default the shipped models' one) in a fresh
    browser context. Afterwards: no script errors, and no request left the page's gateway (any attempt
    is also aborted, so nothing goes out)."""
    visits: list[Visit] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    origins: list[str] = []

    def stay_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or any(url.startswith(o + "/") for o in origins):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", stay_local)

    def open_page(path: str = "/", *, origin: str | None = None, wait_ready: bool = True) -> Visit:
        origin = origin or request.getfixturevalue("gateway").http_url
        origins.append(origin)
        page = context.new_page()
        page.set_default_timeout(30_000)
        v = Visit(page, origin)
        page.on("request", lambda r: v.requests.append(r.url))
        page.on("pageerror", lambda e: v.errors.append(str(e)))
        page.on("console", lambda m: v.errors.append(m.text) if m.type == "error" and "status of" not in m.text
                else None)
        page.goto(origin + path)
        if wait_ready and path == "/":
            page.wait_for_selector("body[data-ready=true]", state="attached")
        visits.append(v)
        return v

    yield open_page
    context.close()
    for v in visits:
        assert v.errors == [], f"script errors on {v.page.url}: {v.errors} (requests: {v.requests})"
        assert v.foreign_requests() == [], f"requests that left the gateway: {v.foreign_requests()}"
