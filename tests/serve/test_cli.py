"""Settings from GANSERVE_* variables and ``ganserve serve`` options; usage errors exit 2 in one line."""

from pathlib import Path

import pytest

from ganserve.cli import main as ganserve_main
from ganserve.errors import UsageError
from ganserve.serve.cli import build_parser, load_settings
from ganserve.serve.settings import Settings


def test_defaults_match_the_issue() -> None:
    settings = Settings()
    assert settings.model_repository == Path("model_repository")
    assert (settings.http_port, settings.grpc_port, settings.backend) == (8000, 50051, "onnxruntime")


def test_every_setting_is_an_option() -> None:
    options = {a.dest for a in build_parser()._actions} - {"help"}
    assert options == set(Settings.model_fields)


def test_environment_then_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANSERVE_HTTP_PORT", "9000")
    monkeypatch.setenv("GANSERVE_MAX_QUEUE_DEPTH", "500")
    monkeypatch.setenv("GANSERVE_BATCHING", "false")
    settings = load_settings(["--http-port", "9100", "--model-repository", "/srv/models",
                              "--batch-max-queue-delay-ms", "1.5"])
    assert settings.http_port == 9100 and settings.max_queue_depth == 500 and settings.batching is False
    assert settings.model_repository == Path("/srv/models") and settings.batch_max_queue_delay_ms == 1.5
    assert load_settings(["--batching"]).batching is True


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--http-port", "x"], {}, "invalid int value"),
    (["--backend", "tensorflow"], {}, "invalid choice"),
    (["--nope"], {}, "unrecognized arguments"),
    ([], {"GANSERVE_GRPC_PORT": "70000"}, "grpc_port (--grpc-port / GANSERVE_GRPC_PORT)"),
    (["--max-queue-depth", "4"], {}, "max_queue_depth (4) must be at least the largest request"),
])
def test_bad_settings_are_usage_errors(monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict,
                                       message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(argv)


@pytest.mark.parametrize(("argv", "message"), [
    (["--backend", "triton", "--triton-url", "http://triton:8001"], "triton_url (--triton-url"),
    (["--triton-url", "triton"], "must be HOST:PORT"),
    (["--triton-url", "dns:///"], "must be HOST:PORT"),
    (["--model-repository", "/nonexistent/models"], "is not a directory"),
    (["--max-images-per-request", "0"], "max_images_per_request"),
])
def test_ganserve_serve_exits_2_with_one_line(argv: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert ganserve_main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("ganserve serve: error:")


def test_port_in_use_is_a_usage_error(model_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--model-repository", str(model_repo), "--http-port", str(port), "--grpc-port", "0"]
        assert ganserve_main(argv) == 2
    assert "cannot listen" in capsys.readouterr().err
