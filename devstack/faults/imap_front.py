"""The IMAP front: Exchange's greeting, capabilities and failures in front of Dovecot.

Client lines are read as commands (tag, verb, literals); server lines as responses (tagged
completions, literals), so that a fault can answer a named command, cut a FETCH literal or
rewrite ``RFC822.SIZE``. The SASL initial response is decoded for its ``user=`` only.
"""

from __future__ import annotations

import asyncio

from devstack.faults import imap_wire as wire
from devstack.faults.book import FaultBook
from devstack.faults.relay import CHUNK, SessionEnded
from devstack.faults.rules import Fault
from devstack.faults.session import MailSession


def _bye(fault: Fault) -> bytes:
    return f"* BYE {fault.bye_text}\r\n".encode()


class ImapSession(MailSession):
    """One IMAP client connection relayed to Dovecot."""

    protocol = "imap"

    def __init__(self, book: FaultBook, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(book, reader, writer, _bye)
        self.pending: dict[str, str] = {}  # tag → verb, until its tagged response
        self.sasl_tag: str | None = None
        self.idle_tag: str | None = None
        self.logged_in = False
        self.move = True
        self.size_factor: float | None = None
        self.commands_after_login = 0

    # -- client to server ---------------------------------------------------------------
    async def from_client(self) -> None:
        await self.greeted.wait()  # our own answers must not overtake the greeting
        while True:
            line = await self.inp.line()
            if self.sasl_tag is not None or self.idle_tag is not None:
                await self.to_server(line)  # a SASL answer or IDLE's DONE, not a command
                continue
            command = wire.parse_command(line)
            if command is None:
                await self.forward_command(line)  # Dovecot answers BAD
                continue
            if command.verb == "AUTHENTICATE" and not self.logged_in and not command.uid:
                await self.authenticate(command)
                continue
            self.count_command(command.verb)
            if await self.intercepted(command, line):
                continue
            self.arm_command_faults(command.verb, len(line))
            self.pending[command.tag] = command.verb
            if command.verb == "IDLE":
                self.idle_tag = command.tag
            await self.forward_command(line)

    async def forward_command(self, line: bytes) -> None:
        """Send a command line and its literals, as the client sends them."""
        await self.to_server(line)
        while (literal := wire.literal_at_end(line)) is not None:
            remaining = literal[0]
            while remaining:
                chunk = await self.inp.exactly(min(CHUNK, remaining))
                remaining -= len(chunk)
                await self.to_server(chunk)
            line = await self.inp.line()
            await self.to_server(line)

    async def skip_command(self, line: bytes) -> None:
        """Swallow the rest of a command the front answered itself."""
        while (literal := wire.literal_at_end(line)) is not None:
            size, synchronizing = literal
            if synchronizing:
                return  # the client waits for "+" and gets our answer instead
            await self.inp.exactly(size)
            line = await self.inp.line()

    async def authenticate(self, command: wire.Command) -> None:
        if not command.args:
            await self.out.answer(f"{command.tag} BAD Command Argument Error. 11\r\n".encode())
            return
        mechanism = command.args[0].upper()
        if len(command.args) > 1:
            initial = command.args[1]
        else:
            # Ask for the response ourselves, so the mailbox is known before Dovecot is asked.
            await self.out.answer(b"+ \r\n")
            initial = (await self.inp.line()).strip().decode("latin-1")
            if initial == "*":
                await self.out.answer(f"{command.tag} BAD AUTHENTICATE aborted.\r\n".encode())
                return
        user = wire.sasl_user(mechanism, initial)
        if user is not None:
            before = self.attribute(user)
            self.count_command("AUTHENTICATE")
            if await self.refused(command, before):
                return
            if await self.answered(command, b""):
                return
            self.latch_session_faults()
        self.arm_command_faults("AUTHENTICATE", 0)
        self.pending[command.tag] = "AUTHENTICATE"
        self.sasl_tag = command.tag
        await self.to_server(f"{command.tag} AUTHENTICATE {mechanism} {initial}\r\n".encode())

    async def refused(self, command: wire.Command, open_before: int) -> bool:
        """Exchange's answer to one connection too many for a mailbox."""
        for fault in self.book.matching("imap", "max_connections", mailbox=self.ctx.mailbox):
            if open_before >= fault.limit and self.book.take(fault):
                self.book.record(fault, f"refused connection {open_before + 1} (limit {fault.limit})",
                                 mailbox=self.ctx.mailbox)
                await self.out.answer(f"{command.tag} BAD {wire.NOT_CONNECTED}\r\n".encode())
                return True
        return False

    def latch_session_faults(self) -> None:
        """Faults that shape a whole session are taken once, at login."""
        mailbox = self.ctx.mailbox
        if (fault := self.book.take_first("imap", "hide_move", mailbox=mailbox)) is not None:
            self.move = False
            self.book.record(fault, "MOVE hidden for this session", mailbox=mailbox)
        if (fault := self.book.take_first("imap", "size_factor", mailbox=mailbox)) is not None:
            self.size_factor = fault.factor
            self.book.record(fault, f"RFC822.SIZE x{fault.factor:g} for this session", mailbox=mailbox)

    async def intercepted(self, command: wire.Command, line: bytes) -> bool:
        """Answer ``command`` in the front when a fault says so."""
        if self.logged_in:
            self.commands_after_login += 1
            for fault in self.book.matching("imap", "bye", mailbox=self.ctx.mailbox, verb=command.verb):
                limit = fault.after_commands
                if limit is not None and self.commands_after_login > limit and self.book.take(fault):
                    self.book.record(fault, f"BYE instead of answering {command.verb} (command "
                                     f"{self.commands_after_login} after login)", mailbox=self.ctx.mailbox)
                    await self.out.answer(_bye(fault))
                    raise SessionEnded("bye after commands")
        if await self.answered(command, line):
            return True
        if command.verb == "MOVE" and not self.move:
            await self.skip_command(line)
            await self.out.answer(f"{command.tag} BAD {wire.UNKNOWN_COMMAND}\r\n".encode())
            return True
        return False

    async def answered(self, command: wire.Command, line: bytes) -> bool:
        fault = self.book.take_first("imap", "answer", mailbox=self.ctx.mailbox, verb=command.verb)
        if fault is None:
            return False
        await self.skip_command(line)
        if fault.status == "BYE":
            self.book.record(fault, f"* BYE {fault.text} to {command.verb}", mailbox=self.ctx.mailbox)
            await self.out.answer(f"* BYE {fault.text}\r\n".encode())
            raise SessionEnded("answered with BYE")
        self.book.record(fault, f"{fault.status} {fault.text} to {command.verb}"
                         + (", then BYE" if fault.bye else ""), mailbox=self.ctx.mailbox)
        await self.out.answer(f"{command.tag} {fault.status} {fault.text}\r\n".encode())
        if fault.bye:
            await self.out.answer(_bye(fault))
            raise SessionEnded("bye after an answer")
        return True

    # -- server to client ---------------------------------------------------------------
    async def from_server(self) -> None:
        line = await self.server_line()
        async with self.out.lock:
            await self.relay_response(wire.GREETING if line.startswith(b"* OK") else line)
        self.greeted.set()
        while True:
            line = await self.server_line()
            async with self.out.lock:
                await self.relay_response(line)

    async def relay_response(self, line: bytes) -> None:
        """One whole response: its lines and the literals between them."""
        tag = wire.response_tag(line)
        if tag is not None and self.pending.pop(tag, None) is not None:
            if tag == self.sasl_tag:
                self.sasl_tag = None
                self.logged_in = wire.response_status(line) == "OK"
            if tag == self.idle_tag:
                self.idle_tag = None
        in_fetch = wire.starts_fetch(line)
        while True:
            listing = wire.capabilities(logged_in=self.logged_in, move=self.move)
            line = wire.rewrite_capabilities(line, listing)
            if in_fetch and self.size_factor is not None:
                line = wire.rewrite_sizes(line, self.size_factor)
            literal = wire.literal_at_end(line)
            await self.out.send(line, complete=literal is None)
            if literal is None:
                return
            remaining = literal[0]
            while remaining:
                chunk = await self.server_bytes(min(CHUNK, remaining))
                remaining -= len(chunk)
                await self.out.send(chunk, literal=True)
            line = await self.server_line()
