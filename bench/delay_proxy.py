"""A TCP proxy on 127.0.0.1 that delays every chunk by a fixed time in each direction.

It stands for a WAN link: latency is added, bandwidth is not limited (chunks are
pipelined; each one leaves ``delay`` seconds after it arrived, in order). It also counts,
per target, the connections made and, for targets that speak HTTP/1.1, the requests sent:
the storage transactions a client made, whatever client it was.

    python -m bench.delay_proxy --delay-ms 15 --target 127.0.0.1:993 --http-target 127.0.0.1:10000

prints one JSON line ``{"ports": {"<target port>": <listen port>, ...}, "control": <port>}``
once it listens, and runs until SIGTERM, until ``--parent-pid`` is gone, or for
``--max-seconds``. A connection to the control port gets the counts as one JSON line,
``{"<target port>": {"connections": n, "requests": n}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
CHUNK = 256 * 1024


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RequestCounter:
    """Counts the HTTP/1.1 requests in a client's byte stream, fed in any pieces.

    Bodies are skipped by Content-Length or chunked framing, so pipelined requests and
    large uploads count right; nothing but the request heads is kept.
    """

    MAX_HEAD = 64 * 1024

    def __init__(self) -> None:
        self.requests = 0
        self._buffer = b""
        self._state = "head"    # head | body | size | data | trailer
        self._remaining = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._state in ("body", "data"):
                take = min(len(view), self._remaining)
                view = view[take:]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "head" if self._state == "body" else "size"
                continue
            self._buffer += bytes(view)
            view = memoryview(b"")
            self._parse_buffer()
            if self._state in ("body", "data"):
                view, self._buffer = memoryview(self._buffer), b""

    def _parse_buffer(self) -> None:
        """Consume heads, chunk sizes and trailers from the buffer while they are whole."""
        while self._state in ("head", "size", "trailer"):
            if self._state == "head":
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    self._buffer = self._buffer[-self.MAX_HEAD:]
                    return
                head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
                self.requests += 1
                self._start_body(head)
            elif self._state == "size":
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    return
                line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size:
                    self._state, self._remaining = "data", size + 2  # the chunk and its CRLF
                else:
                    self._state = "trailer"
            else:
                if self._buffer.startswith(b"\r\n"):
                    self._buffer, self._state = self._buffer[2:], "head"
                    continue
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                self._buffer, self._state = self._buffer[end + 4:], "head"
            if self._state in ("body", "data"):
                return

    def _start_body(self, head: bytes) -> None:
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value.lower():
                self._state = "size"
                return
            if name == b"content-length":
                length = int(value.strip() or b"0")
        if length:
            self._state, self._remaining = "body", length


@dataclass
class TargetCounts:
    """What went through the proxy to one target."""

    connections: int = 0
    requests: int = 0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as the far end did: a reset crosses the link as one."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                counter: RequestCounter | None = None) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it was read; an end
    by reset is passed on, after the chunks before it, as a reset."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    reset_at: list[float] = []

    async def pump() -> None:
        try:
            while data := await reader.read(CHUNK):
                if counter is not None:
                    counter.feed(data)
                queue.put_nowait((loop.time() + delay, data))
        except ConnectionResetError:
            reset_at.append(loop.time() + delay)
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)

    async def deliver() -> None:
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            if reset_at:
                await asyncio.sleep(max(0.0, reset_at[0] - loop.time()))
                _reset(writer)
            elif writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(pump(), deliver())


class DelayProxy:
    """Listens on a free loopback port and forwards to one target with added latency."""

    def __init__(self, target_port: int, delay: float, target_host: str = LOOPBACK, *,
                 http: bool = False) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay
        self.http = http
        self.counts = TargetCounts()
        self._counters: list[RequestCounter] = []
        self.server: asyncio.Server | None = None

    def snapshot(self) -> dict[str, int]:
        """Connections so far and, for an HTTP target, requests seen so far."""
        requests = self.counts.requests + sum(c.requests for c in self._counters)
        return {"connections": self.counts.connections, "requests": requests}

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.close()
            return
        _nodelay(client_w)
        _nodelay(server_w)
        self.counts.connections += 1
        counter = RequestCounter() if self.http else None
        if counter is not None:
            self._counters.append(counter)
        try:
            await asyncio.gather(_pipe(client_r, server_w, self.delay, counter),
                                 _pipe(server_r, client_w, self.delay))
        finally:
            if counter is not None:
                self._counters.remove(counter)
                self.counts.requests += counter.requests
            for w in (client_w, server_w):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()


def _parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("", LOOPBACK, "localhost"):
        raise argparse.ArgumentTypeError(f"only {LOOPBACK} targets are allowed, not {host}")
    return LOOPBACK, int(port)


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def serve(targets: Sequence[tuple[str, int]], delay: float, parent_pid: int | None,
                max_seconds: float, http_targets: Sequence[tuple[str, int]] = ()) -> None:
    proxies = [DelayProxy(port, delay, host) for host, port in targets]
    proxies += [DelayProxy(port, delay, host, http=True) for host, port in http_targets]
    ports = {str(p.target_port): await p.start() for p in proxies}

    async def report(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts = {str(p.target_port): p.snapshot() for p in proxies}
        writer.write(json.dumps(counts).encode() + b"\n")
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()

    control = await asyncio.start_server(report, LOOPBACK, 0)
    sys.stdout.write(json.dumps({"ports": ports, "pid": os.getpid(),
                                 "control": control.sockets[0].getsockname()[1]}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = loop.time() + max_seconds
    while not stop.is_set() and loop.time() < deadline:
        if parent_pid is not None and not _parent_alive(parent_pid):
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    control.close()
    for p in proxies:
        if p.server is not None:
            p.server.close()


def read_counts(control_port: int, timeout: float = 10.0) -> dict[str, dict[str, int]]:
    """The counts of a running proxy, by target port, from its control port."""
    with socket.create_connection((LOOPBACK, control_port), timeout=timeout) as sock:
        line = sock.makefile("rb").readline()
    counts: dict[str, dict[str, int]] = json.loads(line)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delay_proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", type=_parse_target, default=[],
                        help="127.0.0.1:PORT to forward to (repeatable)")
    parser.add_argument("--http-target", action="append", type=_parse_target, default=[],
                        help="127.0.0.1:PORT speaking HTTP/1.1: also count its requests")
    parser.add_argument("--delay-ms", type=float, default=15.0, help="added delay each way")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this PID is gone")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="longest life")
    args = parser.parse_args(argv)
    if not args.target and not args.http_target:
        parser.error("give at least one --target or --http-target")
    asyncio.run(serve(args.target, args.delay_ms / 1000.0, args.parent_pid, args.max_seconds,
                      args.http_target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
