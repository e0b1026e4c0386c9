"""The storage clients' transport: what the SDK does through it works on the real
local stack, its failures are the azure-core errors the SDK retries on, and it trusts what
it is told to trust."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpRequest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devstack.stack import Stack
from shared.adapters.blob import BlobMessageSink
from shared.adapters.http_framing import Answer, Headers
from shared.adapters.storage_errors import storage_error
from shared.adapters.storage_transport import BufferedResponse, PooledTransport
from shared.storage_clients import STORAGE_RETRY, http_transport, pooled_transport


def _transport(*, verify: str | bool = True, read_timeout: float = 20) -> PooledTransport:
    return PooledTransport(pool_size=4, verify=verify, connection_timeout=5,
                           read_timeout=read_timeout, fallback=http_transport(4, verify=verify))


@pytest.fixture
def container(stack: Stack) -> ContainerClient:
    transport = pooled_transport(8)
    assert isinstance(transport, PooledTransport)
    service = BlobServiceClient.from_connection_string(stack.storage_connection_string,
                                                       transport=transport, **STORAGE_RETRY)
    client = service.get_container_client(f"pooled-{uuid.uuid4().hex[:12]}")
    client.create_container()
    return client


def test_messages_go_through_byte_for_byte_and_create_only(container: ContainerClient) -> None:
    sink = BlobMessageSink(container)
    raw = os.urandom(200_000) + b"\r\n.\r\n\x00"
    metadata = {"uid": "7", "message_id": "%3Ca%40b%3E"}
    assert sink.create("a/INBOX/1/0000000007.eml", raw, metadata) is True
    assert sink.create("a/INBOX/1/0000000007.eml", b"other bytes", metadata) is False
    assert sink.exists("a/INBOX/1/0000000007.eml")
    assert not sink.exists("a/INBOX/1/0000000008.eml")
    # A download is streamed: the requests transport behind this one carries it.
    assert container.download_blob("a/INBOX/1/0000000007.eml").readall() == raw
    [listed] = container.list_blobs(include=["metadata"])
    assert (listed.name, listed.size, listed.metadata) == ("a/INBOX/1/0000000007.eml", len(raw), metadata)
    assert listed.content_settings.content_type == "message/rfc822"


def test_the_sdks_other_calls_work_through_it(container: ContainerClient) -> None:
    blob = container.get_blob_client("lease-me")
    blob.upload_blob(b"x")
    lease = blob.acquire_lease(lease_duration=15)
    assert blob.get_blob_properties().lease.state == "leased"
    lease.release()
    assert container.get_container_properties().name == container.container_name


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    return server


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    server = _listener()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/c/b"
    server.close()


@pytest.fixture
def hanging_up_server() -> Iterator[str]:
    """Reads each request and closes the connection without an answer."""
    server = _listener()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/c/b"
    server.close()
    thread.join(timeout=5)


def _names_the_account(error: Exception, url: str) -> None:
    """The failure, as the adapters report it, names the host and port the request went to."""
    said = str(storage_error("write blob 'b'", error, role="Storage Blob Data Contributor"))
    assert f"in storage account {urlsplit(url).netloc}:" in said, said


def test_a_refused_connection_is_a_request_error_the_sdk_retries() -> None:
    server = _listener()
    port = server.getsockname()[1]
    server.close()
    url = f"http://127.0.0.1:{port}/c/b"
    with pytest.raises(ServiceRequestError) as raised:
        _transport().send(HttpRequest("PUT", url, content=b"x"))
    _names_the_account(raised.value, url)


def test_a_server_that_does_not_answer_is_a_response_timeout(silent_server: str) -> None:
    with pytest.raises(ServiceResponseTimeoutError) as raised:
        _transport(read_timeout=0.3).send(HttpRequest("PUT", silent_server, content=b"x"))
    _names_the_account(raised.value, silent_server)


def test_a_connection_closed_before_the_answer_is_a_response_error(hanging_up_server: str) -> None:
    with pytest.raises(ServiceResponseError) as raised:
        _transport().send(HttpRequest("PUT", hanging_up_server, content=b"x"))
    _names_the_account(raised.value, hanging_up_server)


def test_tls_trusts_the_bundle_it_is_given_and_only_that(stack: Stack, tmp_path: Path) -> None:
    url = stack.base_url
    trusting = _transport(verify=str(stack.ca_pem))
    response = trusting.send(HttpRequest("GET", url))
    assert isinstance(response, BufferedResponse) and response.status_code > 0
    with pytest.raises(ServiceRequestError):
        _transport(verify=True).send(HttpRequest("GET", url))  # the public CAs only
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate", encoding="utf-8")
    unreadable = _transport(verify=str(bundle))  # read at the first request, as requests does
    with pytest.raises(ServiceRequestError, match="CA bundle"):
        unreadable.send(HttpRequest("GET", url))


def test_a_response_reads_as_the_sdk_reads_it() -> None:
    """Text decodes with the charset, else UTF-8 without a byte-order mark, as azure-core's."""
    def response(body: bytes, content_type: str) -> BufferedResponse:
        headers = Headers({"Content-Type": content_type})
        return BufferedResponse(HttpRequest("GET", "http://127.0.0.1/"), Answer(200, "OK", headers, body))

    xml = response("\ufeff<a>é</a>".encode(), "application/xml")
    assert xml.text() == "<a>é</a>" and xml.body() == xml.content == xml.read()
    assert xml.headers["content-type"] == "application/xml"
    latin = response("é".encode("latin-1"), "text/plain; charset=ISO-8859-1")
    assert (latin.encoding, latin.text()) == ("ISO-8859-1", "é")
    table = response(b'{"a": "\xc3\xa9"}', "application/json;odata=minimalmetadata;streaming=true;charset=utf-8")
    assert (table.encoding, table.json()) == ("utf-8", {"a": "é"})
    assert response(b"", 'text/plain; Charset="us-ascii"').encoding == "us-ascii"
    assert response(b"", "text/plain; format=flowed").encoding is None


def test_the_request_attributes_the_transport_reads_are_still_there() -> None:
    """``data`` and ``files`` are azure-core's compatibility attributes of a request (the
    requests transport reads them too): pinned azure-core, and this fails if they go."""
    request = HttpRequest("PUT", "http://127.0.0.1/c/b", content=b"raw bytes")
    assert (request.data, request.files) == (b"raw bytes", None)
