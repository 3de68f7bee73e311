"""API keys over real HTTP and gRPC clients: missing, wrong, revoked and rotated keys, scopes, the
exempt health checks, and the key file's format."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ganserve.serve.access.keys import digest_of, parse_keys
from ganserve.serve.access.log import ACCESS_LOGGER
from ganserve.serve.grpc._generated.ganserve.v1 import ganserve_pb2 as pb
from ganserve.serve.grpc.servicer import ERROR_CODE_KEY
from ganserve.serve.settings import Settings
from tests.serve.helpers import RunningGateway, running_gateway, test_settings
from tests.serve.test_access import grpc_call

ALICE, BOB, VIEWER, OTHER = "alice-key-0123456789", "bob-key-9876543210", "viewer-key-aaaa", "other-model-key"
RELOAD_S = 0.1


def _key_file(path: Path, lines: list[str]) -> None:
    """Rewrites the key file (a new inode, as a Kubernetes Secret volume's update does)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(["# id  sha256  options", *lines]) + "\n")
    tmp.replace(path)


@pytest.fixture(scope="module")
def keyed(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, Path]]:
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    _key_file(keys, [f"alice {digest_of(ALICE)}", f"bob {digest_of(BOB)}",
                     f"viewer {digest_of(VIEWER)} endpoints=list_models",
                     f"other {digest_of(OTHER)} models=someone-else"])
    with running_gateway(test_settings(model_repo, api_keys_file=keys, api_keys_reload_s=RELOAD_S)) as gw:
        yield gw, keys


def _generate(gw: RunningGateway, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.http_url}/generate", json={"seed": 1}, headers=headers, timeout=30)


def _grpc(gw: RunningGateway, *metadata: tuple[str, str], method: str = "Generate", request=None):
    return grpc_call(gw, method, request or pb.GenerateRequest(seed=1), metadata=metadata)


def _eventually(check, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the key file change was not picked up"
        time.sleep(RELOAD_S / 2)


def test_http_missing_and_wrong_keys_get_401_json(keyed) -> None:
    gw, _ = keyed
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}, {"Authorization": f"Basic {ALICE}"},
                    {"Authorization": "Bearer " + ALICE[:-1]}, {"X-API-Key": digest_of(ALICE)}):
        r = _generate(gw, **headers)
        assert r.status_code == 401, headers
        error = r.json()["error"]
        assert error["code"] == "unauthenticated" and error["request_id"] == r.headers["x-request-id"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert "API key is required" in _generate(gw).json()["error"]["message"]


def test_http_good_keys_and_exempt_health(keyed) -> None:
    gw, _ = keyed
    assert _generate(gw, Authorization=f"Bearer {ALICE}").status_code == 200
    assert _generate(gw, authorization=f"bearer {BOB}").status_code == 200
    assert _generate(gw, **{"X-API-Key": BOB}).status_code == 200
    for path in ("/healthz", "/readyz"):
        assert httpx.get(f"{gw.http_url}{path}").status_code == 200
    assert httpx.get(f"{gw.http_url}/models").status_code == 401
    assert httpx.get(f"{gw.http_url}/metrics").status_code == 401  # operational, on the public port


def test_http_scopes_get_403(keyed) -> None:
    gw, _ = keyed
    assert httpx.get(f"{gw.http_url}/models", headers={"X-API-Key": VIEWER}).status_code == 200
    denied = _generate(gw, **{"X-API-Key": VIEWER})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"
    assert "may not call generate" in denied.json()["error"]["message"]
    other = _generate(gw, **{"X-API-Key": OTHER})
    assert other.status_code == 403 and "may not use model 'tiny'" in other.json()["error"]["message"]


def test_grpc_missing_wrong_and_good_keys(keyed) -> None:
    gw, _ = keyed
    for metadata in ((), (("authorization", "Bearer nope"),), (("x-api-key", "nope"),)):
        _, status, initial, trailing = _grpc(gw, *metadata)
        assert status == "UNAUTHENTICATED" and trailing[ERROR_CODE_KEY] == "unauthenticated"
        assert trailing["x-request-id"] == initial["x-request-id"]
    assert _grpc(gw, ("authorization", f"Bearer {ALICE}"))[1] == "OK"
    assert _grpc(gw, ("x-api-key", BOB))[1] == "OK"
    assert _grpc(gw, ("x-api-key", VIEWER))[1] == "PERMISSION_DENIED"
    assert _grpc(gw, ("x-api-key", VIEWER), method="ListModels", request=pb.ListModelsRequest())[1] == "OK"
    assert _grpc(gw, ("x-api-key", OTHER))[1] == "PERMISSION_DENIED"


def test_grpc_health_needs_no_key(keyed) -> None:
    import grpc

    gw, _ = keyed
    with grpc.insecure_channel(gw.grpc_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_access_log_names_the_key_id_never_the_key(keyed, caplog: pytest.LogCaptureFixture) -> None:
    gw, _ = keyed
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    _generate(gw, **{"X-API-Key": ALICE, "X-Request-ID": "keyed-http"})
    _grpc(gw, ("x-api-key", BOB), ("x-request-id", "keyed-grpc"))
    deadline = time.monotonic() + 5
    while len([r for r in caplog.records if "keyed-" in r.getMessage()]) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    text = "\n".join(r.getMessage() for r in caplog.records)
    lines = {x["request_id"]: x for x in map(json.loads, text.splitlines()) if x["request_id"].startswith("keyed-")}
    assert (lines["keyed-http"]["key_id"], lines["keyed-grpc"]["key_id"]) == ("alice", "bob")
    assert ALICE not in text and BOB not in text and digest_of(ALICE) not in text


def test_revoked_and_rotated_keys_take_effect_without_a_restart(keyed) -> None:
    gw, keys = keyed
    new_alice = "alice-rotated-key-42"
    try:
        # Rotation: alice's old key stops working and the new one works; bob is revoked.
        _key_file(keys, [f"alice {digest_of(new_alice)}", f"viewer {digest_of(VIEWER)} endpoints=list_models",
                         f"other {digest_of(OTHER)} models=someone-else"])
        _eventually(lambda: _generate(gw, **{"X-API-Key": BOB}).status_code == 401)
        assert _generate(gw, **{"X-API-Key": ALICE}).status_code == 401
        assert _generate(gw, **{"X-API-Key": new_alice}).status_code == 200
        assert _grpc(gw, ("x-api-key", BOB))[1] == "UNAUTHENTICATED"
        assert _grpc(gw, ("x-api-key", ALICE))[1] == "UNAUTHENTICATED"
        assert _grpc(gw, ("authorization", f"Bearer {new_alice}"))[1] == "OK"
        # A broken file is refused as a whole: the keys in use stay.
        keys.write_text("alice not-a-digest\n")
        time.sleep(RELOAD_S * 3)
        assert _generate(gw, **{"X-API-Key": new_alice}).status_code == 200
    finally:
        _key_file(keys, [f"alice {digest_of(ALICE)}", f"bob {digest_of(BOB)}",
                         f"viewer {digest_of(VIEWER)} endpoints=list_models",
                         f"other {digest_of(OTHER)} models=someone-else"])
        _eventually(lambda: _generate(gw, **{"X-API-Key": BOB}).status_code == 200)


def test_keys_from_the_setting_as_well(model_repo: Path) -> None:
    settings = test_settings(model_repo, api_keys=f"env-key {digest_of('from-env')}; ops {digest_of('ops')}")
    with running_gateway(settings) as gw:
        assert _generate(gw, **{"X-API-Key": "from-env"}).status_code == 200
        assert _generate(gw, **{"X-API-Key": "ops"}).status_code == 200
        assert _generate(gw, **{"X-API-Key": "nope"}).status_code == 401


# --- the key file ---------------------------------------------------------------------------------------

def test_key_lines_parse_with_their_options() -> None:
    (key,) = parse_keys(f"k1 {digest_of('s')} endpoints=generate,upscale models=dcgan rate=0.5 burst=20  # c",
                        source="t")
    assert key.digest == hashlib.sha256(b"s").digest()
    assert (key.endpoints, key.models, key.rate, key.burst) == (
        frozenset({"generate", "upscale"}), frozenset({"dcgan"}), 0.5, 20.0)


@pytest.mark.parametrize(("text", "problem"), [
    ("alice", "expected 'ID SHA256"),
    ("alice secret-in-the-clear", "not the key itself"),
    (f"al ice {digest_of('x')}", "the second field must be"),
    (f"alice {digest_of('x')} endpoints=delete", "not valid"),
    (f"alice {digest_of('x')} rate=-1", "rate= must be a number >= 0"),
    (f"alice {digest_of('x')} colour=red", "is not one of"),
    (f"alice {digest_of('x')}\nalice {digest_of('y')}", "given twice"),
    (f"a {digest_of('x')}\nb {digest_of('x')}", "given twice"),
])
def test_bad_key_lines_are_refused_naming_the_entry(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_keys(text, source="keys.txt")
    with pytest.raises(ValueError, match="keys.txt, entry"):
        parse_keys(text, source="keys.txt")


def test_settings_check_the_key_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the API key file"):
        Settings(api_keys_file=tmp_path / "missing.txt")
    (tmp_path / "plain.txt").write_text("alice hunter2\n")
    with pytest.raises(ValueError, match="not the key itself"):
        Settings(api_keys_file=tmp_path / "plain.txt")
