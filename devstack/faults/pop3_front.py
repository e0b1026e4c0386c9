"""The POP3 front: Exchange's greeting, CAPA and failures in front of Dovecot.

POP3 has no tags and no BYE: a fault that ends the session just closes it. Multi-line
answers (CAPA, RETR, TOP, LIST and UIDL without argument) are read to their final ``.``
so that the bytes of a message count as "literal" bytes, like an IMAP FETCH literal.
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque

from devstack.faults import imap_wire as wire
from devstack.faults.book import FaultBook
from devstack.faults.relay import SessionEnded
from devstack.faults.session import MailSession

GREETING = (b"+OK The Microsoft Exchange POP3 service is ready. ["
            + base64.b64encode("LO2P265CA0001.GBRP265.PROD.OUTLOOK.COM".encode("utf-16-le"))
            + b"]\r\n")
CAPA = b"+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n"
AUTH_FAILED = "Authentication failure: unknown user name or bad password."
END = b".\r\n"


def _multiline(verb: str, words: list[bytes]) -> bool:
    return verb in ("CAPA", "RETR", "TOP") or (verb in ("LIST", "UIDL") and len(words) == 1)


class Pop3Session(MailSession):
    """One POP3 client connection relayed to Dovecot."""

    protocol = "pop3"

    def __init__(self, book: FaultBook, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(book, reader, writer, None)
        self.expect: deque[tuple[str, bool]] = deque()  # (verb, multi-line) per command sent
        self.sasl = False
        self.logged_in = False
        self.commands_after_login = 0

    async def from_client(self) -> None:
        await self.greeted.wait()  # our own answers must not overtake the greeting
        while True:
            line = await self.inp.line()
            if self.sasl:
                await self.to_server(line)  # the empty answer to a failed login's challenge
                continue
            words = line.split()
            verb = words[0].decode("latin-1").upper() if words else ""
            if verb == "AUTH" and len(words) >= 2 and not self.logged_in:
                await self.authenticate([w.decode("latin-1") for w in words[1:]])
                continue
            self.count_command(verb)
            if await self.intercepted(verb):
                continue
            self.arm_command_faults(verb, len(line))
            self.expect.append((verb, _multiline(verb, words)))
            await self.to_server(line)

    async def authenticate(self, args: list[str]) -> None:
        mechanism = args[0].upper()
        if len(args) > 1:
            initial = args[1]
        else:
            await self.out.answer(b"+ \r\n")
            initial = (await self.inp.line()).strip().decode("latin-1")
            if initial == "*":
                await self.out.answer(b"-ERR Authentication aborted.\r\n")
                return
        user = wire.sasl_user(mechanism, initial)
        if user is not None:
            before = self.attribute(user)
            self.count_command("AUTH")
            if await self.refused(before) or await self.answered("AUTH"):
                return
        self.arm_command_faults("AUTH", 0)
        self.sasl = True
        self.expect.append(("AUTH", False))
        await self.to_server(f"AUTH {mechanism} {initial}\r\n".encode())

    async def refused(self, open_before: int) -> bool:
        for fault in self.book.matching("pop3", "max_connections", mailbox=self.ctx.mailbox):
            if open_before >= fault.limit and self.book.take(fault):
                self.book.record(fault, f"refused connection {open_before + 1} (limit {fault.limit})",
                                 mailbox=self.ctx.mailbox)
                await self.out.answer(f"-ERR {wire.NOT_CONNECTED}\r\n".encode())
                return True
        return False

    async def intercepted(self, verb: str) -> bool:
        if self.logged_in:
            self.commands_after_login += 1
            for fault in self.book.matching("pop3", "bye", mailbox=self.ctx.mailbox, verb=verb):
                limit = fault.after_commands
                if limit is not None and self.commands_after_login > limit and self.book.take(fault):
                    self.book.record(fault, f"closed instead of answering {verb} (command "
                                     f"{self.commands_after_login} after login)", mailbox=self.ctx.mailbox)
                    raise SessionEnded("closed after commands")
        return await self.answered(verb)

    async def answered(self, verb: str) -> bool:
        fault = self.book.take_first("pop3", "answer", mailbox=self.ctx.mailbox, verb=verb)
        if fault is None:
            return False
        self.book.record(fault, f"-ERR {fault.text} to {verb}" + (", then closed" if fault.bye else ""),
                         mailbox=self.ctx.mailbox)
        await self.out.answer(f"-ERR {fault.text}\r\n".encode())
        if fault.bye:
            raise SessionEnded("closed after an answer")
        return True

    async def from_server(self) -> None:
        line = await self.server_line()
        async with self.out.lock:
            await self.out.send(GREETING if line.startswith(b"+OK") else line, complete=True)
        self.greeted.set()
        while True:
            line = await self.server_line()
            async with self.out.lock:
                await self.relay_response(line)

    async def relay_response(self, line: bytes) -> None:
        verb, multiline = self.expect[0] if self.expect else ("", False)
        if self.sasl:
            if line.startswith(b"+ ") or line.rstrip(b"\r\n") == b"+":
                await self.out.send(line, complete=True)  # a challenge: the login goes on
                return
            self.sasl = False
            self.logged_in = line.startswith(b"+OK")
        if self.expect:
            self.expect.popleft()
        if not (multiline and line.startswith(b"+OK")):
            await self.out.send(line, complete=True)
            return
        if verb == "CAPA":
            while line != END:
                line = await self.server_line()
            await self.out.send(CAPA, complete=True)
            return
        await self.out.send(line)
        while True:
            line = await self.server_line()
            if line == END:
                await self.out.send(line, complete=True)
                return
            await self.out.send(line, literal=True)
