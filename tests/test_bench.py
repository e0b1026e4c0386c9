"""The benchmark harness's own pure parts: messages, the delay proxy, targets and report."""

from __future__ import annotations

import asyncio
import base64
import json
import time

from bench.delay_proxy import DelayProxy
from bench.fanout import decode_body
from bench.measure import Measured
from bench.messages import make_message, read_messages, write_messages
from bench.report import Results, Row, evaluate_targets, render, workload_name


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


def test_delay_proxy_adds_latency_each_way():
    async def scenario() -> float:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        proxy = DelayProxy(server.sockets[0].getsockname()[1], 0.05)
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        elapsed = time.perf_counter() - started
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.3)  # the EOF travels through the proxy and back
        assert proxy.server is not None
        for listener in (proxy.server, server):
            listener.close()
            await listener.wait_closed()
        return elapsed

    assert 0.1 <= asyncio.run(scenario()) < 1.0


def _row(profile: str, key: str, variant: str, messages: int, seconds: float, cpu: float,
         rss_mb: float = 1.0) -> Row:
    measured = Measured(True, messages, messages * 5120, seconds, cpu, 1000,
                        1000 + int(rss_mb * 1024))
    return Row(profile, key, workload_name(messages, 5120), variant, messages, messages * 5120,
               measured)


def test_targets_come_from_the_rows_of_one_run():
    results = Results(rows=[
        _row("LAN", "5k", "ceiling", 1000, 5.0, 3.0),
        _row("LAN", "5k", "naive", 1000, 10.0, 4.0),
        _row("LAN", "5k", "mailferry", 1000, 5.1, 2.0),
        _row("LAN", "5k", "getmail6", 1000, 30.0, 12.0),
        _row("WAN", "5k", "mailferry", 1000, 6.0, 2.0),
        _row("WAN", "5k", "getmail6", 1000, 50.0, 12.0),
        _row("LAN", "large", "mailferry", 1, 2.0, 0.5, rss_mb=80.0),
    ], empty_poll={"imap_commands_per_folder": 2, "imap_commands": 2, "folders": 1,
                   "blob_writes": 0, "token_requests": 0, "delivered": 0},
       imports={"azure.storage.blob": 0.5, "function_app": 0.9})
    verdicts = {t.name: t.met for t in evaluate_targets(results)}
    assert verdicts["LAN 5 KB vs ceiling"] is True        # 196 vs 200 msg/s
    assert verdicts["LAN 5 KB vs getmail6"] is True
    assert verdicts["WAN 5 KB vs own LAN"] is True         # 167 vs 196
    assert verdicts["WAN 5 KB vs getmail6"] is True
    assert verdicts["Large message RSS"] is False          # 80 MB
    assert verdicts["Client CPU per 5 KB message"] is True  # 2.0 vs 4.0 ms
    assert verdicts["Empty poll: IMAP commands"] is True
    assert verdicts["Fan-out speed-up"] is None
    assert verdicts["import function_app cold"] is False   # +0.4 s


def test_a_failed_row_is_reported_not_timed():
    row = _row("LAN", "5k", "naive", 1000, 10.0, 4.0)
    row.status = "failed: 999 blobs for 1000 messages"
    assert row.msgs_per_s is None and row.cpu_ms_per_msg is None
    text = render(Results(rows=[row]), [], "bench")
    assert "failed: 999 blobs" in text and "| — |" in text
