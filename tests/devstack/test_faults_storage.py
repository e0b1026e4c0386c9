"""The storage fronts on real sockets: Azure Storage's 503 and 500, resets, stalls and
outages in front of the real Azurite, seen by raw HTTP and by the Azure SDK."""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devstack.azurite import ACCOUNT
from devstack.faults import FaultFront
from devstack.stack import Stack

FAST_RETRY = {"initial_backoff": 0, "increment_base": 1}


def _blob_service(faults: FaultFront, **kwargs: Any) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(faults.storage_connection_string, **kwargs)


@dataclass
class Answer:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes


def _request(port: int, method: str, path: str, *, body: bytes = b"",
             conn: http.client.HTTPConnection | None = None) -> Answer:
    """One request (on ``conn`` when given, else on a connection closed afterwards)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body or None,
                     headers={"x-ms-version": "2025-01-05", "x-ms-client-request-id": "abc-123"})
        response = conn.getresponse()
        return Answer(response.status, response.reason, response.headers, response.read())
    finally:
        if own:
            conn.close()


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sdk_traffic_passes_through_byte_for_byte(faults):
    name = f"pass-{uuid.uuid4().hex[:8]}"
    data = bytes(range(256)) * 4096  # 1 MiB
    with _blob_service(faults) as service:
        container = service.create_container(name)
        container.upload_blob("a.bin", data, overwrite=False)
        assert container.download_blob("a.bin").readall() == data
    with TableServiceClient.from_connection_string(faults.storage_connection_string) as tables:
        table = tables.create_table(f"t{uuid.uuid4().hex[:10]}")
        table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "n": 7})
        assert table.get_entity("p", "r")["n"] == 7
    with QueueClient.from_connection_string(faults.storage_connection_string, name) as queue:
        queue.create_queue()
        queue.send_message("hello")
        assert [m.content for m in queue.receive_messages()] == ["hello"]
    assert faults.storage_requests("blob") >= 3 and faults.storage_requests("table") >= 3
    assert faults.storage_requests("queue") >= 3


def test_server_busy_is_a_503_with_azures_error_code_and_body(faults):
    fault_id = faults.storage_busy(service="blob")
    with closing(http.client.HTTPConnection("127.0.0.1", faults.ports.blob, timeout=15)) as conn:
        busy = _request(faults.ports.blob, "PUT", f"/{ACCOUNT}/busy?restype=container", body=b"xyz",
                        conn=conn)
        # The connection stays usable: the next request reaches Azurite.
        second = _request(faults.ports.blob, "GET", f"/{ACCOUNT}?comp=list", conn=conn)
    assert (busy.status, busy.reason) == (503, "The server is busy.")
    assert busy.headers["x-ms-error-code"] == "ServerBusy"
    assert busy.headers["x-ms-client-request-id"] == "abc-123"
    assert busy.headers["Content-Type"] == "application/xml"
    assert busy.body.startswith(b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>')
    assert second.headers["x-ms-error-code"] != "ServerBusy" and second.status != 503
    assert faults.events(fault_id=fault_id)[0].detail.startswith("ServerBusy on PUT /devstoreaccount1/busy")


def test_table_errors_come_as_json(faults):
    faults.storage_error(service="table")
    answer = _request(faults.ports.table, "GET", f"/{ACCOUNT}/Tables")
    assert answer.status == 500 and answer.headers["x-ms-error-code"] == "InternalError"
    assert json.loads(answer.body)["odata.error"]["code"] == "InternalError"


def test_the_sdk_reports_server_busy_and_retries_through_it(faults):
    name = f"busy-{uuid.uuid4().hex[:8]}"
    with _blob_service(faults) as service:
        service.create_container(name)
    faults.storage_busy(service="blob", method="PUT", times=1)
    with _blob_service(faults, retry_total=0) as service, pytest.raises(HttpResponseError) as caught:
        service.get_blob_client(name, "a").upload_blob(b"a")
    assert caught.value.status_code == 503 and "ErrorCode:ServerBusy" in str(caught.value)
    fault_id = faults.storage_busy(service="blob", method="PUT", times=2)
    with _blob_service(faults, retry_total=3, **FAST_RETRY) as service:
        service.get_blob_client(name, "a").upload_blob(b"a")
    assert len(faults.events(fault_id=fault_id)) == 2


def test_a_reset_before_azurite_is_an_rst_and_nothing_is_stored(stack: Stack, faults):
    name = f"rst-{uuid.uuid4().hex[:8]}"
    with _blob_service(faults) as service:
        service.create_container(name)
    faults.storage_reset(service="blob", method="PUT")
    with socket.create_connection(("127.0.0.1", faults.ports.blob), timeout=10) as sock:
        sock.sendall(f"PUT /{ACCOUNT}/{name}/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    faults.storage_reset(service="blob", method="PUT")
    with (_blob_service(faults, retry_total=0) as service,
          pytest.raises((ServiceRequestError, ServiceResponseError))):
        service.get_blob_client(name, "b").upload_blob(b"b")
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as direct:
        assert not direct.get_blob_client(name, "b").exists()


def test_a_reset_after_azurite_answered_loses_the_answer_but_not_the_write(stack: Stack, faults):
    name = f"rsta-{uuid.uuid4().hex[:8]}"
    with _blob_service(faults) as service:
        service.create_container(name)
    faults.storage_reset(service="blob", method="PUT", when="after")
    with (_blob_service(faults, retry_total=0) as service,
          pytest.raises((ServiceRequestError, ServiceResponseError))):
        service.get_blob_client(name, "c").upload_blob(b"c")
    with BlobServiceClient.from_connection_string(stack.storage_connection_string) as direct:
        assert direct.get_blob_client(name, "c").download_blob().readall() == b"c"


def test_a_stall_holds_a_request_for_its_duration(faults):
    faults.storage_stall(duration=2, service="blob", method="GET")
    started = time.monotonic()
    answer = _request(faults.ports.blob, "GET", f"/{ACCOUNT}?comp=list")
    assert time.monotonic() - started >= 1.9
    assert answer.status != 503


def test_faults_only_hit_the_method_and_path_they_name(faults):
    faults.storage_busy(times=None, seconds=30, method="PUT", path_prefix=f"/{ACCOUNT}/only")
    assert _request(faults.ports.blob, "PUT", f"/{ACCOUNT}/other?restype=container").status != 503
    assert _request(faults.ports.blob, "GET", f"/{ACCOUNT}/only?restype=container").status != 503
    assert _request(faults.ports.blob, "PUT", f"/{ACCOUNT}/only-x?restype=container").status == 503
    assert _request(faults.ports.table, "PUT", f"/{ACCOUNT}/only").status == 503


def test_an_outage_refuses_connections_and_ends_on_time(faults):
    with closing(http.client.HTTPConnection("127.0.0.1", faults.ports.blob, timeout=10)) as idle:
        _request(faults.ports.blob, "GET", f"/{ACCOUNT}?comp=list", conn=idle)
        armed = time.time()
        fault_id = faults.storage_outage(3, service="blob")
        started = faults.wait_for_event(fault_id)[0]
        assert started.detail.startswith("outage started")
        assert _refused(faults.ports.blob)
        assert not _refused(faults.ports.table)
        with pytest.raises((ConnectionError, http.client.HTTPException)):  # open connections were reset
            _request(faults.ports.blob, "GET", f"/{ACCOUNT}?comp=list", conn=idle)
    ended = faults.wait_for_event(fault_id, count=2, timeout=15)[1]
    assert ended.detail.startswith("outage ended")
    assert ended.at - armed >= 2.9
    assert not _refused(faults.ports.blob)
    assert _request(faults.ports.blob, "GET", f"/{ACCOUNT}?comp=list").status < 500


def test_clear_ends_an_outage_at_once(faults):
    fault_id = faults.storage_outage(600)
    faults.wait_for_event(fault_id)
    assert _refused(faults.ports.table)
    faults.clear()
    deadline = time.monotonic() + 5
    while _refused(faults.ports.table) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _refused(faults.ports.table) and not _refused(faults.ports.blob)
