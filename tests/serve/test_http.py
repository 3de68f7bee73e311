"""HTTP end to end, through a real uvicorn on loopback."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from ganserve.serve import seeds
from tests.serve.helpers import RunningGateway


def _post(gw: RunningGateway, path: str, body: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{gw.http_url}{path}", json=body, timeout=30, **kwargs)


def _images(response: httpx.Response) -> list[bytes]:
    return [base64.b64decode(i["data"]) for i in response.json()["images"]]


def test_generate_json(gateway: RunningGateway) -> None:
    r = _post(gateway, "/generate", {"model": "tiny", "n": 3, "seed": 41})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"]) == ("tiny", 2)  # the latest version by default
    assert [i["seed"] for i in body["images"]] == [41, 42, 43]
    assert r.headers["x-ganserve-seed"] == "41,42,43" and r.headers["x-ganserve-model-version"] == "2"
    png = Image.open(io.BytesIO(_images(r)[1]))
    assert png.size == (8, 8) and png.mode == "L"
    assert png.text["ganserve.seed"] == "42" and png.text["ganserve.model"] == "tiny"
    assert png.text["ganserve.version"] == "2"


def test_generate_raw_png_with_accept(gateway: RunningGateway) -> None:
    r = _post(gateway, "/generate", {"seed": 7}, headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-ganserve-seed"] == "7" and r.headers["x-ganserve-model"] == "tiny"
    assert Image.open(io.BytesIO(r.content)).text["ganserve.seed"] == "7"
    # The same bytes as the JSON answer's image.
    assert r.content == _images(_post(gateway, "/generate", {"seed": 7}))[0]


def test_generate_draws_and_returns_seeds_that_reproduce(gateway: RunningGateway) -> None:
    first = _post(gateway, "/generate", {"n": 2}).json()
    seed = first["images"][0]["seed"]
    assert first["images"][1]["seed"] == seed + 1
    again = _post(gateway, "/generate", {"n": 2, "seed": seed})
    assert [i["data"] for i in again.json()["images"]] == [i["data"] for i in first["images"]]


def test_same_request_same_bytes_alone_or_within_a_larger_request(gateway: RunningGateway) -> None:
    together = _images(_post(gateway, "/generate", {"n": 5, "seed": 100, "truncation": 0.7}))
    alone = [_images(_post(gateway, "/generate", {"seed": 100 + i, "truncation": 0.7}))[0] for i in range(5)]
    assert together == alone
    assert len(set(together)) == 5


def test_image_is_the_model_output_quantised(gateway: RunningGateway) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(gateway.settings.model_repository / "tiny" / "2" / "model.onnx"))
    z = seeds.latent(5, latent_dim=8)[None]
    expected = np.rint((np.clip(session.run(None, {"z": z})[0][0, 0], -1, 1) + 1) * 127.5).astype(np.uint8)
    png = _images(_post(gateway, "/generate", {"seed": 5}))[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)


def test_versions_and_formats(gateway: RunningGateway) -> None:
    v1 = _post(gateway, "/generate", {"model": "tiny", "version": 1, "seed": 1})
    v2 = _post(gateway, "/generate", {"model": "tiny", "version": 2, "seed": 1})
    assert v1.json()["version"] == 1 and _images(v1) != _images(v2)
    jpeg = _post(gateway, "/generate", {"seed": 1, "format": "jpeg"}, headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"


def test_interpolate_frames_and_animation(gateway: RunningGateway) -> None:
    r = _post(gateway, "/interpolate", {"seed_a": 3, "seed_b": 9, "frames": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["t"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(body["frames"]) == 5 and body["animation"] is None
    frames = [base64.b64decode(f["data"]) for f in body["frames"]]
    ends = [_images(_post(gateway, "/generate", {"seed": s}))[0] for s in (3, 9)]
    pixels = lambda png: np.asarray(Image.open(io.BytesIO(png)))
    assert np.array_equal(pixels(frames[0]), pixels(ends[0])) and np.array_equal(pixels(frames[-1]), pixels(ends[1]))
    gif = _post(gateway, "/interpolate", {"seed_a": 3, "seed_b": 9, "frames": 5, "format": "gif"},
                headers={"Accept": "image/gif"})
    assert gif.headers["content-type"] == "image/gif" and gif.headers["x-ganserve-seed"] == "3,9"
    assert Image.open(io.BytesIO(gif.content)).n_frames == 5
    apng = _post(gateway, "/interpolate", {"seed_a": 3, "seed_b": 9, "frames": 4, "format": "apng"}).json()
    assert apng["frames"] == [] and apng["animation"]["media_type"] == "image/apng"


def test_upscale_without_a_super_resolution_model(gateway: RunningGateway) -> None:
    r = httpx.post(f"{gateway.http_url}/upscale", content=b"\x89PNG...", headers={"Content-Type": "image/png"})
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "model_not_found", "message": "no super-resolution model is loaded",
                                  "request_id": r.headers["x-request-id"]}}


def test_models_lists_versions_and_problems(gateway: RunningGateway) -> None:
    body = httpx.get(f"{gateway.http_url}/models").json()
    assert [(m["name"], m["version"]) for m in body["models"]] == [("tiny", 1), ("tiny", 2)]
    assert body["models"][0]["latent_dim"] == 8 and body["models"][0]["value_range"] == [-1.0, 1.0]
    assert {p["model"] for p in body["problems"]} == {"garbage", "badconfig", "nolatent"}


def test_health_readiness_and_docs(gateway: RunningGateway) -> None:
    assert httpx.get(f"{gateway.http_url}/healthz").json() == {"status": "live"}
    assert httpx.get(f"{gateway.http_url}/readyz").json() == {"status": "ready"}
    assert httpx.get(f"{gateway.http_url}/docs").status_code == 200
    paths = httpx.get(f"{gateway.http_url}/openapi.json").json()["paths"]
    assert {"/generate", "/interpolate", "/upscale", "/models", "/healthz", "/readyz", "/metrics"} <= set(paths)


@pytest.mark.parametrize(("path", "body", "status", "code", "message"), [
    ("/generate", {"model": "nope"}, 404, "model_not_found", "model 'nope' is not loaded; loaded models: tiny"),
    ("/generate", {"model": "tiny", "version": 7}, 404, "model_not_found", "no loaded version 7"),
    ("/generate", {"model": "garbage"}, 404, "model_not_found", "'garbage' is not loaded"),
    ("/generate", {"prompt": "a red bird"}, 404, "model_not_found", "no text-conditional model is loaded"),
    ("/generate", {"model": "tiny", "prompt": "a red bird"}, 422, "invalid_argument", "needs a model of kind"),
    ("/generate", {"n": 0}, 422, "invalid_argument", "n must be in [1, 64]"),
    ("/generate", {"n": 65}, 422, "invalid_argument", "max_images_per_request"),
    ("/generate", {"n": "3"}, 422, "invalid_argument", "n: Input should be a valid integer"),
    ("/generate", {"seed": -1}, 422, "invalid_argument", "seed must be in"),
    ("/generate", {"seed": 2**64}, 422, "invalid_argument", "seed must be in"),
    ("/generate", {"seed": 2**64 - 1, "n": 2}, 422, "invalid_argument", "seed must be in"),
    ("/generate", {"truncation": 0}, 422, "invalid_argument", "truncation must be"),
    ("/generate", {"truncation": 1e-300}, 422, "invalid_argument", "truncation must be a finite number >= 0.05"),
    ("/generate", {"format": "tiff"}, 422, "invalid_argument", "format"),
    ("/generate", {"colour": "red"}, 422, "invalid_argument", "colour: Extra inputs are not permitted"),
    ("/interpolate", {"frames": 1}, 422, "invalid_argument", "frames must be in [2, 64]"),
    ("/interpolate", {"frame_duration_ms": 0}, 422, "invalid_argument", "frame_duration_ms"),
    ("/interpolate", {"seed_a": -5}, 422, "invalid_argument", "seed_a must be in"),
])
def test_bad_requests_get_a_clear_json_error(gateway: RunningGateway, path: str, body: dict, status: int,
                                             code: str, message: str) -> None:
    r = _post(gateway, path, body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and message in r.json()["error"]["message"]


@pytest.mark.parametrize(("request_kwargs", "status", "code"), [
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, "invalid_argument"),
    ({"content": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 422, "invalid_argument"),
    ({"json": {"n": 2}, "headers": {"Accept": "image/png"}}, 422, "invalid_argument"),
])
def test_malformed_bodies(gateway: RunningGateway, request_kwargs: dict, status: int, code: str) -> None:
    r = httpx.post(f"{gateway.http_url}/generate", **request_kwargs)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


def test_unknown_route_and_method_have_the_same_error_shape(gateway: RunningGateway) -> None:
    assert httpx.get(f"{gateway.http_url}/nope").json()["error"]["code"] == "not_found"
    r = httpx.get(f"{gateway.http_url}/generate")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_metrics_parse_and_count_requests(gateway: RunningGateway) -> None:
    _post(gateway, "/generate", {"seed": 1})
    _post(gateway, "/generate", {"model": "nope"})
    families = {f.name: f for f in text_string_to_metric_families(gateway.metrics_text())}
    expected = {"ganserve_requests", "ganserve_request_duration_seconds", "ganserve_requests_in_flight",
                "ganserve_backend_inference_duration_seconds", "ganserve_backend_batch_size",
                "ganserve_backend_queue_depth", "ganserve_backend_queue_wait_seconds", "ganserve_ready",
                "ganserve_models_loaded", "ganserve_model_load_problems"}
    assert expected <= set(families)
    outcomes = {(s.labels["endpoint"], s.labels["model"], s.labels["outcome"])
                for s in families["ganserve_requests"].samples if s.name == "ganserve_requests_total"}
    assert ("generate", "tiny", "ok") in outcomes and ("generate", "", "model_not_found") in outcomes
    assert families["ganserve_ready"].samples[0].value == 1
    assert families["ganserve_models_loaded"].samples[0].value == 2
    assert families["ganserve_model_load_problems"].samples[0].value == 3
