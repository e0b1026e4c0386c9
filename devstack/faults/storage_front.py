"""The storage front: one relay per Azurite port (blob, queue, table) that can answer 503
ServerBusy or 500 InternalError itself, reset or stall a request, or refuse connections for
the length of an outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from devstack.faults.book import FaultBook
from devstack.faults.http1 import Head, HttpError, error_response, read_head, relay_body
from devstack.faults.relay import close, reset
from devstack.faults.rules import STORAGE, Fault
from devstack.faults.session import LOOPBACK

log = logging.getLogger("devstack.faults")
REQUEST_KINDS = ("busy", "error", "reset", "stall")
OUTAGE_CHECK_SECONDS = 0.05


class _Done(Exception):
    """The client connection is finished (reset, closed by a fault, or by a peer)."""


class StorageFront:
    """A relay in front of one Azurite port."""

    def __init__(self, book: FaultBook, service: str, upstream_port: int) -> None:
        self.book = book
        self.service = service
        self.upstream_port = upstream_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.clients: set[asyncio.StreamWriter] = set()
        self.outage: Fault | None = None

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._handle, LOOPBACK, port or self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop_listening(self) -> None:
        """Connections are refused from now on; open ones are reset, as when the service dies."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.clients):
            reset(writer)

    async def close(self) -> None:
        await self.stop_listening()

    async def watch_outages(self) -> None:
        """Stop listening while an outage fault for this service is live; listen again after."""
        while True:
            outage = next((f for f in self.book.live() if f.protocol == STORAGE and f.kind == "outage"
                           and f.service in (None, self.service)), None)
            if outage is not None and self.server is not None:
                self.outage = outage
                self.book.record(outage, f"outage started: {self.service} port {self.port} refuses "
                                 f"connections for {outage.seconds:g}s", service=self.service)
                await self.stop_listening()
            elif outage is None and self.server is None:
                await self.start(self.port)
                if self.outage is not None:
                    self.book.record(self.outage, f"outage ended: {self.service} port {self.port} "
                                     "listens again", service=self.service)
                    self.outage = None
            await asyncio.sleep(OUTAGE_CHECK_SECONDS)

    def _take(self, method: str, path: str, when: str) -> Fault | None:
        for fault in self.book.live():
            if (fault.protocol == STORAGE and fault.kind in REQUEST_KINDS and fault.when == when
                    and fault.hits_request(self.service, method, path) and self.book.take(fault)):
                return fault
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while (request := await read_head(reader)) is not None:
                self.book.counters.storage[self.service] += 1
                if upstream is None:
                    upstream = await asyncio.open_connection(LOOPBACK, self.upstream_port)
                if not await self._exchange(request, reader, writer, *upstream):
                    break
        except (_Done, HttpError, ConnectionError, OSError):
            pass
        finally:
            self.clients.discard(writer)
            await close(writer)
            if upstream is not None:
                await close(upstream[1])

    async def _exchange(self, request: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> bool:
        """One request and its response; False when the connection must not be reused."""
        method, path = request.method, urlsplit(request.target).path
        fault = self._take(method, path, "before")
        if fault is not None and not await self._act(fault, request, reader, writer, "before Azurite"):
            return not request.wants_close  # answered by the front; the body was read
        up_writer.write(request.raw)
        await relay_body(reader, up_writer, request)
        response = await read_head(up_reader)
        while response is not None and 100 <= response.status < 200 and response.status != 101:
            writer.write(response.raw)
            response = await read_head(up_reader)
        if response is None:
            raise _Done("Azurite closed the connection")
        fault = self._take(method, path, "after")
        if fault is not None and fault.kind != "stall":
            await relay_body(up_reader, None, response, request_method=method)
            await self._act(fault, request, None, writer, "after Azurite answered")
            return not request.wants_close
        if fault is not None:
            await self._act(fault, request, None, writer, "after Azurite answered")
        writer.write(response.raw)
        reusable = await relay_body(up_reader, writer, response, request_method=method)
        return reusable and not request.wants_close and not response.wants_close

    async def _act(self, fault: Fault, request: Head, reader: asyncio.StreamReader | None,
                   writer: asyncio.StreamWriter, where: str) -> bool:
        """Carry out ``fault``; True when the request still goes on to (or back from) Azurite."""
        what = f"{request.method} {urlsplit(request.target).path}"
        if fault.kind == "reset":
            self.book.record(fault, f"RST on {what} {where}", service=self.service)
            reset(writer)
            raise _Done("reset")
        if fault.kind == "stall":
            self.book.record(fault, f"stalled {fault.duration:g}s on {what} {where}, then {fault.then}",
                             service=self.service)
            await asyncio.sleep(fault.duration)
            if fault.then == "close":
                raise _Done("closed after a stall")
            return True
        if reader is not None:
            await relay_body(reader, None, request)
        data, code = error_response(fault.kind, self.service, request)
        self.book.record(fault, f"{code} on {what} {where}", service=self.service)
        writer.write(data)
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        return False
