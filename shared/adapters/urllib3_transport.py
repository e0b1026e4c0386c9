"""An azure-core HTTP transport straight on urllib3's connection pools, for the storage clients.

The SDK's requests transport spends about a third of a small upload's client CPU in requests
itself (settings merged per request, cookies, hooks, an adapter per call) and builds a TLS
context, reading the CA bundle, for every new connection. This transport sends each request
through one urllib3 pool manager whose one TLS context is built once, and maps urllib3's
errors to the azure-core errors the SDK's retry policies act on, as the requests transport
does. What it does not do itself it hands to ``fallback`` (a requests transport): streamed
responses (downloads), multipart file bodies and client certificates.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, MutableMapping
from email.message import Message
from typing import Any

import urllib3
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from shared.adapters.tls import tls_context


class BufferedResponse(HttpResponse):
    """A response read whole when it arrived; its connection is already back in the pool."""

    def __init__(self, request: HttpRequest, response: urllib3.BaseHTTPResponse) -> None:
        self._request = request
        self._status = response.status
        self._reason = response.reason or ""
        self._headers = response.headers
        self._content = response.data
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
        if not self.content_type:
            return None
        message = Message()
        message["content-type"] = self.content_type
        charset = message.get_param("charset")
        return charset if isinstance(charset, str) else None

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
    """urllib3's error for a request, with that request: the SDK's error keeps it as its inner
    error, as it keeps the requests transport's errors, which carry their request too (so a
    failure can name the storage account it went to)."""

    def __init__(self, error: Exception, request: HttpRequest) -> None:
        super().__init__(str(error))
        self.request = request


class Urllib3Transport(HttpTransport):  # type: ignore[type-arg]
    """Sends each request through one pool of reused connections; see the module's docstring."""

    def __init__(self, *, pool_size: int, verify: str | bool, connection_timeout: float,
                 read_timeout: float, fallback: HttpTransport) -> None:  # type: ignore[type-arg]
        """``verify``: True for the default CA bundle, or the path of the one to trust."""
        self.pool_size = pool_size
        self.verify = verify
        self._timeout = (connection_timeout, read_timeout)
        self._fallback = fallback
        self._built: urllib3.PoolManager | None = None
        self._lock = threading.Lock()

    def _pools(self) -> urllib3.PoolManager:
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
                self._built = urllib3.PoolManager(num_pools=4, maxsize=self.pool_size,
                                                  retries=False, ssl_context=context)
            return self._built

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if kwargs.get("stream") or kwargs.get("connection_cert") or request.files:
            response: HttpResponse = self._fallback.send(request, **kwargs)
            return response
        timeout = urllib3.Timeout(connect=kwargs.get("connection_timeout", self._timeout[0]),
                                  read=kwargs.get("read_timeout", self._timeout[1]))
        try:
            sent = self._pools().request(request.method, request.url, body=request.data,
                                       headers=request.headers, timeout=timeout, redirect=False,
                                       retries=False, preload_content=True, decode_content=True,
                                       enforce_content_length=True)
        except NewConnectionError as e:  # before ConnectTimeoutError: urllib3 derives it from it
            raise ServiceRequestError(e, error=SendFailed(e, request)) from e
        except ConnectTimeoutError as e:
            raise ServiceRequestTimeoutError(e, error=SendFailed(e, request)) from e
        except ReadTimeoutError as e:
            raise ServiceResponseTimeoutError(e, error=SendFailed(e, request)) from e
        except SSLError as e:
            raise ServiceRequestError(e, error=SendFailed(e, request)) from e
        except (ProtocolError, HTTPError) as e:
            # The connection broke while the request or the answer was under way.
            raise ServiceResponseError(e, error=SendFailed(e, request)) from e
        return BufferedResponse(request, sent)

    def open(self) -> None:
        self._fallback.open()

    def close(self) -> None:
        with self._lock:
            if self._built is not None:
                self._built.clear()
        self._fallback.close()

    def __enter__(self) -> Urllib3Transport:
        self.open()
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()
