"""HTTP/1.1 requests with a body already in memory, over kept-alive connections: the storage
transport's wire.

Measured against Azurite, a small Put Blob through urllib3 cost about 1.0-1.3 ms of client CPU
and through this about 0.4-0.7 ms, the SDK pipeline's own work included: urllib3 parses and
re-encodes the URL and copies the headers several times per request, and http.client parses
each answer's headers with the email package and wraps the socket in a new file per answer.
Here the request goes out in one write and the answer is read from one buffered reader per
connection (``shared.adapters.http_framing``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import select
import socket
import ssl
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.adapters.http_framing import LINE_LIMIT, Answer, read_answer, read_line

log = logging.getLogger("mailferry.storage.pool")

# Headers the connection itself decides; a caller's are dropped.
_OWN_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))
# Methods that send a Content-Length even with no body (servers may refuse them without one).
_BODILESS = frozenset(("GET", "HEAD", "DELETE", "OPTIONS"))


class WireError(Exception):
    """A request that failed on the wire. ``sent``: whether the request may have reached the
    server (False: the connection could not be made); ``timed_out``: a timeout, not a close or
    reset."""

    def __init__(self, message: str, *, sent: bool, timed_out: bool) -> None:
        super().__init__(message)
        self.sent = sent
        self.timed_out = timed_out


@dataclass
class _Connection:
    sock: socket.socket
    reader: io.BufferedReader = field(repr=False)
    used: bool = False  # sent a request before: the server may have closed it meanwhile

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class _StaleConnection(Exception):
    """A kept-alive connection that closed before any of the answer arrived."""


class Http11Pool:
    """Keeps up to ``size`` idle connections per host, reuses them, sends one request at a time
    on each. Thread-safe: each request takes a connection of its own."""

    def __init__(self, *, size: int, connect_timeout: float, read_timeout: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self.size = size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._tls = tls
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()
        # A pool dropped without close() still closes its connections.
        weakref.finalize(self, _close_all, self._idle, self._lock)

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes, *,
                connect_timeout: float | None = None, read_timeout: float | None = None) -> Answer:
        """Send the request and read its whole answer; WireError when the wire fails."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        key = (scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = _head(method, target, parts.netloc, headers, body)
        timeouts = (connect_timeout or self.connect_timeout, read_timeout or self.read_timeout)
        kept = self._take(key)
        if kept is not None:
            try:
                return self._exchange(kept, key, method, head, body, timeouts[1])
            except _StaleConnection:
                # Closed by the server while it was idle (a race the check before reuse cannot
                # close): sent once more on a new connection, as HTTP clients do.
                pass
        return self._exchange(self._connect(key, timeouts), key, method, head, body, timeouts[1])

    def close(self) -> None:
        """Close every idle connection."""
        _close_all(self._idle, self._lock)

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None or _still_open(connection):
                return connection
            connection.close()

    def _give_back(self, key: tuple[str, str, int], connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.size:
                idle.append(connection)
                return
        # More requests ran at once than the pool keeps: a sign the pool is too small.
        log.debug("connection pool is full for %s:%d; closing a connection", key[1], key[2])
        connection.close()

    def _connect(self, key: tuple[str, str, int], timeouts: tuple[float, float]) -> _Connection:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout=timeouts[0])
        except TimeoutError as e:
            raise WireError(f"could not connect to {host}:{port} in {timeouts[0]:g} s", sent=False,
                            timed_out=True) from e
        except OSError as e:
            raise WireError(f"could not connect to {host}:{port}: {e}", sent=False,
                            timed_out=False) from e
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                context = self._tls or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=host)  # under the connect timeout
            sock.settimeout(timeouts[1])
        except TimeoutError as e:
            sock.close()
            raise WireError(f"no TLS handshake with {host}:{port} in {timeouts[0]:g} s", sent=False,
                            timed_out=True) from e
        except (OSError, ssl.SSLError) as e:
            sock.close()
            raise WireError(f"TLS with {host}:{port} failed: {e}", sent=False, timed_out=False) from e
        return _Connection(sock, io.BufferedReader(socket.SocketIO(sock, "rb"), LINE_LIMIT))

    def _exchange(self, connection: _Connection, key: tuple[str, str, int], method: str,
                  head: bytes, body: bytes, read_timeout: float) -> Answer:
        """One request and its answer; _StaleConnection when a kept connection turns out closed
        before any of the answer arrived."""
        stale_if_closed, connection.used = connection.used, True
        try:
            connection.sock.settimeout(read_timeout)
            if len(body) <= LINE_LIMIT:
                connection.sock.sendall(head + body)
            else:
                connection.sock.sendall(head)
                connection.sock.sendall(memoryview(body))
            first = read_line(connection.reader)
            if not first:
                raise ConnectionResetError("closed before answering")
        except TimeoutError as e:
            connection.close()
            raise WireError(f"storage did not answer within {read_timeout:g} s", sent=True,
                            timed_out=True) from e
        except (OSError, ValueError) as e:
            connection.close()
            if stale_if_closed and isinstance(e, (ConnectionError, ssl.SSLEOFError)):
                raise _StaleConnection() from e
            raise WireError(f"storage dropped the connection before it answered: {e}", sent=True,
                            timed_out=False) from e
        try:
            answer, keep = read_answer(connection.reader, method, first)
        except TimeoutError as e:
            connection.close()
            raise WireError(f"storage stopped answering for {read_timeout:g} s", sent=True,
                            timed_out=True) from e
        except (OSError, ValueError) as e:
            connection.close()
            raise WireError(f"storage dropped the connection while answering: {e}", sent=True,
                            timed_out=False) from e
        if keep:
            self._give_back(key, connection)
        else:
            connection.close()
        return answer


def _close_all(idle: dict[tuple[str, str, int], list[_Connection]], lock: threading.Lock) -> None:
    with lock:
        connections = [c for kept in idle.values() for c in kept]
        idle.clear()
    for connection in connections:
        connection.close()


def _head(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if name.lower() in _OWN_HEADERS:
            continue
        text = f"{name}: {value}"
        if "\r" in text or "\n" in text:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(text)
    if body or method.upper() not in _BODILESS:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _still_open(connection: _Connection) -> bool:
    """An idle connection with nothing to read: not closed by the server, no stray bytes."""
    sock = connection.sock
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
