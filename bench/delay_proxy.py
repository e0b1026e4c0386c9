"""A TCP proxy on 127.0.0.1 that delays every chunk by a fixed time in each direction.

It stands for a WAN link: latency is added, bandwidth is not limited (chunks are
pipelined; each one leaves ``delay`` seconds after it arrived, in order).

    python -m bench.delay_proxy --delay-ms 15 --target 127.0.0.1:993 --target 127.0.0.1:10000

prints one JSON line ``{"ports": {"<target port>": <listen port>, ...}}`` once it listens,
and runs until SIGTERM, until ``--parent-pid`` is gone, or for ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence

LOOPBACK = "127.0.0.1"
CHUNK = 256 * 1024


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((loop.time() + delay, data))
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
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(pump(), deliver())


class DelayProxy:
    """Listens on a free loopback port and forwards to one target with added latency."""

    def __init__(self, target_port: int, delay: float, target_host: str = LOOPBACK) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay
        self.server: asyncio.Server | None = None

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
        try:
            await asyncio.gather(_pipe(client_r, server_w, self.delay),
                                 _pipe(server_r, client_w, self.delay))
        finally:
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
                max_seconds: float) -> None:
    proxies = [DelayProxy(port, delay, host) for host, port in targets]
    ports = {str(p.target_port): await p.start() for p in proxies}
    sys.stdout.write(json.dumps({"ports": ports, "pid": os.getpid()}) + "\n")
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
    for p in proxies:
        if p.server is not None:
            p.server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delay_proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", type=_parse_target, required=True,
                        help="127.0.0.1:PORT to forward to (repeatable)")
    parser.add_argument("--delay-ms", type=float, default=15.0, help="added delay each way")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this PID is gone")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="longest life")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.target, args.delay_ms / 1000.0, args.parent_pid, args.max_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
