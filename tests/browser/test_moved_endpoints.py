"""The playground on a gateway that wants API keys, serves its docs and metrics on the admin port only
(settings api_keys, docs_endpoint, metrics_endpoint) and other models (the test repository: two versions
of a tiny generator, three broken models): the page asks for a key, goes on without docs and metrics,
and the docs render offline where they moved."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from tests.browser.test_playground import submit, wait_for
from tests.serve.helpers import RunningGateway, build_repository, running_gateway, test_settings

pytestmark = pytest.mark.timeout(120)
KEY = "playground-test-key-0123456789"


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = build_repository(tmp_path_factory.mktemp("repository"))
    keys = f"tester {hashlib.sha256(KEY.encode()).hexdigest()}"
    settings = test_settings(root, api_keys=keys, metrics_endpoint="admin", docs_endpoint="admin")
    with running_gateway(settings) as gateway:
        yield gateway


def test_the_playground_goes_on_without_docs_and_metrics(visit, moved: RunningGateway) -> None:
    v = visit("/", origin=moved.http_url)
    page = v.page
    # no key yet: the gateway's 401 is the models panel's message, and the key field shows
    assert page.text_content("#models-panel .message").startswith("401 unauthenticated: an API key is required")
    assert page.text_content("#grid-panel .message") == "The models could not be listed (see Models below)."
    assert page.is_disabled("#grid-form button[type=submit]")
    page.fill("#key-form [name=key]", KEY)
    page.click("#key-form button")
    page.wait_for_selector("#grid-form button[type=submit]:enabled")
    assert page.is_hidden("#models-panel .message")
    assert "does not serve /metrics on this port" in page.text_content("#metrics-panel .message")
    assert page.is_hidden("#endpoint-table")
    assert page.locator("header nav a").all_text_contents() == ["/models"]  # no links to what is not here
    assert page.get_attribute("#grid-form [name=n]", "max") is None  # no schema here: the gateway checks
    # both versions of tiny can be chosen; the default is what a request naming none gets, the latest
    options = page.eval_on_selector_all("#grid-form [name=model] option", "os => os.map(o => o.value)")
    assert options == ["tiny@1", "tiny@2"] and page.input_value("#grid-form [name=model]") == "tiny@2"
    page.select_option("#grid-form [name=model]", "tiny@1")
    submit(page, "#grid-form", n="3", seed="9")
    wait_for(page, "document.querySelectorAll('#grid .tile img').length === 3")
    assert all(image.size == (8, 8) for image in v.images("#grid .tile img"))
    assert page.text_content("#grid-panel .message").startswith("3 images from tiny v1")
    page.select_option("#grid-form [name=model]", "tiny@2")
    first = v.images("#grid .tile img")[0]
    submit(page, "#grid-form")
    wait_for(page, "document.querySelector('#grid-panel .message').textContent.includes('tiny v2')")
    assert not np.array_equal(np.asarray(first), np.asarray(v.images("#grid .tile img")[0]))  # other weights
    # the models that failed to load are listed with the gateway's reason; no panel for kinds not loaded
    problems = page.locator("#model-problems li").all_text_contents()
    assert sorted(p.split(":")[0] for p in problems) == ["badconfig", "garbage v1", "nolatent v1"]
    assert page.text_content("#upscale-panel .message") == "No super-resolution model is loaded in this gateway."
    assert page.is_disabled("#upscale-file")
    v.screenshot("moved-endpoints")


def test_the_docs_render_offline_on_the_admin_port(visit, moved: RunningGateway) -> None:
    v = visit("/docs", origin=moved.admin_url)
    v.page.wait_for_selector(".opblock-summary-path[data-path='/generate']")
    assert f"{moved.admin_url}/docs-assets/swagger-ui-bundle.js" in v.requests
    r = visit("/redoc", origin=moved.admin_url)
    r.page.wait_for_selector("h2:has-text('Generate images')")
