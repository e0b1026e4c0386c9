"""Both directions of a relayed client connection, counted byte by byte so that a fault can
act at an exact offset: cut (BYE or close), reset (RST), stall or trickle."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from devstack.faults.book import FaultBook, MailboxTraffic
from devstack.faults.rules import Fault

READ_LIMIT = 4 * 1024 * 1024
CHUNK = 64 * 1024


class SessionEnded(Exception):
    """A peer or a fault ended the connection; the relay closes both sides."""


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN (SO_LINGER on, timeout 0), as a dropped link does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def close(writer: asyncio.StreamWriter | None) -> None:
    """Close politely (FIN), without waiting long for a peer that stopped reading."""
    if writer is None or writer.transport.is_closing():
        return
    writer.close()
    with contextlib.suppress(ConnectionError, OSError, TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(writer.wait_closed(), timeout=2)


@dataclass
class Trigger:
    """A fault waiting for the client-bound (or client-sent) byte count to reach ``position``."""

    fault: Fault
    position: int
    literal_only: bool = False


@dataclass
class Context:
    """Who a connection belongs to, for matching faults and for the event log."""

    book: FaultBook
    protocol: str
    mailbox: str | None = None
    traffic: MailboxTraffic | None = None


class Outbound:
    """Bytes to the client: counted, and cut, reset, stalled or trickled where scripted."""

    def __init__(self, writer: asyncio.StreamWriter, ctx: Context,
                 bye_line: Callable[[Fault], bytes] | None) -> None:
        self.writer = writer
        self.ctx = ctx
        self.bye_line = bye_line
        self.sent = 0
        self.literal_sent = 0
        self.at_boundary = True
        self.triggers: list[Trigger] = []
        self.lock = asyncio.Lock()
        self._trickle: tuple[float, float] | None = None  # (interval, until loop time)

    def arm(self, fault: Fault, offset: int, *, literal_only: bool = False) -> None:
        """Fire ``fault`` ``offset`` bytes from now (literal bytes only with ``literal_only``)."""
        if any(t.fault.id == fault.id for t in self.triggers):
            return
        base = self.literal_sent if literal_only else self.sent
        self.triggers.append(Trigger(fault, base + offset, literal_only))

    def arm_absolute(self, fault: Fault, position: int, *, literal_only: bool = False) -> None:
        """Fire ``fault`` once ``position`` bytes of the connection have gone to the client."""
        if not any(t.fault.id == fault.id for t in self.triggers):
            self.triggers.append(Trigger(fault, position, literal_only))

    async def send(self, data: bytes, *, literal: bool = False, complete: bool = False) -> None:
        """Send ``data``; ``complete`` says it ends a whole response (a BYE may follow it)."""
        while True:
            trigger, cut = self._next_trigger(len(data), literal)
            if trigger is None:
                await self._write(data, literal, complete)
                return
            head, data = data[:cut], data[cut:]
            await self._write(head, literal, complete and not data)
            self.triggers.remove(trigger)
            if self.ctx.book.take(trigger.fault):
                await self._fire(trigger.fault)

    async def answer(self, data: bytes) -> None:
        """Send a whole response made up by the front, between the server's responses."""
        async with self.lock:
            await self.send(data, complete=True)

    def _next_trigger(self, size: int, literal: bool) -> tuple[Trigger | None, int]:
        """The first trigger reached within the next ``size`` bytes, and where."""
        best: Trigger | None = None
        best_cut = size
        for trigger in self.triggers:
            if trigger.literal_only and not literal:
                continue
            done = self.literal_sent if trigger.literal_only else self.sent
            cut = max(0, trigger.position - done)
            if cut <= best_cut and (best is None or cut < best_cut):
                best, best_cut = trigger, cut
        return best, best_cut

    async def _write(self, data: bytes, literal: bool, complete: bool) -> None:
        if not data:
            return
        if self._trickle is not None:
            await self._write_slowly(data)
        else:
            self.writer.write(data)
            await self.writer.drain()
        self.sent += len(data)
        if literal:
            self.literal_sent += len(data)
        if self.ctx.traffic is not None:
            self.ctx.traffic.bytes_to_client += len(data)
        self.at_boundary = complete

    async def _write_slowly(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for i in range(len(data)):
            if self._trickle is None or loop.time() >= self._trickle[1]:
                self._trickle = None
                self.writer.write(data[i:])
                await self.writer.drain()
                return
            self.writer.write(data[i:i + 1])
            await self.writer.drain()
            await asyncio.sleep(self._trickle[0])

    async def _fire(self, fault: Fault) -> None:
        book, mailbox = self.ctx.book, self.ctx.mailbox
        where = f"after {self.sent} bytes to the client"
        if fault.kind == "reset":
            book.record(fault, f"RST {where}", mailbox=mailbox)
            reset(self.writer)
            raise SessionEnded("reset")
        if fault.kind == "bye":
            if self.at_boundary and self.bye_line is not None:
                book.record(fault, f"BYE {where}", mailbox=mailbox)
                self.writer.write(self.bye_line(fault))
                await self.writer.drain()
            else:
                book.record(fault, f"closed mid-response {where}", mailbox=mailbox)
            raise SessionEnded("bye")
        if fault.kind == "stall":
            book.record(fault, f"stall {fault.duration:g}s {where}, then {fault.then}", mailbox=mailbox)
            await asyncio.sleep(fault.duration)
            if fault.then == "close":
                raise SessionEnded("closed after a stall")
            return
        if fault.kind == "trickle":
            book.record(fault, f"trickle 1 byte/{fault.interval:g}s for {fault.duration:g}s {where}",
                        mailbox=mailbox)
            self._trickle = (fault.interval, asyncio.get_running_loop().time() + fault.duration)


class Inbound:
    """Bytes from the client, counted so that a reset can hit an exact client byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: Context) -> None:
        self.reader = reader
        self.writer = writer
        self.ctx = ctx
        self.received = 0
        self.triggers: list[Trigger] = []

    def arm_absolute(self, fault: Fault, position: int) -> None:
        if not any(t.fault.id == fault.id for t in self.triggers):
            self.triggers.append(Trigger(fault, position))

    async def line(self) -> bytes:
        """One line, CRLF included; :class:`SessionEnded` when the client has gone."""
        try:
            data = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            raise SessionEnded("client closed") from e
        except (asyncio.LimitOverrunError, ConnectionError, OSError) as e:
            raise SessionEnded(f"client connection failed: {e}") from e
        self._count(data)
        return data

    async def exactly(self, size: int) -> bytes:
        try:
            data = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            raise SessionEnded("client closed inside a literal") from e
        self._count(data)
        return data

    def _count(self, data: bytes) -> None:
        for trigger in list(self.triggers):
            if trigger.position < self.received + len(data):
                self.triggers.remove(trigger)
                if self.ctx.book.take(trigger.fault):
                    self.received = max(self.received, trigger.position)
                    self.ctx.book.record(trigger.fault, f"RST after {self.received} bytes from the client",
                                         mailbox=self.ctx.mailbox)
                    reset(self.writer)
                    raise SessionEnded("reset")
        self.received += len(data)
        if self.ctx.traffic is not None:
            self.ctx.traffic.bytes_from_client += len(data)
