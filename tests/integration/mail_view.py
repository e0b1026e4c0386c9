"""What the server and the container hold, seen from outside the poller (for after-delivery tests)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient
from imapclient import IMAPClient

from devstack.dovecot import INSPECTOR_APPID
from devstack.stack import Stack
from shared.naming import lease_blob_name, lease_container_name
from tests.integration.helpers import container

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.I | re.M)


def numbered(n: int, tag: str, *, size: int = 600) -> bytes:
    """A message with a Message-ID unique to ``tag`` and ``n``."""
    body = (f"line {n} " * 20 + "\r\n") * max(1, size // 200)
    return (f"From: sender@fabrikam.com\r\nTo: ops@contoso.com\r\nSubject: {tag} {n}\r\n"
            f"Message-ID: <{tag}-{n}@fabrikam.example>\r\n\r\n{body}").encode()


def message_id(raw: bytes) -> str:
    found = _MESSAGE_ID.search(raw)
    assert found is not None, raw[:200]
    return found.group(1).decode()


def inspector(stack: Stack, address: str) -> IMAPClient:
    """An IMAPClient session on ``address`` that is not the app (regardless of grants)."""
    client = IMAPClient("127.0.0.1", stack.imaps_port, ssl=True, ssl_context=stack.ssl_context())
    client.oauth2_login(address, stack.issue_token(appid=INSPECTOR_APPID, oid=INSPECTOR_APPID,
                                                   sub=INSPECTOR_APPID))
    return client


def folder_view(stack: Stack, address: str, folder: str) -> dict[int, tuple[bytes, frozenset[bytes]]]:
    """UID → (bytes, flags) of every message in ``folder``; empty when the folder is missing."""
    client = inspector(stack, address)
    try:
        if not client.folder_exists(folder):
            return {}
        if client.select_folder(folder, readonly=True)[b"EXISTS"] == 0:
            return {}
        fetched: dict[int, dict[bytes, Any]] = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]", "FLAGS"])
        return {uid: (bytes(data[b"BODY[]"]), frozenset(data[b"FLAGS"])) for uid, data in fetched.items()}
    finally:
        client.logout()


def folder_ids(stack: Stack, address: str, folder: str) -> Counter[str]:
    """Message-ID → how many messages of ``folder`` carry it."""
    return Counter(message_id(raw) for raw, _ in folder_view(stack, address, folder).values())


def stored_ids(env: dict[str, str]) -> Counter[str]:
    """Message-ID → how many blobs of the container hold it (from the blobs' bytes)."""
    client = container(env)
    if not client.exists():
        return Counter()
    return Counter(message_id(client.download_blob(b.name).readall()) for b in client.list_blobs())


def stored_id_names(env: dict[str, str]) -> Counter[str]:
    """Message-ID → blobs carrying it, from the metadata alone (one listing, no downloads)."""
    client = container(env)
    if not client.exists():
        return Counter()
    return Counter(b.metadata["message_id"] for b in client.list_blobs(include=["metadata"]))


class Watcher:
    """One inspector session kept open, for looking often and cheaply (header fields only)."""

    def __init__(self, stack: Stack, address: str) -> None:
        self.client = inspector(stack, address)

    def count(self, folder: str) -> int:
        return int(self.client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])

    def ids(self, folder: str) -> Counter[str]:
        """Message-ID → how many messages of ``folder`` carry it (headers only)."""
        if not self.client.folder_exists(folder):
            return Counter()
        if self.client.select_folder(folder, readonly=True)[b"EXISTS"] == 0:
            self.client.unselect_folder()
            return Counter()
        try:
            fetched = self.client.fetch(self.client.search(["ALL"]),
                                        ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        finally:
            # STATUS of the selected folder would show it as it was when selected.
            self.client.unselect_folder()
        return Counter(message_id(bytes(data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]))
                       for data in fetched.values())

    def close(self) -> None:
        self.client.logout()


def break_lease(env: dict[str, str], address: str) -> None:
    """What an operator does after killing a run: free the mailbox's poll lease at once
    (otherwise the next run leaves the mailbox alone for up to a minute)."""
    blob = BlobServiceClient.from_connection_string(env["MAIL_STORAGE"]).get_blob_client(
        lease_container_name(env["BLOB_CONTAINER"]), lease_blob_name(address))
    try:
        BlobLeaseClient(blob).break_lease(lease_break_period=0)
    except ResourceNotFoundError:
        pass  # killed before it took the lease
    except HttpResponseError as e:
        if getattr(e, "error_code", None) != "LeaseNotPresentWithLeaseOperation":
            raise
