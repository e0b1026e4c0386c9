"""The benchmark harness's own pure parts: messages, the delay proxy and its counters, the
plan, targets and report."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.delay_proxy import DelayProxy, RequestCounter
from bench.fanout import decode_body
from bench.measure import Measured, Meter, tree_cpu_seconds
from bench.messages import make_message, read_messages, write_messages
from bench.plan import (
    SAMPLE_MESSAGES,
    LimitConfig,
    best_config,
    enqueue_senders,
    limit_configs,
    plan_workloads,
    sample_count,
    workload_name,
)
from bench.report import Results, Row, cores, fanout_variant, limit_note, render, service_cpu_note
from bench.targets import evaluate_targets

KB = 1024
MB = 1024 * 1024


def test_messages_have_the_requested_size_and_unique_ids():
    for size in (5 * 1024, 200 * 1024, 1024 * 1024 + 3):
        raw = make_message("w", 7, size)
        assert len(raw) == size
        assert raw.endswith(b"\r\n")
    assert b"Message-ID: <w.1@" in make_message("w", 1, 5000)
    assert make_message("w", 1, 5000) != make_message("w", 2, 5000)


def test_message_file_round_trip(tmp_path):
    messages = [make_message("w", i, 300 + i) for i in range(5)] + [b""]
    count, total = write_messages(tmp_path / "m.bin", messages)
    assert (count, total) == (6, sum(len(m) for m in messages))
    assert list(read_messages(tmp_path / "m.bin")) == messages


def test_queue_bodies_are_decoded_like_the_functions_host():
    body = json.dumps({"mailbox": "ops@contoso.com"})
    assert decode_body(body) == body
    assert decode_body(base64.b64encode(body.encode()).decode()) == body
    assert decode_body("ops@contoso.com") == "ops@contoso.com"


# -- the delay proxy ------------------------------------------------------------------------
PIPELINED = (
    b"PUT /c/a.eml HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nGET / HTTP/"  # body looks like a request
    b"GET /c?restype=container HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\nab\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n"                # a chunk holding CRLF
    b"HEAD /c/b.eml HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
)


def test_request_counter_counts_pipelined_requests_in_any_pieces():
    for piece in (1, 2, 7, 64, len(PIPELINED)):
        counter = RequestCounter()
        for start in range(0, len(PIPELINED), piece):
            counter.feed(PIPELINED[start:start + piece])
        assert counter.requests == 4, piece


def test_request_counter_skips_a_large_body_without_counting_inside_it():
    body = b"GET / HTTP/1.1\r\n\r\n" * 100_000    # 1.8 MB of what looks like requests
    head = f"PUT /c/big.eml HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    stream = head + body + b"DELETE /c/big.eml HTTP/1.1\r\n\r\n"
    counter = RequestCounter()
    for start in range(0, len(stream), 256 * 1024):
        counter.feed(stream[start:start + 256 * 1024])
    assert counter.requests == 2


def test_request_counter_waits_for_a_whole_head():
    counter = RequestCounter()
    counter.feed(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert counter.requests == 0
    counter.feed(b"\r\n")
    assert counter.requests == 1


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_delay_proxy_adds_latency_each_way_and_counts():
    async def scenario() -> tuple[float, dict[str, int]]:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        proxy = DelayProxy(server.sockets[0].getsockname()[1], 0.05, http=True)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request)
        assert await reader.readexactly(len(request)) == request
        elapsed = time.perf_counter() - started
        writer.write(request)
        await reader.readexactly(len(request))
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.3)  # the EOF travels through the proxy and back
        counts = proxy.snapshot()
        assert proxy.server is not None
        for listener in (proxy.server, server):
            listener.close()
            await listener.wait_closed()
        return elapsed, counts

    elapsed, counts = asyncio.run(scenario())
    assert 0.1 <= elapsed < 1.0
    assert counts == {"connections": 1, "requests": 2}


# -- the plan -------------------------------------------------------------------------------
def test_the_full_plan_has_the_issue_workloads():
    plan = plan_workloads(quick=False, scale=1.0)
    assert (plan["fanout"].mailboxes, plan["fanout"].per_mailbox, plan["fanout"].size) == (200, 5, 5 * KB)
    assert (plan["idle"].mailboxes, plan["idle"].per_mailbox) == (1000, 2)
    assert plan["enqueue"].mailboxes == 10_000
    assert (plan["large"].size, plan["large"].count) == (100 * MB, 1)
    quick = plan_workloads(quick=True, scale=1.0)
    assert all(quick[k].count < plan[k].count for k in ("5k", "200k", "fanout", "idle", "enqueue"))
    assert plan_workloads(quick=False, scale=0.5)["fanout"].mailboxes == 100


def test_limit_sweep_tries_every_client_that_makes_a_difference():
    many = limit_configs(5000, 5 * KB, [4, 8, 16, 32])
    assert {c.method for c in many} == {"upload_blob", "put_blob", "put_blob_pooled"}
    assert sorted(c.threads for c in many if c.method == "put_blob") == [4, 8, 16, 32]
    assert sorted(c.threads for c in many if c.method == "put_blob_pooled") == [4, 8, 16, 32]
    large = limit_configs(1, 100 * MB, [4, 32])
    assert [(c.method, c.threads) for c in large] == [
        ("upload_blob", 4), ("upload_blob", 32), ("put_blob", 1), ("put_blob_pooled", 1),
        ("put_blob_stream", 1),
        ("staged_blocks", 4), ("staged_blocks", 32)]
    # Below the SDK's single-put size, upload_blob sends one request whatever its threads.
    assert [c for c in limit_configs(1, 20 * MB, [4, 32]) if c.method == "upload_blob"] == [
        LimitConfig("upload_blob", 1)]


def test_limit_sweep_samples_large_workloads_and_keeps_the_fastest():
    assert sample_count(5000, 5 * KB) == SAMPLE_MESSAGES
    assert sample_count(500, 200 * KB) == 327          # 64 MiB of 200 KiB messages
    assert sample_count(1, 100 * MB) == 1
    assert sample_count(50, 200 * KB) == 50
    fast, tie = LimitConfig("put_blob", 32), LimitConfig("put_blob", 8)
    assert best_config({LimitConfig("upload_blob", 4): 2.0, fast: 1.0}) == fast
    assert best_config({fast: 1.0, tie: 1.0}) == tie


def test_enqueue_senders_always_include_the_default():
    assert enqueue_senders(16) == [1, 8, 16, 32]
    assert enqueue_senders(24, [1, 8]) == [1, 8, 24]


# -- targets and report ---------------------------------------------------------------------
def _row(profile: str, key: str, variant: str, messages: int, seconds: float, cpu: float,
         rss_mb: float = 1.0, size: int = 5120, extra: dict[str, Any] | None = None) -> Row:
    measured = Measured(True, messages, messages * size, seconds, cpu, 1000,
                        1000 + int(rss_mb * 1024), extra=extra or {})
    return Row(profile, key, workload_name(messages, size), variant, messages, messages * size,
               measured)


def _limit(profile: str, key: str, messages: int, seconds: float, size: int = 5120) -> Row:
    sweep = [{"method": "put_blob", "threads": 16, "messages": messages,
              "bytes": messages * size, "seconds": seconds, "cpu_seconds": 1.0},
             {"method": "upload_blob", "threads": 16, "messages": messages,
              "bytes": messages * size, "seconds": seconds * 2, "cpu_seconds": 2.0}]
    return _row(profile, key, "limit", messages, seconds, 1.0, size=size, extra={
        "method": "put_blob", "threads": 16, "sample": messages, "sweep": sweep,
        "container": "c"})


def _results() -> Results:
    rows = [
        _limit("LAN", "5k", 1000, 4.0),
        _row("LAN", "5k", "imap", 1000, 0.1, 0.05),
        _row("LAN", "5k", "naive", 1000, 10.0, 4.0),
        _row("LAN", "5k", "mailferry", 1000, 4.3, 2.0),               # 0.93 x the limit
        _row("LAN", "5k", "notices", 1000, 4.6, 2.5),                 # 0.93 x mailferry
        _row("LAN", "5k", "getmail6", 1000, 30.0, 12.0),
        _limit("LAN", "200k", 100, 1.0, size=200 * KB),
        _row("LAN", "200k", "naive", 100, 2.0, 1.0, size=200 * KB),
        _row("LAN", "200k", "mailferry", 100, 2.0, 0.5, size=200 * KB),  # 0.5 x
        _limit("LAN", "large", 1, 1.0, size=100 * MB),
        _row("LAN", "large", "mailferry", 1, 1.05, 0.5, rss_mb=80.0, size=100 * MB),
        _limit("WAN", "5k", 1000, 4.0),
        _row("WAN", "5k", "mailferry", 1000, 5.0, 2.0),
        _row("WAN", "5k", "getmail6", 1000, 50.0, 12.0),
        _row("WAN", "fanout", "inline", 1000, 30.0, 5.0),
        _row("WAN", "fanout", fanout_variant(1), 1000, 80.0, 5.0),
        _row("WAN", "fanout", fanout_variant(4), 1000, 25.0, 5.0),
    ]
    fanout = {"workers": 4, "expected": 1000, "mailboxes": 200, "status": "ok",
              "blobs": {"fanout-1": 1000, "fanout-4": 1000},
              "polls": {"fanout-1": 200, "fanout-4": 201},
              "complete": {"fanout-1": True, "fanout-4": False},
              "startup": {"1": {"imports": 0.5, "first token": 0.3},
                          "4": {"imports": 1.5, "first token": 0.4}}}
    idle = {"status": "ok", "mailboxes": 1000, "folders": 1000, "seconds": 120.0,
            "cpu_seconds": 15.0, "deadline": 480.0, "skipped": 0, "failed": 0,
            "first_seconds": 200.0, "first_delivered": 2000, "blob_requests": 0,
            "table_requests": 3000, "storage_connections": 0, "imap_connections": 1000,
            "imap_commands": 2000, "blob_writes": 0, "token_requests": 0, "vault_requests": 0,
            "msi_requests": 0, "max_concurrent_mailboxes": 4}
    enqueue = {"status": "ok", "mailboxes": 10_000, "default": 16, "runs": [
        {"senders": 1, "msgs_per_s": 200.0, "seconds": 50.0, "queued": 10_000,
         "discarded_connections": 0},
        {"senders": 16, "msgs_per_s": 520.0, "seconds": 19.2, "queued": 10_000,
         "discarded_connections": 0, "cpu_seconds": 12.5}]}
    return Results(rows=rows, fanout=fanout, idle=idle, enqueue=enqueue,
                   imports={"azure.storage.blob": 0.5, "function_app": 0.9})


def test_targets_come_from_the_rows_of_one_run():
    targets = {t.name: t for t in evaluate_targets(_results())}
    verdicts = {name: t.met for name, t in targets.items()}
    assert verdicts["LAN 5 KB vs storage limit"] is True           # 232.6 vs 250 msgs/s
    assert verdicts["LAN 200 KB vs storage limit"] is False        # 50 vs 100 msgs/s
    assert verdicts["LAN large message vs storage limit"] is True  # 0.95 x
    assert "MB/s" in targets["LAN large message vs storage limit"].measured
    assert "Put Blob via the pipeline, 16 threads" in targets["LAN 5 KB vs storage limit"].measured
    assert "IMAP alone 10,000.0" in targets["LAN 5 KB vs storage limit"].measured
    assert verdicts["WAN 5 KB vs storage limit"] is False          # 200 vs 250 msgs/s
    assert verdicts["WAN 200 KB vs storage limit"] is None         # not measured
    assert verdicts["LAN 5 KB vs getmail6"] is True
    assert verdicts["WAN 5 KB vs own LAN"] is True                 # 200 vs 232.6
    assert verdicts["Large message RSS"] is False                  # 80 MB
    assert verdicts["Client CPU per 5 KB message"] is True         # 2.0 vs 4.0 ms
    assert verdicts["Client CPU per 200 KB message"] is True       # 5.0 vs 10.0 ms
    assert verdicts["LAN 5 KB: notices cost ≤ 10 %"] is True       # 217.4 vs 232.6 msgs/s
    assert "client CPU 2.50 vs 2.00 ms/msg" in targets["LAN 5 KB: notices cost ≤ 10 %"].measured
    assert verdicts["Fan-out vs 1 worker"] is True                 # 80 s vs 25 s
    assert targets["Fan-out vs 1 worker"].ratio == 3.2
    assert verdicts["Fan-out vs inline"] is False                  # 1.2 x
    assert verdicts["Fan-out: exactly once"] is False              # one mailbox polled twice
    assert verdicts["Idle: empty run in the time box"] is True
    assert verdicts["Idle: IMAP commands"] is True
    assert verdicts["Idle: blob writes"] is True
    assert verdicts["Idle: token requests"] is True
    assert verdicts["Enqueue rate"] is True                        # 520/s at 16 senders
    assert verdicts["import function_app cold"] is False           # +0.4 s
    assert "(+0.400 s)" in targets["import function_app cold"].measured


def test_notices_costing_more_than_a_tenth_miss_their_target_and_unmeasured_ones_are_na():
    results = _results()
    row = results.find("LAN", "5k", "notices")
    assert row is not None and row.measured is not None
    row.measured.seconds = 4.3 / 0.89
    assert {t.name: t.met for t in evaluate_targets(results)}["LAN 5 KB: notices cost ≤ 10 %"] is False
    results.rows.remove(row)
    assert {t.name: t.met for t in evaluate_targets(results)}["LAN 5 KB: notices cost ≤ 10 %"] is None


def test_the_notices_row_sits_under_mailferry_in_the_report():
    results = _results()
    text = render(results, evaluate_targets(results), "bench")
    assert text.index("| (c) mailferry | 1,000 x 5 KB |") < text.index("| (c) mailferry + notices | 1,000 x 5 KB |")


def test_an_idle_run_past_its_time_box_or_a_slow_enqueue_misses_its_target():
    results = _results()
    assert results.idle is not None and results.enqueue is not None
    results.idle.update(seconds=300.0, skipped=12)
    results.enqueue["runs"][1]["msgs_per_s"] = 499.0
    verdicts = {t.name: t.met for t in evaluate_targets(results)}
    assert verdicts["Idle: empty run in the time box"] is False
    assert verdicts["Enqueue rate"] is False
    results.idle = {"status": "failed: timed out"}
    results.enqueue = None
    targets = {t.name: t for t in evaluate_targets(results)}
    assert targets["Idle: empty run in the time box"].met is None
    assert targets["Idle: empty run in the time box"].measured == "failed: timed out"
    assert targets["Enqueue rate"].met is None


def test_the_report_shows_the_limit_sweep_and_the_many_mailbox_sections():
    results = _results()
    text = render(results, evaluate_targets(results), "bench")
    assert "| (a) storage limit | 1,000 x 5 KB | 250.0 |" in text
    assert "| (a) IMAP fetch limit |" in text
    assert "| (c) mailferry fan-out, 4 workers |" in text
    assert "| (c) mailferry fan-out, 1 worker |" in text
    assert "## Storage limit sweep" in text
    assert "| LAN | 1,000 x 5 KB | Put Blob via the pipeline | 16 | 1,000 | 250.0 | 1.28 | 1.00 | **best** |" in text
    assert "| LAN | 1,000 x 5 KB | SDK `upload_blob` | 16 | 1,000 | 125.0 |" in text
    assert "| phase | 1 worker alone | 4 workers starting together |" in text
    assert "| imports | 0.500 | 1.500 |" in text
    assert "| storage requests: table | 3,000 (3.00 per mailbox) |" in text
    assert "| 16 (default) | 520.0 | 19.20 | 10,000 | 0 | 1.25 |" in text
    assert "| 1 | 200.0 | 50.00 | 10,000 | 0 | — |" in text


def test_rows_are_shown_by_workload_then_variant_whatever_the_run_order():
    rows = [_row("LAN", "5k", "mailferry", 10, 1.0, 1.0), _row("LAN", "5k", "limit", 10, 1.0, 1.0),
            _row("LAN", "200k", "naive", 10, 1.0, 1.0), _row("LAN", "5k", "imap", 10, 1.0, 1.0)]
    text = render(Results(rows=rows), [], "bench")
    order = [text.index(label) for label in ("(a) storage limit", "(a) IMAP fetch limit",
                                             "(c) mailferry", "(b) naive loop")]
    assert order == sorted(order)


def test_the_limit_row_says_how_it_was_chosen():
    extra = {"method": "put_blob", "threads": 32, "sample": 1000}
    assert limit_note(extra, 5000) == ("Put Blob via the pipeline, 32 threads (fastest of the "
                                       "sweep on 1,000 messages, run again on all)")
    assert limit_note(dict(extra, sample=500), 500).endswith("(fastest of the sweep)")


def test_a_row_shows_what_the_services_beside_it_spent_and_how_busy_the_cores_were():
    row = _row("LAN", "5k", "mailferry", 100, 2.0, 1.0,
               extra={"others_cpu": {"Azurite": 1.5, "Dovecot": 0.5}})
    assert row.busy_cores == 1.5  # (1.0 + 1.5 + 0.5) CPU seconds in 2.0 s
    assert row.storage_cpu_ms_per_msg == 15.0
    assert service_cpu_note(row) == (f"CPU ms/msg of Azurite 15.00, Dovecot 5.00; "
                                     f"1.50 of {cores()} cores busy")
    unwatched = _row("LAN", "5k", "naive", 100, 2.0, 1.0)
    assert unwatched.busy_cores is None and service_cpu_note(unwatched) == ""
    assert unwatched.storage_cpu_ms_per_msg is None
    limit = _limit("LAN", "5k", 100, 1.0)
    limit.measured.extra["others_cpu"] = {"Azurite": 0.8}  # type: ignore[union-attr]
    text = {t.name: t.measured for t in evaluate_targets(Results(rows=[limit, row]))}
    assert text["LAN 5 KB vs storage limit"].endswith("; cores busy 1.50 vs 1.80")


def test_a_process_trees_cpu_counts_children_running_and_ended():
    burn = ("import time\nend = time.process_time() + 0.3\n"
            "while time.process_time() < end: pass\n")
    before = tree_cpu_seconds(os.getpid())
    assert before is not None
    subprocess.run([sys.executable, "-c", burn], check=True)  # ended and reaped: our cutime
    ended = tree_cpu_seconds(os.getpid())
    assert ended is not None and ended - before >= 0.25
    child = subprocess.Popen([sys.executable, "-c", burn + "time.sleep(30)\n"])
    try:
        with Meter({"child": child.pid}) as meter:
            deadline = time.monotonic() + 20
            while (tree_cpu_seconds(child.pid) or 0) < 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert meter.others["child"] >= 0.25  # still running: counted from its own stat
        assert meter.result(1, 1).extra["others_cpu"] == meter.others
    finally:
        child.kill()
        child.wait()
    assert tree_cpu_seconds(child.pid) is None


def test_a_failed_row_is_reported_not_timed():
    row = _row("LAN", "5k", "naive", 1000, 10.0, 4.0)
    row.status = "failed: 999 blobs for 1000 messages"
    assert row.msgs_per_s is None and row.cpu_ms_per_msg is None
    text = render(Results(rows=[row]), [], "bench")
    assert "failed: 999 blobs" in text and "| — |" in text
