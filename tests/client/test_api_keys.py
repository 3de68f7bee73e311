"""The Python client and the ``ganserve generate`` command against a gateway with API keys and rate
limits on, over HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ganserve.cli import main as ganserve
from ganserve.client import Client, RateLimited, Unauthenticated
from ganserve.serve.access.keys import digest_of
from tests.client.helpers import url
from tests.serve.helpers import RunningGateway, running_gateway, test_settings


@pytest.fixture(scope="module")
def keyed(client_repo: Path) -> Iterator[RunningGateway]:
    keys = f"open {digest_of('open-key')}; tight {digest_of('tight-key')} rate=0.1 burst=0.5"
    with running_gateway(test_settings(client_repo, api_keys=keys, rate_limit_request_s=0.3)) as gw:
        yield gw


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_client_sends_its_key(keyed: RunningGateway, protocol: str) -> None:
    with Client(url(keyed, protocol), api_key="open-key") as client:
        assert client.generate(seed=3)[0].seed == 3
    with Client(url(keyed, protocol)) as client, pytest.raises(Unauthenticated) as missing:
        client.generate(seed=3)
    assert missing.value.code == "unauthenticated" and "API key is required" in missing.value.message
    with Client(url(keyed, protocol), api_key="wrong") as client, pytest.raises(Unauthenticated):
        client.models()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_rate_limited_is_its_own_error_and_is_retried(keyed: RunningGateway, protocol: str) -> None:
    with Client(url(keyed, protocol), api_key="tight-key") as client:
        with pytest.raises(RateLimited) as refused:
            for _ in range(6):  # 0.3 s each from 0.5 s, refilled at 0.1 s/s: the second or third is refused
                client.generate(seed=1)
        assert refused.value.code == "rate_limited" and refused.value.retryable
        if protocol == "http":
            assert 1 <= refused.value.retry_after_s <= 3
    with Client(url(keyed, protocol), api_key="tight-key", retries=5, max_retry_wait_s=5) as client:
        assert client.generate(seed=1)  # waits out Retry-After (gRPC: backs off) and gets through


def test_the_command_takes_the_key_from_the_environment(keyed: RunningGateway, tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    target = tmp_path / "one.png"
    monkeypatch.delenv("GANSERVE_API_KEY", raising=False)
    assert ganserve(["generate", "--url", keyed.http_url, "--seed", "4", "-o", str(target)]) != 0
    err = capsys.readouterr().err
    assert "API key is required" in err and "GANSERVE_API_KEY" in err
    monkeypatch.setenv("GANSERVE_API_KEY", "open-key")
    assert ganserve(["generate", "--url", keyed.http_url, "--seed", "4", "-o", str(target)]) == 0
    assert target.is_file()
