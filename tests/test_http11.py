"""The storage transport's HTTP/1.1 wire against a scripted server on 127.0.0.1: how answers
are framed, when a connection is used again, and how each way of failing is reported."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from shared.adapters.http11 import Http11Pool, WireError

# What the server does with one request on one connection: the bytes to send back, and
# whether to close the connection afterwards (None: close without answering).
Script = Callable[[bytes, bytes], tuple[bytes | None, bool]]


@dataclass
class ScriptedServer:
    """Answers each request by the next script; counts connections and requests."""

    scripts: list[Script]
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while self.scripts:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                body = reader.read(length)
                self.requests.append(head + body)
                answer, close = self.scripts.pop(0)(head, body)
                if answer is not None:
                    conn.sendall(answer)
                if close or answer is None:
                    return


@pytest.fixture
def server() -> Iterator[Callable[..., ScriptedServer]]:
    listeners: list[socket.socket] = []

    def start(*scripts: Script) -> ScriptedServer:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listeners.append(listener)
        scripted = ScriptedServer(list(scripts), url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        threading.Thread(target=scripted.serve, args=(listener,), daemon=True).start()
        return scripted

    yield start
    for listener in listeners:
        listener.close()


def answer(text: bytes, *, close: bool = False) -> Script:
    return lambda head, body: (text, close)


OK = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nETag: \"1\"\r\n\r\n"


@pytest.fixture
def pool() -> Iterator[Http11Pool]:
    opened = Http11Pool(size=4, connect_timeout=2, read_timeout=2)
    yield opened
    opened.close()


def test_a_request_goes_out_whole_and_its_answer_keeps_the_connection(server, pool):
    scripted = server(answer(OK), answer(OK))
    first = pool.request("PUT", f"{scripted.url}/c/a%20b?comp=x", {"x-ms-meta-a": "1"}, b"body")
    second = pool.request("PUT", f"{scripted.url}/c/d", {}, b"")
    assert (first.status, first.reason, first.headers["etag"], first.body) == (201, "Created", '"1"', b"")
    assert second.status == 201 and scripted.connections == 1
    head = scripted.requests[0]
    assert head.startswith(b"PUT /c/a%20b?comp=x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nx-ms-meta-a: 1\r\n" in head and head.endswith(b"Content-Length: 4\r\n\r\nbody")
    assert b"Content-Length: 0\r\n" in scripted.requests[1]  # a PUT says its length even when 0


def test_a_chunked_answer_with_extensions_and_trailers_is_read_whole(server, pool):
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    scripted = server(answer(chunked), answer(OK))
    assert pool.request("GET", f"{scripted.url}/list", {}, b"").body == b"hello world"
    assert pool.request("GET", f"{scripted.url}/next", {}, b"").status == 201
    assert scripted.connections == 1


def test_a_head_answer_has_no_body_whatever_its_length_says(server, pool):
    scripted = server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"), answer(OK))
    head = pool.request("HEAD", f"{scripted.url}/blob", {}, b"")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "5000")
    assert pool.request("PUT", f"{scripted.url}/blob", {}, b"x").status == 201
    assert scripted.connections == 1


def test_an_interim_answer_is_skipped(server, pool):
    scripted = server(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    assert pool.request("PUT", f"{scripted.url}/b", {}, b"x").status == 201


def test_connection_close_and_an_unframed_body_end_the_connection(server, pool):
    scripted = server(answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
                      answer(b"HTTP/1.1 200 OK\r\n\r\nto the end", close=True), answer(OK))
    assert pool.request("GET", f"{scripted.url}/a", {}, b"").body == b"ok"
    assert pool.request("GET", f"{scripted.url}/b", {}, b"").body == b"to the end"
    assert pool.request("GET", f"{scripted.url}/c", {}, b"").status == 201
    assert scripted.connections == 3


def test_a_kept_connection_the_server_closed_is_replaced_without_a_failure(server, pool):
    # The server closes after its answer (seen before reuse), then closes after reading the
    # next request without answering (seen only when the answer does not come).
    scripted = server(answer(OK, close=True), answer(OK), lambda head, body: (None, True),
                      answer(OK))
    assert pool.request("PUT", f"{scripted.url}/a", {}, b"1").status == 201
    assert pool.request("PUT", f"{scripted.url}/b", {}, b"2").status == 201
    assert pool.request("PUT", f"{scripted.url}/c", {}, b"3").status == 201
    assert scripted.connections == 3
    assert [r.split(b" ")[1] for r in scripted.requests] == [b"/a", b"/b", b"/c", b"/c"]


def test_a_new_connection_closed_before_the_answer_is_a_failure_not_a_retry(server, pool):
    scripted = server(lambda head, body: (None, True), answer(OK))
    with pytest.raises(WireError) as raised:
        pool.request("PUT", f"{scripted.url}/a", {}, b"1")
    assert raised.value.sent and not raised.value.timed_out
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("bad", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # closed mid-body
    b"SMTP ready\r\n\r\n",  # not HTTP
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
])
def test_a_malformed_or_cut_answer_is_a_failure_and_the_connection_is_not_kept(server, pool, bad):
    scripted = server(answer(bad, close=True), answer(OK))
    with pytest.raises(WireError) as raised:
        pool.request("GET", f"{scripted.url}/a", {}, b"")
    assert raised.value.sent and not raised.value.timed_out
    assert pool.request("GET", f"{scripted.url}/b", {}, b"").status == 201
    assert scripted.connections == 2


def test_an_answer_that_stops_is_a_timeout(server):
    stalled = threading.Event()

    def stall(head: bytes, body: bytes) -> tuple[bytes | None, bool]:
        stalled.wait(5)
        return None, True

    scripted = server(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", close=False), stall)
    slow = Http11Pool(size=2, connect_timeout=2, read_timeout=0.3)
    with pytest.raises(WireError) as raised:
        slow.request("GET", f"{scripted.url}/a", {}, b"")
    stalled.set()
    slow.close()
    assert raised.value.sent and raised.value.timed_out


def test_a_refused_connection_was_not_sent():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(WireError) as raised:
        Http11Pool(size=1, connect_timeout=2, read_timeout=2).request(
            "PUT", f"http://127.0.0.1:{port}/a", {}, b"x")
    assert not raised.value.sent and not raised.value.timed_out


def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(server, pool):
    scripted = server(answer(OK))
    with pytest.raises(ValueError, match="line break"):
        pool.request("PUT", f"{scripted.url}/a", {"x-ms-meta-a": "1\r\nInjected: yes"}, b"")
    assert scripted.connections == 0


def test_the_pool_keeps_at_most_its_size_per_host(server):
    scripted = server(*[answer(OK)] * 6)
    small = Http11Pool(size=1, connect_timeout=2, read_timeout=2)
    barrier = threading.Barrier(3)

    def send(name: str) -> int:
        barrier.wait(5)
        return small.request("PUT", f"{scripted.url}/{name}", {}, b"x").status

    threads = [threading.Thread(target=send, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    kept = sum(len(v) for v in small._idle.values())
    small.close()
    assert kept == 1 and len(scripted.requests) == 3


def test_answer_headers_are_read_in_any_case_and_listed_as_sent(server, pool):
    scripted = server(answer(b"HTTP/1.1 200 OK\r\nx-ms-meta-Name: a\r\nVary: x\r\nvary:  y \r\n"
                             b"Content-Length: 0\r\n\r\n"))
    headers = pool.request("GET", f"{scripted.url}/a", {}, b"").headers
    assert headers["X-MS-META-NAME"] == "a" and headers.get("VARY") == "x, y"
    assert headers.get("absent") is None and "content-length" in headers
    assert list(headers) == ["x-ms-meta-Name", "Vary", "Content-Length"]


def test_a_connection_the_full_pool_cannot_keep_is_logged(server, caplog):
    scripted = server(answer(OK), answer(OK))
    small = Http11Pool(size=0, connect_timeout=2, read_timeout=2)
    with caplog.at_level(logging.DEBUG, logger="mailferry.storage.pool"):
        small.request("PUT", f"{scripted.url}/a", {}, b"x")
    # The bench's enqueue rows count these records by these words.
    assert [r.getMessage() for r in caplog.records] == [
        f"connection pool is full for 127.0.0.1:{scripted.url.rsplit(':', 1)[1]}; closing a connection"]
    assert "pool is full" in caplog.records[0].getMessage()
