"""The consumer example (examples/consumer) on real notices from a real poll of the stack:
every attachment of the demo mail lands in its own blob, byte for byte, under a safe name."""

from __future__ import annotations

import ast
import base64
import functools
import json
import subprocess
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.decorators.function_app import Function
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from examples.consumer import function_app as consumer
from tests.integration.helpers import REPO, poll
from tests.integration.test_notices import HOSTILE, demo_mailboxes, with_notices
from tests.interpreters import ensure_venv, interpreter_for

pytestmark = pytest.mark.usefixtures("identity_endpoint")
EXAMPLE = REPO / "examples" / "consumer"


def queue_messages(env: dict[str, str]) -> list[func.QueueMessage]:
    """The notice queue's messages as the Functions host hands them to the function: the
    body base64-decoded (host.json's messageEncoding), with its id and pop receipt."""
    queue = QueueClient.from_connection_string(env["MAIL_STORAGE"], env["NOTIFY_QUEUE"])
    found = []
    while batch := list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=300)):
        for message in batch:
            found.append(func.QueueMessage(id=message.id, body=base64.b64decode(message.content),
                                           pop_receipt=message.pop_receipt))
            queue.delete_message(message)
    return found


@functools.cache
def consumer_function() -> Function:
    """The example's one function, indexed once per process (a second indexing is refused)."""
    [function] = consumer.app.get_functions()
    return function


def run_consumer(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, messages: list[func.QueueMessage]) -> None:
    """Each message through the user function of the indexed queue trigger, as the worker does."""
    monkeypatch.setenv("MAIL_STORAGE", env["MAIL_STORAGE"])
    monkeypatch.setenv("NOTIFY_QUEUE", env["NOTIFY_QUEUE"])
    monkeypatch.delenv("ATTACHMENTS_CONTAINER", raising=False)
    consumer.blob_service.cache_clear()
    consumer.attachments_container.cache_clear()
    function = consumer_function()
    [binding] = json.loads(function.get_function_json())["bindings"]
    assert (binding["type"], binding["queueName"], binding["connection"]) == (
        "queueTrigger", "%NOTIFY_QUEUE%", "MAIL_STORAGE")
    for message in messages:
        function.get_user_function()(message)


def saved_attachments(env: dict[str, str]) -> dict[str, bytes]:
    service = BlobServiceClient.from_connection_string(env["MAIL_STORAGE"])
    client = service.get_container_client(f"{env['BLOB_CONTAINER']}-attachments")
    if not client.exists():
        return {}
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def expected_attachments(env: dict[str, str]) -> dict[str, bytes]:
    """What each stored message holds, read with the email package's own attachment walk."""
    service = BlobServiceClient.from_connection_string(env["MAIL_STORAGE"])
    mail = service.get_container_client(env["BLOB_CONTAINER"])
    expected = {}
    for blob in mail.list_blobs():
        message = message_from_bytes(mail.download_blob(blob.name).readall(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        for part in attachments_of(message):
            expected[f"{blob.name.removesuffix('.eml')}/{part.get_filename()}"] = part.get_content()
    return expected


def attachments_of(message: EmailMessage) -> Iterator[EmailMessage]:
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        yield part


def test_the_demo_mail_becomes_the_right_files(stack, new_mailbox, monkeypatch):
    env = with_notices(stack.settings_env(demo_mailboxes(stack, new_mailbox)))
    assert not poll(env).failed
    messages = queue_messages(env)
    assert len(messages) == 8
    run_consumer(env, monkeypatch, messages)
    saved = saved_attachments(env)
    expected = expected_attachments(env)
    # The invoice twice (INBOX and Invoices), the PDF and the CSV each; the export once.
    assert sorted(name.rsplit("/", 1)[1] for name in saved) == [
        "INV-2025-0042.pdf", "INV-2025-0042.pdf", "export.bin", "lines.csv", "lines.csv"]
    assert saved == {name: data if isinstance(data, bytes) else data.encode() for name, data in expected.items()}
    # A notice delivered again (at least once) changes nothing.
    run_consumer(env, monkeypatch, messages[:3])
    assert saved_attachments(env) == saved


def test_hostile_attachment_names_stay_in_their_message_folder(stack, new_mailbox, monkeypatch):
    address = new_mailbox()
    stack.append(address, "INBOX", HOSTILE[0])
    env = with_notices(stack.settings_env(address))
    assert not poll(env).failed
    run_consumer(env, monkeypatch, queue_messages(env))
    saved = saved_attachments(env)
    [folder] = {name.rsplit("/", 1)[0] for name in saved}
    assert folder.endswith("/0000000001") and folder.startswith(address)
    names = sorted(name.rsplit("/", 1)[1] for name in saved)
    assert names == sorted(["passwd", "boot.ini", "evil.exe", "invoicegpj.exe", "abc.pdf", "_CON.txt",
                            "zerowidth.txt", "ctl.bin"])
    # Each file holds its own (base64-encoded) original name: nothing swapped or lost.
    assert sorted(saved.values()) == sorted(
        n.encode() for n in ["../../etc/passwd", "..\\..\\boot.ini", "C:\\Windows\\evil.exe", "invoice\u202egpj.exe",
                             "a\u2400b\u2215c\uff0f.pdf", "CON.txt", "zero\u200bwidth.txt", "\x01\x7fctl.bin"])


def test_a_notice_whose_blob_changed_is_refused(stack, new_mailbox, monkeypatch):
    address = new_mailbox()
    stack.append(address, "INBOX", HOSTILE[0])
    env = with_notices(stack.settings_env(address))
    poll(env)
    [message] = queue_messages(env)
    notice = json.loads(message.get_body()) | {"sha256": "0" * 64}
    with pytest.raises(ValueError, match="sha256"):
        run_consumer(env, monkeypatch, [func.QueueMessage(body=json.dumps(notice).encode())])
    assert saved_attachments(env) == {}


def test_the_example_stands_alone():
    """It is the template users copy: nothing of mailferry's own code."""
    for path in EXAMPLE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] in ("shared", "devstack", "tests", "function_app")}, path
    required = {line.split("==")[0] for line in (EXAMPLE / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#")}
    assert required == {"azure-functions", "azure-identity", "azure-storage-blob"}


def test_the_functions_worker_indexes_the_example(tmp_path: Path):
    """The real language worker (Python 3.13+) loads the example as the host would."""
    worker = ensure_venv(interpreter_for((3, 13)), "worker", ["-r", "requirements-worker.txt"])
    result = subprocess.run([str(worker), str(REPO / "tests" / "worker_index_probe.py"), str(EXAMPLE)],
                            cwd=EXAMPLE, capture_output=True, text=True, timeout=120, check=False,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    functions = json.loads(result.stdout.strip().splitlines()[-1])["functions"]
    [trigger] = functions["save_attachments"]
    assert (trigger["type"], trigger["queueName"], trigger["connection"]) == (
        "queueTrigger", "%NOTIFY_QUEUE%", "MAIL_STORAGE")
