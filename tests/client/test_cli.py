"""``ganserve generate`` and ``ganserve upscale`` against a real gateway, through the ``ganserve`` dispatcher."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganserve.cli import main as ganserve
from ganserve.client.commands.generate import batches
from ganserve.client.commands.upscale import Progress, Request, _upscale_all
from tests.client.helpers import direct_images, direct_upscale, png, unused_port, url
from tests.serve.helpers import RunningGateway


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = ganserve(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --- generate ------------------------------------------------------------------------------------------

def test_generate_one_image_to_a_file(gateway: RunningGateway, tmp_path: Path, capsys) -> None:
    target = tmp_path / "sub" / "seven.png"
    status, out, _ = _run(capsys, "generate", "--url", gateway.http_url, "--seed", "7", "-o", str(target))
    assert status == 0 and out.startswith(f"{target}  (tiny v2, seed 7)")
    assert [(7, target.read_bytes())] == direct_images(gateway, {"seed": 7})


def test_generate_seeds_into_a_folder_named_by_seed(gateway: RunningGateway, tmp_path: Path, capsys) -> None:
    status, out, _ = _run(capsys, "generate", "--url", url(gateway, "grpc"), "--seeds", "3,4,9", "--model", "tiny",
                          "--version", "1", "-o", str(tmp_path / "out"))
    assert status == 0 and len(out.splitlines()) == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["3.png", "4.png", "9.png"]
    expected = direct_images(gateway, {"seed": 3, "n": 2, "model": "tiny", "version": 1}) + direct_images(
        gateway, {"seed": 9, "model": "tiny", "version": 1})
    assert [(s, (tmp_path / "out" / f"{s}.png").read_bytes()) for s in (3, 4, 9)] == expected


def test_generate_a_prompt_as_jpeg_from_the_file_suffix(gateway: RunningGateway, tmp_path: Path, capsys) -> None:
    target = tmp_path / "bird.jpg"
    status, _, _ = _run(capsys, "generate", "--url", gateway.http_url, "--prompt", "a red bird", "--prompt-b",
                        "a blue fish", "--mix", "0.3", "--truncation", "0.8", "--seed", "2", "-o", str(target))
    assert status == 0 and Image.open(target).format == "JPEG"
    body = {"prompt": "a red bird", "prompt_b": "a blue fish", "mix": 0.3, "truncation": 0.8, "seed": 2,
            "format": "jpeg"}
    assert target.read_bytes() == direct_images(gateway, body)[0][1]


def test_generate_a_grid(gateway: RunningGateway, tmp_path: Path, capsys) -> None:
    status, out, _ = _run(capsys, "generate", "--url", gateway.http_url, "--n", "4", "--seed", "10", "--grid",
                          "-o", str(tmp_path / "grid.png"))
    assert status == 0 and out == f"{tmp_path / 'grid.png'}  (4 images of tiny v2, seeds 10..13)\n"
    sheet = np.asarray(Image.open(tmp_path / "grid.png"))
    assert sheet.shape == (16, 16)  # 2 x 2 cells of 8 x 8, grey
    cells = [np.asarray(Image.open(io.BytesIO(data))) for _, data in direct_images(gateway, {"n": 4, "seed": 10})]
    np.testing.assert_array_equal(sheet[:8, 8:], cells[1])
    np.testing.assert_array_equal(sheet[8:, :8], cells[2])


@pytest.mark.parametrize("argv,words", [
    (["--n", "2", "--seeds", "1,2"], "--n and --seeds"),
    (["--seed", "1", "--seeds", "1,2"], "not allowed with argument"),
    (["--seeds", "1,x"], "whole numbers"),
    (["--n", "3", "-o", "one.png"], "names one file, but 3 images"),
    (["-o", "a.jpg", "--format", "png"], "does not match"),
    (["--grid", "-o", "grid.jpg"], "must end in .png"),
    (["--url", "ftp://h:1"], "--url"),
])
def test_generate_usage_errors_exit_2(argv: list[str], words: str, capsys) -> None:
    status, _, err = _run(capsys, "generate", *argv)
    assert status == 2 and err.startswith("ganserve generate: error: ") and words in err
    assert len(err.splitlines()) == 1


def test_generate_prints_the_gateways_refusal(gateway: RunningGateway, tmp_path: Path, capsys) -> None:
    status, out, err = _run(capsys, "generate", "--url", gateway.http_url, "--model", "nope", "-o", str(tmp_path))
    assert (status, out) == (1, "")
    assert err.startswith("ganserve generate: error: model 'nope' is not loaded; loaded models: ")
    assert list(tmp_path.iterdir()) == []


def test_generate_says_when_no_gateway_answers(capsys) -> None:
    address = f"http://127.0.0.1:{unused_port()}"
    status, _, err = _run(capsys, "generate", "--url", address)
    assert status == 1 and err == f"ganserve generate: error: no gateway answers at {address}: Connection refused\n"


def test_seed_lists_go_in_runs_of_consecutive_seeds() -> None:
    assert batches(None, [1, 2, 3, 7, 8, 2], None) == [(1, 3), (7, 2), (2, 1)]
    assert batches(5, None, 4) == [(5, 4)] and batches(None, None, None) == [(None, 1)]


# --- upscale ----------------------------------------------------------------------------------------------

@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Five small images of mixed formats and a text file, in one folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(4):
        (folder / f"p{k}.png").write_bytes(png((12 + k, 20, 3), seed=k))
    Image.open(io.BytesIO(png((10, 10, 3), seed=9))).save(folder / "j.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_upscale_a_folder_with_concurrency_then_skip_what_is_done(gateway: RunningGateway, photos: Path,
                                                                  tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    status, _, err = _run(capsys, "upscale", str(photos), "-o", str(out), "--url", gateway.http_url,
                          "--concurrency", "3")
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["j.png", "p0.png", "p1.png", "p2.png", "p3.png"]
    for k in range(4):
        assert (out / f"p{k}.png").read_bytes() == direct_upscale(gateway, (photos / f"p{k}.png").read_bytes())
    assert err.startswith("ganserve upscale: 5 upscaled, 0 failed (")

    (out / "p0.png").unlink()
    status, _, err = _run(capsys, "upscale", str(photos), "-o", str(out), "--url", url(gateway, "grpc"))
    assert status == 0 and err.startswith(
        "ganserve upscale: 1 upscaled, 4 skipped (output exists; --overwrite to redo them), 0 failed")
    assert (out / "p0.png").read_bytes() == direct_upscale(gateway, (photos / "p0.png").read_bytes())
    status, _, err = _run(capsys, "upscale", str(photos), "-o", str(out), "--url", gateway.http_url, "--overwrite")
    assert status == 0 and err.startswith("ganserve upscale: 5 upscaled, 0 failed")


def test_upscale_globs_one_file_tiles_and_formats(gateway: RunningGateway, photos: Path, tmp_path: Path,
                                                  capsys, monkeypatch) -> None:
    status, _, err = _run(capsys, "upscale", str(photos / "p[12].png"), "-o", str(tmp_path / "g"), "--format",
                          "jpeg", "--url", gateway.http_url)
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["p1.jpg", "p2.jpg"]
    assert Image.open(tmp_path / "g" / "p1.jpg").format == "JPEG"
    status, _, err = _run(capsys, "upscale", str(photos / "p0.png"), "-o", str(tmp_path / "one.png"),
                          "--tile-size", "16", "--tile-overlap", "2", "--url", gateway.http_url)
    assert status == 0, err
    expected = direct_upscale(gateway, (photos / "p0.png").read_bytes(), tile_size=16, tile_overlap=2)
    assert (tmp_path / "one.png").read_bytes() == expected
    monkeypatch.chdir(tmp_path)  # one input without -o: INPUT-upscaled.png here
    assert _run(capsys, "upscale", str(photos / "j.jpg"), "--url", gateway.http_url)[0] == 0
    assert Image.open(tmp_path / "j-upscaled.png").size == (20, 20)


def test_upscale_reports_each_refused_input_and_exits_1(gateway: RunningGateway, photos: Path, tmp_path: Path,
                                                        capsys) -> None:
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    (photos / "big.png").write_bytes(png((80, 80, 3)))  # over the gateway's 16 KiB
    status, _, err = _run(capsys, "upscale", str(photos), "-o", str(tmp_path / "out"), "--url", gateway.http_url)
    assert status == 1
    lines = err.splitlines()
    assert f"ganserve upscale: error: {photos / 'big.png'}: upload is " in err and "(max_upload_bytes)" in err
    assert f"ganserve upscale: error: {photos / 'broken.png'}: the upload is not an image in a supported" in err
    assert lines[-1].startswith("ganserve upscale: 5 upscaled, 2 failed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["j.png", "p0.png", "p1.png", "p2.png", "p3.png"]


def test_upscale_says_when_no_gateway_answers(photos: Path, tmp_path: Path, capsys) -> None:
    address = f"grpc://127.0.0.1:{unused_port()}"
    status, _, err = _run(capsys, "upscale", str(photos), "-o", str(tmp_path / "out"), "--url", address)
    assert status == 1
    assert err.startswith(f"ganserve upscale: error: no gateway answers at {address}: ") and "refused" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("argv,words", [
    (["{photos}"], "give an output folder with -o DIR"),
    (["{photos}", "-o", "x.png"], "names one file, but there are 5 inputs"),
    (["{photos}/nothing*.png", "-o", "o"], "no file matches"),
    (["{photos}/missing.png"], "no such file or folder"),
    (["{photos}", "-o", "{photos}"], "would be the input itself"),
    (["{photos}/p0.png", "--concurrency", "0"], "--concurrency"),
    (["{photos}/p0.png", "-o", "o.png", "--format", "jpeg"], "does not match"),
])
def test_upscale_usage_errors_exit_2(photos: Path, argv: list[str], words: str, capsys) -> None:
    argv = [a.format(photos=photos) for a in argv]
    status, _, err = _run(capsys, "upscale", *argv)
    assert status == 2 and err.startswith("ganserve upscale: error: ") and words in err, err


def test_upscale_refuses_two_inputs_for_one_output(photos: Path, capsys) -> None:
    (photos / "p0.jpg").write_bytes((photos / "j.jpg").read_bytes())  # -> out/p0.png, as p0.png
    status, _, err = _run(capsys, "upscale", str(photos), "-o", str(photos.parent / "out"))
    assert status == 2 and "would both be written to" in err and "p0.png" in err


def test_concurrency_bounds_the_uploads_in_flight(tmp_path: Path) -> None:
    class Gateway:
        """Counts the upscales in flight; each takes 20 ms."""

        in_flight = most = 0

        async def upscale(self, source: Path, **options: object) -> Gateway:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(0.02)
            self.in_flight -= 1
            return self

        def save(self, target: Path) -> None:
            target.write_bytes(b"")

    gateway = Gateway()
    pairs = [(tmp_path / f"{k}.png", tmp_path / "out" / f"{k}.png") for k in range(7)]
    progress = Progress(7, enabled=False)
    asyncio.run(_upscale_all(pairs, Request(None, None, None, None, "png"), client=gateway,  # type: ignore[arg-type]
                             concurrency=3, progress=progress))
    assert (gateway.most, progress.done, len(list((tmp_path / "out").iterdir()))) == (3, 7, 7)


def test_the_progress_bar() -> None:
    stream = io.StringIO()
    progress = Progress(4, stream=stream, enabled=True, width=8)
    progress.done, progress.skipped = 1, 1
    progress.draw()
    progress.message("a line above the bar")
    assert progress.line() == "[####....] 2/4  upscaled 1  skipped 1  failed 0"
    assert stream.getvalue() == ("\r\x1b[K[####....] 2/4  upscaled 1  skipped 1  failed 0"
                                 "\r\x1b[Ka line above the bar\n\r\x1b[K[####....] 2/4  upscaled 1  skipped 1  failed 0")
    quiet = io.StringIO()
    Progress(4, stream=quiet).draw()  # not a terminal: no bar
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("command", ["generate", "upscale"])
def test_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        ganserve([command, "--help"])
    assert exit_.value.code == 0 and f"usage: ganserve {command}" in capsys.readouterr().out
