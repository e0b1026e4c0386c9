"""Poll messages and notices are Put Message requests sent through the queue client's own
SDK pipeline (``QueueClient._pipeline``, a private attribute): these tests fail if the SDK
stops offering it or a request leaves its authentication or retries behind."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
from azure.storage.queue import QueueClient

from devstack.stack import Stack
from shared.adapters.notice_queue import StorageNoticeQueue
from shared.adapters.poll_queue import StoragePollQueue
from shared.errors import StorageError
from shared.storage_clients import STORAGE_RETRY
from shared.wiring import Components, load_settings


def test_the_clients_of_the_sdk_still_carry_the_pipeline_the_adapters_send_through(stack: Stack):
    client = QueueClient.from_connection_string(stack.storage_connection_string, "any")
    assert callable(client._pipeline.run)


def test_a_poll_message_is_base64_text_with_the_default_time_to_live_in_a_queue_made_on_demand(
        stack: Stack):
    name = f"polls-{uuid.uuid4().hex[:12]}"
    client = QueueClient.from_connection_string(stack.storage_connection_string, name)
    StoragePollQueue(client).send('{"mailbox": "ré@contoso.com"}')
    [message] = client.peek_messages(max_messages=5)
    assert base64.b64decode(message.content).decode() == '{"mailbox": "ré@contoso.com"}'
    assert message.inserted_on is not None and message.expires_on is not None
    assert message.expires_on - message.inserted_on == dt.timedelta(days=7)


def test_the_wirings_poll_queue_sends_what_the_queue_trigger_reads(stack: Stack):
    env = stack.settings_env("a@contoso.com") | {"POLL_QUEUE": f"polls-{uuid.uuid4().hex[:12]}"}
    Components(load_settings(env)).poll_queue.send('{"mailbox": "a@contoso.com"}')
    client = QueueClient.from_connection_string(stack.storage_connection_string, env["POLL_QUEUE"])
    [message] = client.peek_messages(max_messages=5)
    assert base64.b64decode(message.content) == b'{"mailbox": "a@contoso.com"}'


@pytest.mark.parametrize("adapter", [StoragePollQueue, StorageNoticeQueue])
def test_a_busy_answer_is_retried_by_the_clients_own_policy(stack: Stack, faults, adapter):
    name = f"q-{uuid.uuid4().hex[:12]}"
    QueueClient.from_connection_string(stack.storage_connection_string, name).create_queue()
    client = QueueClient.from_connection_string(faults.storage_connection_string, name, **STORAGE_RETRY)
    faults.storage_busy(service="queue", method="POST", times=1)
    adapter(client).send("{}")
    assert faults.storage_requests("queue") == 2
    assert len(QueueClient.from_connection_string(stack.storage_connection_string, name)
               .peek_messages(max_messages=5)) == 1


def test_a_poll_queue_that_keeps_failing_fails_the_send_with_a_clear_error(stack: Stack, faults):
    client = QueueClient.from_connection_string(faults.storage_connection_string,
                                                f"polls-{uuid.uuid4().hex[:12]}", **STORAGE_RETRY)
    faults.storage_busy(service="queue", times=None, seconds=60)
    with pytest.raises(StorageError, match="queue a poll on 'polls-"):
        StoragePollQueue(client).send("{}")
