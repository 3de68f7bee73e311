"""The playground at ``/`` in a real headless Chromium against a live gateway on the shipped models: each
panel is driven as a person would, and the images it shows are read back from the page, decoded with
Pillow and compared with what the HTTP API answers for the same request."""

from __future__ import annotations

import base64
import io
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw
from prometheus_client.parser import text_string_to_metric_families

from tests.serve.helpers import RunningGateway

pytestmark = pytest.mark.timeout(120)


def api_png(gateway: RunningGateway, **request: Any) -> bytes:
    r = httpx.post(f"{gateway.http_url}/generate", json=request, headers={"Accept": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def pixels(image: Image.Image | bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image)


def lit(image: np.ndarray) -> np.ndarray:
    """A colour digit's own pixels (those brighter than the background), as float RGB rows."""
    return image[image.max(axis=-1) > 96].astype(float)


def photo(width: int, height: int) -> bytes:
    """A small colour picture: a gradient with a few shapes (edges for the upscaler to keep)."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    image = Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((3, 3, width // 2, height // 2), fill=(250, 240, 40))
    draw.rectangle((width // 2, height // 2, width - 4, height - 3), fill=(20, 30, 160), outline=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wait_for(page: Any, expression: str, timeout_s: float = 30) -> None:
    """Polls ``expression`` in the page until it is true (Playwright's wait_for_function evaluates it with
    eval, which the playground's Content-Security-Policy forbids, as it should)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {expression}"
        page.wait_for_timeout(50)


def submit(page: Any, form: str, **fields: str) -> None:
    """Fills ``fields`` of ``form`` (by input name) as a person types them, then presses its button."""
    for name, value in fields.items():
        page.fill(f"{form} [name={name}]", value)
    page.click(f"{form} button[type=submit]")


def test_the_seed_grid_shows_the_gateways_images_with_their_seeds(visit, gateway: RunningGateway) -> None:
    v = visit()
    page = v.page
    submit(page, "#grid-form", n="6", seed="100")
    wait_for(page, "document.querySelectorAll('#grid .tile img').length === 6")
    assert page.eval_on_selector_all("#grid .tile", "ts => ts.map(t => t.dataset.seed)") == \
        [str(seed) for seed in range(100, 106)]
    images = v.images("#grid .tile img")
    assert all(image.size == (28, 28) and image.mode == "L" for image in images)
    assert len({pixels(image).tobytes() for image in images}) == 6  # a digit per seed, no two alike
    assert all(pixels(image).std() > 20 for image in images)  # digits, not blank frames
    shown = v.image_bytes("#grid .tile img")
    assert shown[2] == api_png(gateway, model="dcgan", seed=102)  # the very file the API gives

    page.click("#grid .tile >> nth=2")
    assert page.text_content("#grid-detail .seed") == "102"
    with page.expect_download() as download:
        page.click("#grid-detail .download")
    assert download.value.suggested_filename == "dcgan-102.png"
    assert Path(download.value.path()).read_bytes() == shown[2]
    page.click("#grid-detail [data-walk=seed_b]")  # the walk panel takes the seed
    assert page.input_value("#walk-form [name=seed_b]") == "102"
    page.click("#grid-detail [data-upscale]")  # and the upscale panel the image
    page.wait_for_selector("#compare-box:not([hidden])")
    assert [image.size for image in v.images("#before, #after")] == [(28, 28), (112, 112)]
    v.screenshot("seed-grid", "#grid-panel")

    top = 2**64 - 1  # past JavaScript's exact integers: sent and shown exactly
    submit(page, "#grid-form", n="1", seed=str(top))
    wait_for(page, f"document.querySelector('#grid .tile')?.dataset.seed === '{top}'")
    assert v.image_bytes("#grid .tile img") == [api_png(gateway, model="dcgan", seed=top)]


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "model_repository" / "lapgan").is_dir(),
                    reason="lapgan is not shipped")
def test_the_seed_grid_shows_a_pyramids_levels(visit, gateway: RunningGateway) -> None:
    """The levels box appears for lapgan only; checked, a chosen image shows its 7, 14 and 28 pixel levels,
    the very files the API returns."""
    v = visit()
    page = v.page
    assert page.is_hidden("#levels-option")  # dcgan, the default, has no levels
    page.select_option("#grid-form [name=model]", "lapgan@1")
    assert page.is_visible("#levels-option")
    page.check("#grid-form [name=levels]")
    submit(page, "#grid-form", n="3", seed="40")
    wait_for(page, "document.querySelectorAll('#grid .tile img').length === 3")
    page.click("#grid .tile >> nth=1")
    wait_for(page, "document.querySelectorAll('#grid-detail .levels figcaption').length === 3 && "
                   "[...document.querySelectorAll('#grid-detail .levels figcaption')].every(c => c.textContent)")
    assert page.eval_on_selector_all("#grid-detail .levels figcaption", "cs => cs.map(c => c.textContent)") == \
        ["7×7", "14×14", "28×28"]
    r = httpx.post(f"{gateway.http_url}/generate", json={"model": "lapgan", "seed": 41, "levels": True}, timeout=60)
    assert v.image_bytes("#grid-detail .levels img") == [base64.b64decode(x["data"])
                                                         for x in r.json()["images"][0]["levels"]]
    v.screenshot("seed-grid-levels", "#grid-panel")
    page.select_option("#grid-form [name=model]", "dcgan@1")
    assert page.is_hidden("#levels-option")


def test_the_latent_walk_animates_from_one_seed_to_the_other(visit, gateway: RunningGateway) -> None:
    v = visit()
    page = v.page
    submit(page, "#walk-form", seed_a="7", seed_b="8", frames="6", frame_duration_ms="60")
    wait_for(page, "document.querySelectorAll('#walk-strip img').length === 6")
    frames = [pixels(image) for image in v.images("#walk-strip img")]
    assert all(frame.shape == (28, 28) for frame in frames)
    # the ends are the two seeds' own images; the frames between are neither
    assert np.array_equal(frames[0], pixels(api_png(gateway, model="dcgan", seed=7)))
    assert np.array_equal(frames[-1], pixels(api_png(gateway, model="dcgan", seed=8)))
    assert len({frame.tobytes() for frame in frames}) == 6
    shown = set()
    for _ in range(12):  # the animation plays: the stage shows one frame after another
        shown.add(page.get_attribute("#walk-frame", "src"))
        page.wait_for_timeout(50)
    assert len(shown) >= 3
    assert "t = " in page.text_content("#walk-caption")
    with page.expect_download() as download:  # the same walk as one animated GIF
        page.click("#walk-gif")
    assert download.value.suggested_filename == "walk-7-8.gif"
    gif = Image.open(download.value.path())
    assert gif.format == "GIF" and gif.n_frames == 6 and gif.size == (28, 28)
    v.screenshot("latent-walk", "#walk-panel")


def test_prompts_the_mix_slider_and_the_vocabulary(visit, gateway: RunningGateway) -> None:
    v = visit()
    page = v.page
    submit(page, "#prompt-form", prompt="a red seven", prompt_b="a blue two", n="3", seed="5", mix="0")
    wait_for(page, "document.querySelector('#prompt-grid').dataset.mix === '0'"
                           " && document.querySelectorAll('#prompt-grid img').length === 3")
    red = [pixels(image) for image in v.images("#prompt-grid img")]
    page.fill("#prompt-form [name=mix]", "1")  # moving the slider asks again
    wait_for(page, "document.querySelector('#prompt-grid').dataset.mix === '1'")
    blue = [pixels(image) for image in v.images("#prompt-grid img")]
    assert all(image.shape == (28, 28, 3) for image in red + blue)
    assert all(not np.array_equal(a, b) for a, b in zip(red, blue))
    # mix 0 draws the first prompt alone, mix 1 the second alone, as the API does
    assert np.array_equal(red[0], pixels(api_png(gateway, model="text2img", prompt="a red seven", seed=5)))
    assert np.array_equal(blue[0], pixels(api_png(gateway, model="text2img", prompt="a blue two", seed=5)))
    assert all(lit(i)[:, 0].mean() > lit(i)[:, 2].mean() + 40 for i in red)  # red digits
    assert all(lit(i)[:, 2].mean() > lit(i)[:, 0].mean() + 40 for i in blue)  # blue digits
    v.screenshot("text-to-image", "#prompt-panel")

    model = next(m for m in httpx.get(f"{gateway.http_url}/models").json()["models"] if m["name"] == "text2img")
    if model["vocabulary"] is None:
        assert "publishes no vocabulary" in page.text_content("#vocabulary")
        return
    chips = page.eval_on_selector_all("#vocabulary .chip", "cs => cs.map(c => c.dataset.word)")
    assert chips == [words[0] for values in model["vocabulary"].values() for words in values.values()]
    page.fill("#prompt-form [name=prompt]", "a picture of")
    page.fill("#prompt-form [name=prompt_b]", "")
    page.click("#vocabulary .chip >> text=green")
    assert page.input_value("#prompt-form [name=prompt]") == "a picture of green"
    submit(page, "#prompt-form")  # names a colour but no digit: a warning, and still images
    page.wait_for_selector("#prompt-warnings:not([hidden])")
    assert "names no digit" in page.text_content("#prompt-warnings")
    assert len(v.images("#prompt-grid img")) == 3


def test_drag_and_drop_upscale_shows_before_after_and_the_time(visit, gateway: RunningGateway) -> None:
    v = visit()
    page = v.page
    picture = photo(32, 24)
    transfer = page.evaluate_handle("""b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'photo.png', {type: 'image/png'}));
        return transfer;
    }""", base64.b64encode(picture).decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#compare-box:not([hidden])")
    (before,), (after,) = v.images("#before"), v.images("#after")
    assert before.size == (32, 24) and np.array_equal(pixels(before), pixels(picture))
    assert after.size == (128, 96)  # x4
    model, version = page.input_value("#upscale-form [name=model]").split("@")  # the default, or the first
    assert f"· {model} v{version} ·" in page.text_content("#upscale-info")
    r = httpx.post(f"{gateway.http_url}/upscale", params={"model": model, "version": version}, content=picture,
                   headers={"Content-Type": "image/png", "Accept": "image/png"}, timeout=60)
    assert r.status_code == 200, r.text
    assert np.array_equal(pixels(after), pixels(r.content))
    info = page.text_content("#upscale-info")
    seconds = float(page.get_attribute("#compare", "data-seconds"))
    shown = re.search(r" in (\d+\.\d\d) s ", info)
    assert "32×24 → 128×96 px (×4)" in info and shown and abs(float(shown[1]) - seconds) <= 0.006 and 0 < seconds < 60
    page.fill("#compare-slider", "30")  # the before/after split follows the slider
    assert page.eval_on_selector("#compare", "c => c.style.getPropertyValue('--split')") == "30%"
    assert page.get_attribute("#upscale-download", "download") == "photo-x4.png"
    v.screenshot("upscale", "#upscale-panel")


def test_the_models_panel_lists_the_loaded_models(visit, gateway: RunningGateway) -> None:
    v = visit()
    listed = httpx.get(f"{gateway.http_url}/models").json()["models"]
    rows = v.page.eval_on_selector_all("#models-table tbody tr", "rs => rs.map(r => r.dataset.model)")
    assert rows == [m["name"] for m in listed]
    assert {"dcgan", "srresnet", "text2img", "text2img_encoder", "text2img_generator"} <= set(rows)
    text = v.page.text_content("#models-table")
    assert "super-resolution" in text and "×4" in text and "z 100 → 1×28×28" in text
    v.screenshot("models", "#models-panel")


def metric_total(gateway: RunningGateway, name: str, **labels: str) -> float:
    text = httpx.get(f"{gateway.http_url}/metrics").text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == want for k, want in labels.items()))


def test_the_metrics_panel_shows_live_figures(visit, gateway: RunningGateway) -> None:
    v = visit()
    page = v.page
    page.fill("#grid-form [name=n]", "4")
    submit(page, "#grid-form")
    wait_for(page, "document.querySelectorAll('#grid .tile img').length === 4")
    generated = metric_total(gateway, "ganserve_requests_total", endpoint="generate")
    assert generated >= 1
    # the panel refreshes after each request: its generate row matches the gateway's own count
    wait_for(page, f"""() => {{
        const row = document.querySelector('#endpoint-table tr[data-endpoint=generate]');
        return row && row.cells[1].textContent === '{generated:.0f}';
    }}""")
    requests = float(page.text_content("#metric-tiles [data-metric=requests] strong"))
    assert requests >= generated
    row = page.eval_on_selector("#batch-table tr[data-model='dcgan v1']", "r => [...r.cells].map(c => c.textContent)")
    inferences = metric_total(gateway, "ganserve_backend_batch_size_count", model="dcgan")
    assert float(row[1]) <= inferences and float(row[2]) >= 1 and row[3].startswith("≤ ")
    assert "ms" in page.text_content("#endpoint-table tr[data-endpoint=generate]")
    v.screenshot("metrics", "#metrics-panel")


def test_errors_are_messages_never_broken_images(visit, gateway: RunningGateway, tmp_path) -> None:
    v = visit()
    page = v.page
    limit = httpx.get(f"{gateway.http_url}/openapi.json").json()["components"]["schemas"]["GenerateRequest"][
        "properties"]["n"]["maximum"]
    assert page.get_attribute("#grid-form [name=n]", "max") == str(limit)  # the gateway's limit, read from it
    page.fill("#grid-form [name=n]", str(limit + 1))
    submit(page, "#grid-form")
    assert page.text_content("#grid-panel .message") == f"images must be at most {limit} (this gateway's limit)"
    assert page.locator("#grid img").count() == 0
    submit(page, "#grid-form", n="2", seed=str(2**64))
    assert page.text_content("#grid-panel .message") == \
        f'seed must be a whole number from 0 to 2^64 − 1, got "{2**64}"'

    # the gateway's own refusal, in its words: a blank prompt
    page.fill("#prompt-form [name=prompt]", "   ")
    submit(page, "#prompt-form")
    page.wait_for_selector("#prompt-panel .message[data-kind=error]")
    refused = httpx.post(f"{gateway.http_url}/generate", json={"model": "text2img", "prompt": "   ", "n": 8, "seed": 1})
    assert refused.status_code == 422
    assert page.text_content("#prompt-panel .message") == f"422 invalid_argument: {refused.json()['error']['message']}"
    assert page.locator("#prompt-grid img").count() == 0

    # not an image: 415, and no before/after
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.set_input_files("#upscale-file", str(notes))
    page.wait_for_selector("#upscale-panel .message[data-kind=error]")
    assert page.text_content("#upscale-panel .message").startswith("415 unsupported_media_type: ")
    assert page.is_hidden("#compare-box")

    # a busy gateway (429 with Retry-After, as the gateway answers it) says when to try again
    page.route("**/generate", lambda route: route.fulfill(
        status=429, headers={"Retry-After": "7", "Content-Type": "application/json"},
        body='{"error": {"code": "queue_full", "message": "model dcgan is busy"}}'))
    submit(page, "#grid-form", n="2", seed="")
    wait_for(page, "document.querySelector('#grid-panel .message').textContent.startsWith('429')")
    assert page.text_content("#grid-panel .message") == "429 queue_full: model dcgan is busy. Try again in 7 s."
    assert page.locator("#grid img").count() == 0
    assert v.broken_images() == []
    v.screenshot("errors")


def test_the_playground_fits_a_phone(visit) -> None:
    v = visit()
    page = v.page
    page.set_viewport_size({"width": 390, "height": 844})
    page.fill("#grid-form [name=n]", "9")
    submit(page, "#grid-form")
    wait_for(page, "document.querySelectorAll('#grid .tile img').length === 9")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    widths = page.eval_on_selector_all("section.panel", "ps => ps.map(p => p.getBoundingClientRect().right)")
    assert max(widths) <= 390
    v.screenshot("narrow")
