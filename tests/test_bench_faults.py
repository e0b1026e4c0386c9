"""The bench's fault profile and its fan-out workers' queue discipline: the pure parts, the
delay proxy's resets, and the fault row run for real against the stack and the fault front."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from azure.storage.blob import ContainerClient

from bench.delay_proxy import DelayProxy
from bench.fanout import QueueListener
from bench.fault_poll import run_fault_poll
from bench.fault_profile import (
    MESSAGES_PER_RESET,
    check_delivery,
    fault_schedule,
    fault_section,
    fault_targets,
)
from bench.host_queue import HOST_JSON, QueueTriggerLimits, queue_limits, read_queue_limits
from bench.messages import make_message, message_id_of
from bench.report import Results, render
from bench.targets import evaluate_targets

KB = 1024


# -- the schedule ------------------------------------------------------------------------------
def test_the_schedule_repeats_and_puts_one_reset_in_each_block_of_500_messages():
    schedule = fault_schedule(5000, 5 * KB, 100)
    assert schedule == fault_schedule(5000, 5 * KB, 100)
    assert schedule != fault_schedule(5000, 5 * KB, 100, seed=1)
    assert len(schedule.resets) == 5000 // MESSAGES_PER_RESET
    for block, (after, at_byte) in enumerate(schedule.resets):
        assert block * 500 + 50 <= after <= block * 500 + 350
        assert 0 < at_byte < 100 * 5 * KB   # inside one FETCH of the batch
    assert 1500 <= schedule.throttle_after <= 3500
    assert schedule.backoff_ms == 5000
    assert len(fault_schedule(200, 5 * KB, 100).resets) == 1   # at least one


# -- the delivery check -------------------------------------------------------------------------
def _blobs(uids: list[int], ids: list[str], size: int = 10) -> list[tuple[str, int, str]]:
    return [(f"box@x/INBOX/7/{uid}.eml", size, mid) for uid, mid in zip(uids, ids, strict=True)]


def test_the_delivery_check_passes_each_message_once():
    ids = [message_id_of("box", i) for i in range(3)]
    check = check_delivery(_blobs([1, 2, 3], ids), ids, 30)
    assert check.exact and check.lost == 0 and check.duplicated == 0


def test_the_delivery_check_finds_a_message_stored_twice_and_one_missing():
    ids = [message_id_of("box", i) for i in range(3)]
    twice = check_delivery(_blobs([1, 2, 3, 4], [*ids, ids[0]]), ids, 40)
    assert not twice.exact and twice.duplicated == 1 and twice.lost == 0
    missing = check_delivery(_blobs([1, 2], ids[:2]), ids, 20)
    assert not missing.exact and missing.lost == 1
    # Right count and bytes, but one message under two UIDVALIDITYs and one never stored.
    swapped = check_delivery([*_blobs([1, 2], ids[:2]), ("box@x/INBOX/8/1.eml", 10, ids[0])], ids, 30)
    assert not swapped.exact and swapped.lost == 1 and swapped.duplicated == 1


def test_message_ids_are_those_of_the_seeded_messages():
    assert message_id_of("bfaults-wan", 7).encode() in make_message("bfaults-wan", 7, 5 * KB)


# -- targets and report -------------------------------------------------------------------------
def _summary(**changes: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "status": "ok", "seed": 1, "workload": "5,000 x 5 KB",
        "speed": {"mailferry": 200.0, "front": 190.0, "faults": 150.0},
        "resets": [[100, 2000], [700, 3000]], "throttle_after": 2000, "backoff_ms": 5000,
        "runs": 3, "resets_fired": 2, "throttles_fired": 1, "connections": 5,
        "busy_seconds": 28.0, "seconds": 33.3, "delivery": "5,000 blobs; lost 0, duplicated 0",
        "exact": True,
        "polls": [{"at": 0.0, "seconds": 20.0, "delivered": 3000, "already_present": 0,
                   "reconnects": 2, "ended": "throttled (...)"},
                  {"at": 25.1, "seconds": 8.2, "delivered": 2000, "already_present": 3,
                   "reconnects": 0, "ended": "complete"}]}
    summary.update(changes)
    return summary


def test_fault_targets_compare_with_wan_on_the_same_mailbox():
    speed, exact = fault_targets(_summary())
    assert speed.ratio == pytest.approx(0.75) and speed.met is True
    assert exact.met is True
    slow, broken = fault_targets(_summary(speed={"mailferry": 200.0, "faults": 100.0}, exact=False))
    assert slow.met is False and broken.met is False
    for target in fault_targets(None):
        assert target.met is None and target.measured == "not measured"


def test_the_report_shows_the_fault_section_and_targets():
    results = Results(faults=_summary())
    text = render(results, evaluate_targets(results), "t")
    assert "## Fault profile" in text and "Suggested Backoff Time: 5000 milliseconds" in text
    assert "| 2 | 25.1 | 8.2 | 2,000 | 3 | 0 | complete |" in text
    assert "| WAN + faults vs WAN |" in text and "| 0.75 | met |" in text
    assert fault_section(None) == []
    assert "Not measured: failed: x" in "\n".join(fault_section({"status": "failed: x"}))


# -- host.json's queue limits and the fan-out workers -------------------------------------------
def test_queue_limits_come_from_host_json_with_the_extension_defaults():
    limits = read_queue_limits(HOST_JSON)
    queues = json.loads(HOST_JSON.read_text())["extensions"]["queues"]
    assert (limits.batch_size, limits.new_batch_threshold) == (queues["batchSize"],
                                                               queues["newBatchThreshold"])
    assert queue_limits({}) == QueueTriggerLimits(16, 8)
    assert queue_limits({"extensions": {"queues": {"batchSize": 4}}}) == QueueTriggerLimits(4, 2)
    for bad in ({"batchSize": 0}, {"batchSize": 33}, {"batchSize": "4"}, {"newBatchThreshold": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            queue_limits({"extensions": {"queues": bad}})


def test_a_batch_is_fetched_only_when_few_enough_are_running():
    limits = QueueTriggerLimits(2, 2)
    assert limits.concurrency == 4
    assert [limits.batch_to_fetch(n) for n in range(5)] == [2, 2, 2, 0, 0]
    assert [QueueTriggerLimits(1, 0).batch_to_fetch(n) for n in range(2)] == [1, 0]


class Message:
    def __init__(self, n: int) -> None:
        self.content = json.dumps({"mailbox": f"box{n}@x"})
        self.dequeue_count = 1


class MemoryQueue:
    """The two calls the listener makes on an azure.storage.queue QueueClient."""

    def __init__(self, count: int) -> None:
        self.messages = [Message(n) for n in range(count)]
        self.fetches: list[int] = []
        self.deleted: list[Message] = []
        self.lock = threading.Lock()

    def receive_messages(self, *, messages_per_page: int, max_messages: int,
                         visibility_timeout: int) -> list[Message]:
        with self.lock:
            taken, self.messages = self.messages[:max_messages], self.messages[max_messages:]
            self.fetches.append(len(taken))
            return taken

    def delete_message(self, message: Message) -> None:
        with self.lock:
            self.deleted.append(message)


@pytest.mark.parametrize(("batch", "threshold"), [(1, 0), (4, 0), (2, 2)])
def test_a_worker_runs_as_many_polls_at_once_as_host_json_allows(batch: int, threshold: int):
    queue = MemoryQueue(12)
    running: list[int] = []
    peak: list[int] = [0]
    lock = threading.Lock()

    def poll(message: Any) -> int:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.05)
        with lock:
            running.pop()
        return 5

    listener = QueueListener(queue, QueueTriggerLimits(batch, threshold), poll, LookupError)
    listener.run(idle_seconds=0.2, start_timeout=5.0)
    assert listener.processed == 12 and listener.delivered == 60 and len(queue.deleted) == 12
    assert peak[0] == listener.peak_in_flight == batch + threshold
    assert max(queue.fetches) == batch


def test_a_failed_poll_is_reported_and_its_message_left_for_a_retry():
    queue = MemoryQueue(3)

    def poll(message: Any) -> int:
        if "box1@" in message.content:
            raise RuntimeError("storage unreachable")
        return 1

    listener = QueueListener(queue, QueueTriggerLimits(1, 0), poll, LookupError)
    listener.run(idle_seconds=0.2, start_timeout=5.0)
    assert listener.processed == 3 and len(queue.deleted) == 2
    assert listener.errors == ["RuntimeError: storage unreachable"]


# -- the delay proxy passes a reset on -----------------------------------------------------------
def test_the_delay_proxy_passes_a_reset_on_as_a_reset():
    async def reset_after_hello(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def scenario() -> tuple[bytes, BaseException | None]:
        server = await asyncio.start_server(reset_after_hello, "127.0.0.1", 0)
        proxy = DelayProxy(server.sockets[0].getsockname()[1], 0.02)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        got = await reader.readexactly(5)
        error: BaseException | None = None
        try:
            await asyncio.wait_for(reader.read(10), 2.0)
        except ConnectionResetError as e:
            error = e
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        assert proxy.server is not None
        for listener in (proxy.server, server):
            listener.close()
            await listener.wait_closed()
        return got, error

    got, error = asyncio.run(scenario())
    assert got == b"hello"
    assert isinstance(error, ConnectionResetError)


# -- the fault row, for real ----------------------------------------------------------------------
def test_the_fault_row_delivers_every_message_once_through_resets_and_a_throttle(
        stack, faults, new_mailbox, clean_environ, tmp_path: Path):
    address = new_mailbox()
    count = 120
    stack.seed_mailboxes({address: [make_message(address.split("@")[0], i, 2 * KB)
                                    for i in range(count)]})
    env = faults.settings_env(address, storage=False)
    env["FETCH_BATCH_SIZE"] = "20"
    schedule = {"resets": [[10, 8 * KB], [60, 4 * KB]], "throttle_after": 35, "backoff_ms": 1000}
    measured = run_fault_poll({"env": env, "faults_dir": str(faults.directory),
                               "address": address, "schedule": schedule, "timeout": 120})
    assert measured.ok, measured.error
    polls = measured.extra["polls"]
    assert measured.extra["resets_fired"] == 2 and measured.extra["throttles_fired"] == 1
    assert len(polls) >= 2 and polls[-1]["ended"] == "complete"
    assert any(p["ended"].startswith("throttled") for p in polls)
    assert sum(p["delivered"] for p in polls) == count
    container = ContainerClient.from_connection_string(env["MAIL_STORAGE"], env["BLOB_CONTAINER"])
    listed = [(b.name, int(b.size or 0), unquote((b.metadata or {}).get("message_id", "")))
              for b in container.list_blobs(include=["metadata"])]
    ids = [message_id_of(address.split("@")[0], i) for i in range(count)]
    sizes = sum(len(make_message(address.split("@")[0], i, 2 * KB)) for i in range(count))
    check = check_delivery(listed, ids, sizes)
    assert check.exact, check.describe()
