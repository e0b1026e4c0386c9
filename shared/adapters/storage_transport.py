"""The storage clients' azure-core HTTP transport: requests sent through kept-alive connections
(``shared.adapters.http11``) instead of requests and urllib3.

The SDK's requests transport spent about a third of a small upload's client CPU in requests
itself (settings merged per request, cookies, hooks, an adapter per call) and built a TLS
context, reading the CA bundle, for every new connection; urllib3 and http.client beneath it
still cost about twice what ``http11`` does per request. This transport builds its one TLS
context once and maps wire failures to the azure-core errors the SDK's retry policies act on,
as the requests transport does. What it does not do itself it hands to ``fallback`` (a requests
transport): streamed responses (downloads), bodies that are not bytes in memory (files,
iterables) and client certificates.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from shared.adapters.http11 import Http11Pool, WireError
from shared.adapters.http_framing import Answer
from shared.adapters.tls import tls_context


class BufferedResponse(HttpResponse):
    """A response read whole when it arrived; its connection is already back in the pool."""

    def __init__(self, request: HttpRequest, answer: Answer) -> None:
        self._request = request
        self._status = answer.status
        self._reason = answer.reason
        self._headers = answer.headers
        self._content = answer.body
        self._encoding: str | None = None

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def headers(self) -> MutableMapping[str, str]:
        return self._headers  # case-insensitive, as the SDK expects

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def content_type(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return True

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        if self._encoding is not None:
            return self._encoding
        # Read from the header's parameters directly: the email package's parser cost a
        # table request more client CPU than the rest of reading its answer.
        for parameter in (self.content_type or "").split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip('"') or None
        return None

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        encoding = encoding or self.encoding
        # As azure-core's own responses: storage's XML may start with a byte-order mark.
        if encoding is None or encoding.lower() == "utf-8":
            encoding = "utf-8-sig"
        return self._content.decode(encoding)

    def json(self) -> Any:
        return json.loads(self.text())

    def raise_for_status(self) -> None:
        if self._status >= 400:
            raise HttpResponseError(response=self)

    def body(self) -> bytes:
        """The content, by the name the SDK's deserializers look for."""
        return self._content

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def close(self) -> None:
        pass

    def __enter__(self) -> BufferedResponse:
        return self

    def __exit__(self, *args: Any) -> None:
        pass


class SendFailed(Exception):
    """The wire's error for a request, with that request: the SDK's error keeps it as its inner
    error, as it keeps the requests transport's errors, which carry their request too (so a
    failure can name the storage account it went to)."""

    def __init__(self, error: Exception, request: HttpRequest) -> None:
        super().__init__(str(error))
        self.request = request


class PooledTransport(HttpTransport):  # type: ignore[type-arg]
    """Sends each request through one pool of kept-alive connections; see the module's docstring."""

    def __init__(self, *, pool_size: int, verify: str | bool, connection_timeout: float,
                 read_timeout: float, fallback: HttpTransport) -> None:  # type: ignore[type-arg]
        """``verify``: True for the default CA bundle, or the path of the one to trust."""
        self.pool_size = pool_size
        self.verify = verify
        self._timeout = (connection_timeout, read_timeout)
        self._fallback = fallback
        self._built: Http11Pool | None = None
        self._lock = threading.Lock()

    def _pool(self) -> Http11Pool:
        # Built at the first request, as requests reads the CA bundle: a bundle that cannot be
        # read fails that request (and the run says so), not the wiring of the clients.
        built = self._built
        if built is not None:
            return built
        with self._lock:
            if self._built is None:
                try:
                    context = tls_context(self.verify)
                except (OSError, ValueError) as e:
                    raise ServiceRequestError(f"could not read the CA bundle {self.verify!r}: {e}",
                                              error=e) from e
                self._built = Http11Pool(size=self.pool_size, connect_timeout=self._timeout[0],
                                         read_timeout=self._timeout[1], tls=context)
            return self._built

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        body = request.data
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is None:
            body = b""
        if (kwargs.get("stream") or kwargs.get("connection_cert") or request.files
                or not isinstance(body, (bytes, bytearray, memoryview))):
            response: HttpResponse = self._fallback.send(request, **kwargs)
            return response
        try:
            answer = self._pool().request(request.method, request.url, request.headers, bytes(body),
                                          connect_timeout=kwargs.get("connection_timeout"),
                                          read_timeout=kwargs.get("read_timeout"))
        except WireError as e:
            failed = SendFailed(e, request)
            kind: type[ServiceRequestError] | type[ServiceResponseError]
            if not e.sent:
                kind = ServiceRequestTimeoutError if e.timed_out else ServiceRequestError
            else:  # the connection broke while the request or the answer was under way
                kind = ServiceResponseTimeoutError if e.timed_out else ServiceResponseError
            raise kind(str(e), error=failed) from e
        return BufferedResponse(request, answer)

    def open(self) -> None:
        self._fallback.open()

    def close(self) -> None:
        with self._lock:
            if self._built is not None:
                self._built.close()
        self._fallback.close()

    def __enter__(self) -> PooledTransport:
        self.open()
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()
