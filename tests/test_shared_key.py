"""Shared Key signing with remembered header order signs exactly as the SDK's policy does,
and fails here (not in production) if the SDK internals it leans on change."""

from __future__ import annotations

import uuid
from typing import Any

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob import BlobServiceClient
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

from devstack.stack import Stack
from shared.adapters.blob import BlobMessageSink
from shared.adapters.shared_key import SortedHeadersSharedKey, canonical_order, sorted_headers_key
from shared.model import Secret
from shared.storage_clients import StorageClients
from shared.storage_settings import StorageConnection

KEY = "a2V5IGZvciB0ZXN0cyBvbmx5IGtleSBmb3IgdGVzdHMgb25seQ=="


def _signed(policy: SharedKeyCredentialPolicy, headers: dict[str, str]) -> str:
    request = HttpRequest("PUT", "http://127.0.0.1:10000/acct/mail/a%40b/1.eml?comp=x",
                          headers=headers, content=b"raw")
    pipeline_request: Any = PipelineRequest(request, PipelineContext(None))
    policy.on_request(pipeline_request)  # type: ignore[no-untyped-call]
    authorization: str = request.headers["Authorization"]
    return authorization


def test_it_signs_every_request_as_the_sdk_does() -> None:
    sdk = SharedKeyCredentialPolicy("acct", KEY)  # type: ignore[no-untyped-call]
    ours = sorted_headers_key(sdk)
    assert isinstance(ours, SortedHeadersSharedKey)
    base = {"x-ms-date": "Tue, 01 Dec 2026 18:00:00 GMT", "x-ms-version": "2026-02-06",
            "Content-Length": "3", "If-None-Match": "*", "x-ms-blob-type": "BlockBlob"}
    # Names whose order the service's collation decides: hyphens, underscores, digits, case.
    metadata = {"x-ms-meta-message_id": "%3Ca%40b%3E", "x-ms-meta-dedup_key": "v2-00",
                "x-ms-meta-uid": "7", "x-ms-meta-uidvalidity": "1", "x-ms-meta-a-b": "1",
                "x-ms-meta-a_b": "2", "x-ms-meta-ab": "3", "x-ms-meta-A9": "4",
                "x-ms-meta-folder_truncated": "true", "x-ms-blob-content-type": "message/rfc822"}
    for headers in (base, base | metadata, dict(reversed(list((base | metadata).items())))):
        before = canonical_order.cache_info().hits
        for _ in range(2):
            assert _signed(ours, dict(headers)) == _signed(sdk, dict(headers))
        assert canonical_order.cache_info().hits > before  # the SDK still asks through our override


def test_other_credentials_are_left_alone() -> None:
    assert sorted_headers_key(None) is None
    assert sorted_headers_key("a SAS token") is None


def test_the_blob_service_signs_with_it_and_storage_accepts(stack: Stack) -> None:
    clients = StorageClients(StorageConnection(connection_string=Secret(stack.storage_connection_string)),
                             container=f"sk-{uuid.uuid4().hex[:12]}", table="t", queue="q",
                             credential=lambda: None,  # type: ignore[arg-type, return-value]
                             verify=True, upload_connections=4)
    assert isinstance(clients.blob_service.credential, SortedHeadersSharedKey)
    sink = BlobMessageSink(clients.container)
    sink.ensure_container()
    metadata = {"mailbox": "a%40b", "message_id": "%3Cx%40y%3E", "dedup_key": "v2-ab", "uid": "9"}
    assert sink.create("a%40b/INBOX/1/0000000009.eml", b"raw bytes", metadata) is True
    [listed] = clients.container.list_blobs(include=["metadata"])
    assert listed.metadata == metadata
    assert BlobServiceClient.from_connection_string(stack.storage_connection_string).get_container_client(
        clients.container.container_name).download_blob(listed.name).readall() == b"raw bytes"
