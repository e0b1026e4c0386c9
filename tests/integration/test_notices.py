"""Notices and summaries on the real stack: one notice per blob, after the blob; a run killed
between the two is repaired by the next; hostile mail never fails a delivery or a notice."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devstack.seed import demo_messages
from devstack.stack import Stack
from shared.adapters.delivered_blobs import BlobDeliveredMessages
from shared.adapters.notice_queue import StorageNoticeQueue
from shared.errors import StorageError
from shared.naming import lease_blob_name, lease_container_name
from shared.notice_document import SCHEMA, notice_id, summary_blob_name
from shared.storage_clients import STORAGE_RETRY
from shared.summary import safe_filename
from tests.integration.helpers import cli_command, cli_environment, container, poll, stored_blobs
from tests.integration.test_pop3 import settings_env as pop3_settings_env

pytestmark = pytest.mark.usefixtures("identity_endpoint")


def with_notices(env: dict[str, str], **extra: str) -> dict[str, str]:
    return env | {"NOTIFY_QUEUE": f"notices-{uuid.uuid4().hex[:12]}"} | extra


def received_notices(env: dict[str, str]) -> list[dict[str, Any]]:
    """Every message on the notice queue, decoded as the queue trigger would (and removed)."""
    queue = QueueClient.from_connection_string(env["MAIL_STORAGE"], env["NOTIFY_QUEUE"],
                                               message_decode_policy=TextBase64DecodePolicy())
    found: list[dict[str, Any]] = []
    if not queue_exists(queue):
        return found
    while True:
        batch = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=300))
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message.content))
            queue.delete_message(message)


def queue_exists(queue: QueueClient) -> bool:
    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def demo_mailboxes(stack: Stack, new_mailbox: Callable[..., str]) -> str:
    """The demo's mail (devstack/seed.py) in fresh mailboxes; the MAILBOXES setting for them."""
    plain, html, attach, non_ascii, no_id, malformed, large = demo_messages()
    ops, billing, support = new_mailbox(), new_mailbox(folders=("Invoices",)), new_mailbox()
    plan = {ops: {"INBOX": [plain, html]}, billing: {"INBOX": [attach, large], "Invoices": [attach]},
            support: {"INBOX": [non_ascii, no_id, malformed]}}
    for address, folders in plan.items():
        for folder, messages in folders.items():
            stack.append_many(address, folder, messages)
    return f"{ops}, {billing}:INBOX|Invoices, {support}"


def assert_one_notice_per_blob(env: dict[str, str], notices: list[dict[str, Any]]) -> dict[str, bytes]:
    """Every .eml blob has a notice, every notice a blob whose bytes it describes; repeats
    only as the same notice. Returns the .eml blobs."""
    blobs = {n: b for n, b in stored_blobs(env).items() if n.endswith(".eml")}
    by_blob: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for notice in notices:
        by_blob[notice["blob_name"]].append(notice)
    assert set(by_blob) == set(blobs)
    for name, same in by_blob.items():
        assert all(n == same[0] for n in same), name  # a repeat is the same notice, same id
        notice = same[0]
        assert notice["schema"] == SCHEMA and notice["id"] == notice_id(env["BLOB_CONTAINER"], name)
        assert notice["sha256"] == hashlib.sha256(blobs[name]).hexdigest() and notice["size"] == len(blobs[name])
        assert notice["blob_url"].endswith(f"/{env['BLOB_CONTAINER']}/{name.replace('@', '%40')}")
    return blobs


def test_a_poll_of_the_demo_mail_sends_one_notice_per_blob_after_it(stack, new_mailbox):
    # 1 MiB: the demo's 5 MB message is streamed in pieces, the others written whole.
    env = with_notices(stack.settings_env(demo_mailboxes(stack, new_mailbox)),
                       LARGE_MESSAGE_BYTES=str(1024 * 1024), SUMMARY_BLOBS="true")
    report = poll(env)
    assert not report.failed and report.delivered == 8
    notices = received_notices(env)
    assert len(notices) == 8
    blobs = assert_one_notice_per_blob(env, notices)
    client = container(env)
    by_subject = {n["summary"]["subject"]: n for n in notices}
    invoice = by_subject["Invoice INV-2025-0042"]
    assert [(a["filename"], a["content_type"]) for a in invoice["summary"]["attachments"]] == [
        ("INV-2025-0042.pdf", "application/pdf"), ("lines.csv", "text/csv")]
    large = by_subject["Quarterly export (large)"]
    assert large["size"] > 5_000_000 and large["summary"]["partial"] is True  # streamed: head only
    assert by_subject["Réclamation n° 17 \u2013 Lieferung verspätet \u2713"]["summary"]["from"] == (
        "Zoë Müller-Ødegård <zoe@fabrikam.example>")
    assert by_subject["Malformed MIME"]["uid"] == 3 and by_subject["No Message-ID here"]["summary"]["message_id"] is None
    for notice in notices:
        metadata = client.get_blob_client(notice["blob_name"]).get_blob_properties().metadata
        assert metadata["sha256"] == notice["sha256"]
        assert unquote(metadata["subject"]) == notice["summary"]["subject"]
        document = json.loads(client.download_blob(summary_blob_name(notice["blob_name"])).readall())
        assert document["summary_blob_name"] == summary_blob_name(notice["blob_name"])
        assert document["id"] == notice["id"] and document["sha256"] == notice["sha256"]
    assert len(stored_blobs(env)) == 2 * len(blobs)  # each .eml and its .json, nothing else
    # A second poll delivers nothing and announces nothing.
    assert poll(env).delivered == 0 and received_notices(env) == []


def test_pop3_messages_are_announced_by_uidl(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", demo_messages()[:3])
    env = with_notices(pop3_settings_env(stack, (address, "pop3")))
    assert poll(env).delivered == 3
    notices = received_notices(env)
    assert_one_notice_per_blob(env, notices)
    assert {n["protocol"] for n in notices} == {"pop3"} and all(n["uidl"] and n["uid"] is None for n in notices)


def test_a_poll_killed_between_blob_and_notice_is_announced_by_the_next_run(stack, new_mailbox, faults, tmp_path):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [f"Subject: {n}\r\nMessage-ID: <k{n}@x>\r\n\r\nbody {n}\r\n".encode()
                                         for n in range(12)])
    env = with_notices(faults.settings_env(address, mail=False))
    direct = env | {"MAIL_STORAGE": stack.storage_connection_string}
    # Every queue request is held and then dropped: blobs are written, notices never arrive.
    faults.storage_stall(service="queue", duration=60, then="close", times=None, seconds=90)
    process = subprocess.Popen(cli_command("poll"), env=cli_environment(env), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not stored_blobs(direct) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    faults.clear()
    written = stored_blobs(direct)
    assert written, "the poll wrote no blob before it was killed"
    assert len(received_notices(direct)) < len(written)  # killed between blob and notice
    # The killed run still holds the mailbox's lease for up to a minute: break it, as its
    # expiry would.
    leases = BlobServiceClient.from_connection_string(stack.storage_connection_string).get_container_client(
        lease_container_name(env["BLOB_CONTAINER"]))
    BlobLeaseClient(leases.get_blob_client(lease_blob_name(address))).break_lease(lease_break_period=0)
    report = poll(direct)
    assert not report.failed and report.mailboxes[0].skipped is None
    assert_one_notice_per_blob(direct, received_notices(direct))
    assert len(stored_blobs(direct)) == 12


def hostile_attachment_mail() -> bytes:
    names = ["../../etc/passwd", "..\\..\\boot.ini", "C:\\Windows\\evil.exe", "invoice\u202egpj.exe",
             "a\u2400b\u2215c\uff0f.pdf", "CON.txt", "zero\u200bwidth.txt", "\x01\x7fctl.bin"]
    parts = b"".join(
        b"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        # Backslashes escaped, as a quoted-string needs them to reach the parameter's value.
        b'Content-Disposition: attachment; filename="' + name.replace("\\", "\\\\").encode() + b'"\r\n\r\n'
        + base64.b64encode(name.encode()) + b"\r\n" for name in names)
    return (b"Subject: " + "\u00e9".encode("latin-1") + b" broken \xff\r\nX-Long: " + b"L" * 10_000
            + b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n")


HOSTILE = [
    hostile_attachment_mail(),
    b"Subject: =?utf-8?q?broken=ZZ?= =?x-unknown?b?!!!?=\r\nTo: <<<@@@>>>, ,,\r\n\r\nno From at all\r\n",
    b"From: " + b"F" * 10_000 + b"\r\nSubject: " + b"S" * 10_000 + b"\r\nReferences: " + b"<r@x> " * 2000 + b"\r\n\r\nx\r\n",
    b"\xff\xfe\x00\x00not a header\r\n\r\n",
    b"",
    b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\nx\r\n",
]


def test_hostile_mail_is_delivered_and_announced_with_safe_names(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", [raw for raw in HOSTILE if raw])
    env = with_notices(stack.settings_env(address))
    report = poll(env)
    assert not report.failed and report.delivered == len(HOSTILE) - 1
    assert sorted(stored_blobs(env).values()) == sorted(stack.server_messages(address, "INBOX").values())
    notices = received_notices(env)
    assert_one_notice_per_blob(env, notices)
    names = [a["filename"] for n in notices for a in n["summary"]["attachments"] or []]
    assert len(names) == 8
    for name in names:
        assert name == safe_filename(name) and name not in (".", "..") and "/" not in name and "\\" not in name
        assert not any(ord(c) < 32 or 0x202A <= ord(c) <= 0x202E for c in name)
    long = next(n for n in notices if (n["summary"]["subject"] or "").startswith("SSS"))
    assert len(long["summary"]["subject"]) <= 2000


def test_reading_back_and_summary_documents_on_real_storage(stack):
    service = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    client = service.get_container_client(f"delivered-{uuid.uuid4().hex[:12]}")
    client.create_container()
    delivered = BlobDeliveredMessages(client)
    client.upload_blob("a/1.eml", b"x" * 70_000, metadata={"sha256": "s"})
    client.upload_blob("a/empty.eml", b"")
    assert delivered.get_size_and_metadata("a/1.eml") == (70_000, {"sha256": "s"})
    assert b"".join(delivered.read("a/1.eml", length=1000)) == b"x" * 1000
    assert b"".join(delivered.read("a/1.eml")) == b"x" * 70_000
    assert b"".join(delivered.read("a/empty.eml", length=1000)) == b""
    assert delivered.create_json("a/1.json", '{"a": "é"}') is True
    assert delivered.create_json("a/1.json", "{}") is False  # create-only
    blob = client.download_blob("a/1.json")
    assert blob.readall() == '{"a": "é"}'.encode()
    assert (blob.properties.content_settings.content_type or "").startswith("application/json")


def test_the_notice_queue_is_made_when_missing_and_its_notices_never_expire(stack):
    name = f"notices-{uuid.uuid4().hex[:12]}"
    client = QueueClient.from_connection_string(stack.storage_connection_string, name)
    notices = StorageNoticeQueue(client)
    notices.send('{"subject": "Grüße \\u2713"}')
    notices.send("{}")
    [first, second] = client.peek_messages(max_messages=5)
    assert base64.b64decode(first.content).decode() == '{"subject": "Grüße \\u2713"}'
    assert base64.b64decode(second.content) == b"{}"
    assert first.expires_on is not None and first.expires_on.year >= 9999


def test_a_notice_queue_that_keeps_failing_fails_the_send_with_a_clear_error(stack, faults):
    # With the app's own retry policy: three retries about 2 s apart, then the error.
    client = QueueClient.from_connection_string(faults.storage_connection_string, f"notices-{uuid.uuid4().hex[:12]}",
                                                **STORAGE_RETRY)
    faults.storage_busy(service="queue", times=None, seconds=60)
    with pytest.raises(StorageError, match="send a message notice to queue 'notices-"):
        StorageNoticeQueue(client).send("{}")
