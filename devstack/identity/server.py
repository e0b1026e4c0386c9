"""The emulator's HTTPS server: turns each request into a :class:`Request`, lets the router
answer it, and writes the :class:`Reply` back as JSON."""

from __future__ import annotations

import json
import logging
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from devstack.identity.endpoint import Emulator, Reply, Request, first_values
from devstack.identity.routes import route
from devstack.identity.state import EmulatorState
from devstack.identity.tokens import SigningKey

log = logging.getLogger("devstack.emulator")

INTERNAL_ERROR = Reply(500, {"error": {"code": "InternalError", "message": "emulator error"}})


class EmulatorServer(ThreadingHTTPServer):
    """Serves the emulator over TLS on ``address``, one thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        state: EmulatorState,
        key: SigningKey,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, EmulatorHandler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.emulator = Emulator(state, key, self.base_url)

    @property
    def base_url(self) -> str:
        port: int = self.server_address[1]
        return f"https://127.0.0.1:{port}"


class EmulatorHandler(BaseHTTPRequestHandler):
    """One connection: reads each request whole and answers it through the router."""

    protocol_version = "HTTP/1.1"
    server: EmulatorServer
    server_version = "devstack-identity"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        # Only method, path without query and status: never tokens, secrets or forms.
        log.info("%s %s", self.command, urlsplit(self.path).path)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def _answer(self) -> None:
        url = urlsplit(self.path)
        try:
            # Read every body, refused or not: an unread one would be parsed as the next
            # request on this kept-alive connection.
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(self.command, url.path, first_values(url.query), self.headers, body)
            reply = route(self.server.emulator, request)
        except Exception:
            log.exception("internal error for %s %s", self.command, url.path)
            reply = INTERNAL_ERROR
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        raw = json.dumps(reply.body).encode() if reply.body is not None else b""
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Cache-Control", "no-store, no-cache")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)
