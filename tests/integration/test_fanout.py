"""Fan-out mode on the real stack: the timer queues, queue-triggered polls deliver exactly once."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from azure.data.tables import TableClient
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devstack.stack import Stack
from shared.adapters.lease import BlobLeaseStore
from shared.entry import run_queue_poll, run_timer_poll
from shared.fanout import MAX_DEQUEUE_COUNT, MailboxPollFailed, poll_message
from shared.model import MailboxResult
from shared.naming import folder_prefix
from shared.settings import Settings
from shared.wiring import Components
from tests.integration.helpers import WorkerContext, indexed_functions, stored_blobs

pytestmark = pytest.mark.usefixtures("identity_endpoint")


def fanout_env(stack: Stack, *addresses: str) -> dict[str, str]:
    """App settings for fan-out mode, with a queue of this test's own."""
    return stack.settings_env(", ".join(addresses)) | {
        "POLL_MODE": "fanout", "POLL_QUEUE": f"polls-{uuid.uuid4().hex[:12]}"}


def queue_client(env: dict[str, str], *, decode: bool = True) -> QueueClient:
    """The fan-out queue as a worker reads it (base64-decoded, as the Functions host does)."""
    policy = TextBase64DecodePolicy() if decode else None
    return QueueClient.from_connection_string(env["MAIL_STORAGE"], env["POLL_QUEUE"],
                                              message_decode_policy=policy)


def blobs_of(env: dict[str, str], address: str) -> dict[str, bytes]:
    prefix = folder_prefix(address, "INBOX")
    return {name: raw for name, raw in stored_blobs(env).items() if name.startswith(prefix)}


def messages(n: int, tag: str) -> list[bytes]:
    return [f"Message-ID: <{i}.{tag}@fabrikam.com>\r\nSubject: {tag} {i}\r\n\r\nbody {i}\r\n".encode()
            for i in range(n)]


def queue_message(address: str, dequeue_count: int) -> QueueMessage:
    """What the Functions worker passes the queue function (the host has decoded the body)."""
    # The concrete class of the azure-functions library has an unannotated constructor.
    return QueueMessage(  # type: ignore[no-untyped-call]
        body=poll_message(address).encode(), dequeue_count=dequeue_count)


@pytest.fixture
def app_settings(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Sets app settings the way the Functions host does: as environment variables."""

    def apply(env: dict[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return apply


def test_the_timer_in_fanout_mode_queues_one_base64_message_per_mailbox_and_polls_nothing(
        stack, new_mailbox, app_settings):
    addresses = [new_mailbox() for _ in range(3)]
    for address in addresses:
        stack.append(address, "INBOX", b"Subject: waits for the queue\r\n\r\nx\r\n")
    env = fanout_env(stack, *addresses)
    app_settings(env)
    indexed_functions()["poll_mailboxes"].get_user_function()(TimerRequest(past_due=False),
                                                              WorkerContext())
    raw = [m.content for m in queue_client(env, decode=False).peek_messages(max_messages=32)]
    assert sorted(json.loads(base64.b64decode(text))["mailbox"] for text in raw) == sorted(addresses)
    assert stored_blobs(env) == {}


def test_the_queue_function_is_indexed_with_the_queue_setting_and_the_storage_connection():
    function = indexed_functions()["poll_mailbox"]
    [binding] = json.loads(function.get_function_json())["bindings"]
    assert binding["type"] == "queueTrigger" and binding["direction"] == "IN"
    assert binding["queueName"] == "%POLL_QUEUE%"
    assert binding["connection"] == "MAIL_STORAGE"
    assert binding["name"] == "message"


def test_calling_the_queue_function_polls_the_mailbox_its_message_names(
        stack, new_mailbox, app_settings):
    named, other = new_mailbox(), new_mailbox()
    stack.append_many(named, "INBOX", messages(3, "named"))
    stack.append(other, "INBOX", b"Subject: not this one\r\n\r\nx\r\n")
    env = fanout_env(stack, named, other)
    app_settings(env)
    handler = indexed_functions()["poll_mailbox"].get_user_function()
    handler(queue_message(named, 1), WorkerContext())
    assert sorted(stored_blobs(env).values()) == sorted(stack.server_messages(named, "INBOX").values())
    # A message naming a mailbox that is not configured is dropped, not retried.
    handler(queue_message("gone@contoso.com", 1), WorkerContext())
    assert len(stored_blobs(env)) == 3


def test_a_held_lease_makes_a_duplicate_message_complete_without_polling(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", messages(2, "held"))
    env = fanout_env(stack, address)
    leases = Components(Settings.from_mapping(env)).leases
    holder = leases.acquire(address)
    assert holder is not None
    assert run_queue_poll(poll_message(address), env=env) is None
    assert stored_blobs(env) == {}
    holder.release()
    result = run_queue_poll(poll_message(address), env=env)
    assert result is not None and result.delivered == 2
    assert leases.acquire(address) is not None  # the poll gave its lease back


def test_two_workers_given_the_same_mailbox_at_once_deliver_each_message_once(stack, new_mailbox):
    address = new_mailbox()
    count = stack.append_many(address, "INBOX", messages(300, "dup"))
    env = fanout_env(stack, address)
    start = threading.Barrier(2)
    results: list[MailboxResult | None] = []

    def worker() -> None:
        start.wait()
        results.append(run_queue_poll(poll_message(address), env=env))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 2
    assert sum(r.delivered for r in results if r is not None) == count
    assert sorted(stored_blobs(env).values()) == sorted(stack.server_messages(address, "INBOX").values())


def test_a_lease_left_by_a_crashed_worker_expires_and_the_next_poll_proceeds(stack, new_mailbox):
    address = new_mailbox()
    stack.append_many(address, "INBOX", messages(2, "crash"))
    env = fanout_env(stack, address)
    crashed = BlobLeaseStore(Components(Settings.from_mapping(env)).storage.lease_container,
                             duration_seconds=15)
    assert crashed.acquire(address) is not None  # and never renewed nor released
    taken = time.monotonic()
    assert run_queue_poll(poll_message(address), env=env) is None
    time.sleep(max(0.0, taken + 16 - time.monotonic()))
    result = run_queue_poll(poll_message(address), dequeue_count=2, env=env)
    assert result is not None and result.delivered == 2


def test_a_mailbox_failing_on_its_last_attempt_is_given_up_in_its_health_without_raising(
        stack, new_mailbox, app_settings):
    address = new_mailbox(granted=False)
    env = fanout_env(stack, address)
    app_settings(env)
    with pytest.raises(MailboxPollFailed, match=f"attempt 1 of {MAX_DEQUEUE_COUNT}"):
        run_queue_poll(poll_message(address), dequeue_count=1, env=env)
    handler = indexed_functions()["poll_mailbox"].get_user_function()
    handler(queue_message(address, MAX_DEQUEUE_COUNT), WorkerContext())
    [health] = Components(Settings.from_mapping(env)).state.list_health()
    assert health.last_error is not None
    assert health.last_error.startswith(f"Queue message given up after {MAX_DEQUEUE_COUNT} attempts")
    assert "Add-MailboxPermission" in health.last_error
    assert health.consecutive_failures == 2
    table = TableClient.from_connection_string(env["MAIL_STORAGE"], env["CHECKPOINT_TABLE"])
    row = table.get_entity(address.lower(), "health")
    assert row["QueueGivenUpAttempts"] == MAX_DEQUEUE_COUNT and row["QueueGivenUpAt"]


def test_ten_mailboxes_drained_by_three_workers_deliver_every_message_exactly_once(
        stack, new_mailbox):
    addresses = [new_mailbox() for _ in range(10)]
    for n, address in enumerate(addresses):
        stack.append_many(address, "INBOX", messages(10, f"box{n}"))
    env = fanout_env(stack, *addresses)
    # Two timer runs: every mailbox has a duplicated message, as after an overrun.
    run_timer_poll(past_due=False, env=env)
    run_timer_poll(past_due=False, env=env)
    errors: list[str] = []
    handled: list[str] = []

    def worker() -> None:
        queue = queue_client(env)
        while (message := queue.receive_message(visibility_timeout=300)) is not None:
            try:
                run_queue_poll(message.content, dequeue_count=message.dequeue_count or 1, env=env)
            except Exception as e:  # reported by the assertion below
                errors.append(f"{type(e).__name__}: {e}")
            else:
                queue.delete_message(message)
                handled.append(json.loads(message.content)["mailbox"])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    assert sorted(handled) == sorted(addresses * 2)
    assert queue_client(env).peek_messages() == []
    for address in addresses:
        delivered = blobs_of(env, address)
        assert len(delivered) == 10
        assert sorted(delivered.values()) == sorted(stack.server_messages(address, "INBOX").values())
