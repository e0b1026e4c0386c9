"""What the IMAP and POP3 fronts share: a TLS listener, one upstream connection per client,
and the mailbox a connection belongs to once its AUTHENTICATE names it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from devstack.faults.book import FaultBook
from devstack.faults.relay import READ_LIMIT, Context, Inbound, Outbound, SessionEnded, close
from devstack.faults.rules import BYTE_KINDS, Fault

LOOPBACK = "127.0.0.1"
# After our TLS close_notify, wait this long for the peer's before closing TCP (as a server
# that hangs up does) instead of asyncio's default 30 s.
SSL_SHUTDOWN_SECONDS = 1.0
log = logging.getLogger("devstack.faults")


class MailSession:
    """One client connection relayed to the upstream server; subclasses speak the protocol."""

    protocol = ""

    def __init__(self, book: FaultBook, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 bye_line: Callable[[Fault], bytes] | None) -> None:
        self.book = book
        self.ctx = Context(book, self.protocol)
        self.out = Outbound(writer, self.ctx, bye_line)
        self.inp = Inbound(reader, writer, self.ctx)
        self.upstream_r: asyncio.StreamReader | None = None
        self.upstream_w: asyncio.StreamWriter | None = None
        self.greeted = asyncio.Event()
        self.armed: set[int] = set()  # connection-wide byte faults already armed here

    async def run(self, upstream_port: int, upstream_tls: ssl.SSLContext) -> None:
        """Relay until either side closes or a fault ends the connection."""
        try:
            self.upstream_r, self.upstream_w = await asyncio.open_connection(
                LOOPBACK, upstream_port, ssl=upstream_tls, server_hostname=LOOPBACK, limit=READ_LIMIT,
                ssl_shutdown_timeout=SSL_SHUTDOWN_SECONDS)
        except (OSError, ssl.SSLError) as e:
            log.warning("%s front: upstream port %d unreachable: %s", self.protocol, upstream_port, e)
            await close(self.out.writer)
            return
        self.arm_connection_faults()
        tasks = [asyncio.create_task(self.from_client()), asyncio.create_task(self.from_server())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, SessionEnded | ConnectionError | OSError):
                    log.error("%s front: relay failed", self.protocol, exc_info=error)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await close(self.out.writer)
            await close(self.upstream_w)
            if self.ctx.traffic is not None:
                self.ctx.traffic.current -= 1

    async def from_client(self) -> None:
        raise NotImplementedError

    async def from_server(self) -> None:
        raise NotImplementedError

    # -- upstream ---------------------------------------------------------------------
    async def to_server(self, data: bytes) -> None:
        assert self.upstream_w is not None
        try:
            self.upstream_w.write(data)
            await self.upstream_w.drain()
        except (ConnectionError, OSError) as e:
            raise SessionEnded(f"upstream failed: {e}") from e

    async def server_line(self) -> bytes:
        assert self.upstream_r is not None
        try:
            return await self.upstream_r.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                await self.out.send(e.partial)
            raise SessionEnded("server closed") from e
        except (asyncio.LimitOverrunError, ConnectionError, OSError) as e:
            raise SessionEnded(f"server connection failed: {e}") from e

    async def server_bytes(self, size: int) -> bytes:
        assert self.upstream_r is not None
        try:
            return await self.upstream_r.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            raise SessionEnded("server closed inside a literal") from e

    # -- mailbox ----------------------------------------------------------------------
    def attribute(self, mailbox: str) -> int:
        """Count this connection for ``mailbox``; returns how many were open before it."""
        mailbox = mailbox.lower()
        if self.ctx.mailbox == mailbox and self.ctx.traffic is not None:
            return self.ctx.traffic.current - 1
        if self.ctx.traffic is not None:
            self.ctx.traffic.current -= 1
        before = self.book.counters.mailbox(self.protocol, mailbox).current
        self.ctx.mailbox = mailbox
        self.ctx.traffic = self.book.counters.opened(self.protocol, mailbox)
        self.arm_connection_faults()
        return before

    def count_command(self, verb: str) -> None:
        if self.ctx.traffic is not None:
            self.ctx.traffic.commands[verb] += 1

    def arm_connection_faults(self) -> None:
        """Byte faults bound to no command count from the connection's first byte; each acts
        at most once per connection, also when it was armed after the connection opened."""
        for kind in BYTE_KINDS:
            for fault in self.book.matching(self.protocol, kind, mailbox=self.ctx.mailbox):
                if fault.on or fault.at_byte is None or fault.id in self.armed:
                    continue
                self.armed.add(fault.id)
                if fault.direction == "client":
                    self.inp.arm_absolute(fault, fault.at_byte)
                else:
                    self.out.arm_absolute(fault, fault.at_byte, literal_only=fault.in_literal)

    def arm_command_faults(self, verb: str, line_size: int) -> None:
        """Byte faults bound to ``verb`` count from the start of its response (or its line)."""
        self.arm_connection_faults()
        for kind in BYTE_KINDS:
            for fault in self.book.matching(self.protocol, kind, mailbox=self.ctx.mailbox, verb=verb):
                if not fault.on or fault.at_byte is None:
                    continue
                if fault.direction == "client":
                    self.inp.arm_absolute(fault, self.inp.received - line_size + fault.at_byte)
                else:
                    self.out.arm(fault, fault.at_byte, literal_only=fault.in_literal)


class MailFront:
    """A TLS listener on 127.0.0.1 whose connections are relayed by ``session_type``."""

    def __init__(self, book: FaultBook, session_type: Callable[[FaultBook, asyncio.StreamReader,
                                                                  asyncio.StreamWriter], MailSession],
                 upstream_port: int, server_tls: ssl.SSLContext, upstream_tls: ssl.SSLContext) -> None:
        self.book = book
        self.session_type = session_type
        self.upstream_port = upstream_port
        self.server_tls = server_tls
        self.upstream_tls = upstream_tls
        self.server: asyncio.Server | None = None
        self.sessions: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._handle, LOOPBACK, port, ssl=self.server_tls,
                                                 limit=READ_LIMIT, ssl_handshake_timeout=10,
                                                 ssl_shutdown_timeout=SSL_SHUTDOWN_SECONDS)
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.sessions.add(task)
        try:
            await self.session_type(self.book, reader, writer).run(self.upstream_port, self.upstream_tls)
        finally:
            if task is not None:
                self.sessions.discard(task)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.sessions):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self.sessions, return_exceptions=True)
