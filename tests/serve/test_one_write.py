"""A response's head and body leave in one write (ganserve.serve.http.connections._OneWrite).

The unit tests record what reaches a transport (a stand-in: the property is which writes uvicorn's
protocol makes, which a real socket does not show reliably); the last test runs a real gateway and
reads the answer from a real socket, including an ``Expect: 100-continue`` request, whose interim
head must not wait for a body that the client sends only after reading it."""

from __future__ import annotations

import asyncio
import json
import socket

from ganserve.serve.http.connections import _OneWrite
from tests.serve.helpers import RunningGateway

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_a_head_and_its_body_go_in_one_write() -> None:
    async def main() -> list[bytes]:
        recorder = _Recorder()
        transport = _OneWrite(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(HEAD)
        assert recorder.writes == []  # held for the body
        transport.write(b"hello")
        await asyncio.sleep(0)
        assert transport.get_extra_info("peername") == "info:peername"  # the rest is the transport's
        return recorder.writes

    assert asyncio.run(main()) == [HEAD + b"hello"]


def test_a_head_alone_leaves_at_the_end_of_the_step() -> None:
    async def main() -> list[bytes]:
        recorder = _Recorder()
        transport = _OneWrite(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(main()) == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_a_large_body_is_not_copied_and_close_sends_what_is_held() -> None:
    async def main() -> _Recorder:
        recorder = _Recorder()
        transport = _OneWrite(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
        big = b"x" * (_OneWrite._JOIN_MAX_BYTES + 1)
        transport.write(HEAD)
        transport.write(big)
        assert recorder.writes == [HEAD, big]
        transport.write(HEAD)
        transport.close()
        assert recorder.writes[-1] == HEAD and recorder.closed
        return recorder

    asyncio.run(main())


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_a_real_gateway_answers_whole_and_still_says_100_continue(gateway: RunningGateway) -> None:
    port = int(gateway.http_url.rsplit(":", 1)[1])
    body = json.dumps({"model": "tiny", "seed": 3}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(3):  # kept alive: three answers, one after another
            sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nAccept: image/png\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            head, png = _read_response(sock)
            assert head.startswith(b"HTTP/1.1 200") and png.startswith(b"\x89PNG")
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nAccept: image/png\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        head, png = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200") and png.startswith(b"\x89PNG")
