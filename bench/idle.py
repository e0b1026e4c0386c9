"""The cost of an idle deployment: an empty timer run over many mailboxes.

    python -m bench.idle SPEC.json

In one process, as on a warm instance: a first ``run_timer_poll`` (inline, the product's
defaults) delivers every message, then a second one finds nothing new and is measured:
wall time, client CPU, storage requests and connections (counted by the delay proxy in
front of Azurite), IMAP connections (proxy) and commands (the product's session counter),
blobs written and identity requests. Prints one ``BENCH-RESULT {json}`` line.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

from bench.delay_proxy import read_counts
from bench.measure import CountingServer, Measured, Meter, child_main
from devstack.stack import Stack

Spec = dict[str, Any]


class Snapshot:
    """Counters outside the poll's process, read before and after it."""

    def __init__(self, spec: Spec, container: str) -> None:
        stack = Stack.load(Path(spec["state_dir"]))
        self.proxy = read_counts(int(spec["proxy_control"]))
        self.identity = stack.stats()
        client = ContainerClient.from_connection_string(spec["lan_connection_string"], container)
        self.blobs = sum(1 for _ in client.list_blobs())

    def requests(self, port: int) -> int:
        return int(self.proxy.get(str(port), {}).get("requests", 0))

    def connections(self, port: int) -> int:
        return int(self.proxy.get(str(port), {}).get("connections", 0))


def run_idle(spec: Spec) -> Measured:
    env: dict[str, str] = spec["env"]
    os.environ.update({k: env[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER") if k in env})
    from shared.entry import run_timer_poll  # noqa: PLC0415 (after the identity variables)
    from shared.wiring import components_for, load_settings  # noqa: PLC0415

    settings = load_settings(env)
    poller = components_for(settings).poller  # the one run_timer_poll uses: count its sessions
    counting = CountingServer(poller.server)
    poller.server = counting
    started = time.perf_counter()
    first = run_timer_poll(past_due=False, env=env)
    first_seconds = time.perf_counter() - started
    before = Snapshot(spec, settings.blob_container)
    counting.sessions.clear()
    with Meter() as meter:
        report = run_timer_poll(past_due=False, env=env)
    after = Snapshot(spec, settings.blob_container)
    blob, table, imap = (int(spec["ports"][k]) for k in ("blob", "table", "imap"))
    skipped = sum(1 for m in report.mailboxes if getattr(m, "skipped", None))
    extra: dict[str, Any] = {
        "mailboxes": len(settings.mailboxes),
        "folders": sum(len(m.folders) for m in settings.mailboxes),
        "max_concurrent_mailboxes": settings.poll.max_concurrent_mailboxes,
        "deadline": settings.poll.deadline_seconds,
        "first_seconds": first_seconds,
        "first_delivered": first.delivered,
        "first_failed": len(first.failed),
        "delivered": report.delivered,
        "failed": len(report.failed),
        "skipped": skipped,
        "blob_requests": after.requests(blob) - before.requests(blob),
        "table_requests": after.requests(table) - before.requests(table),
        "storage_connections": (after.connections(blob) + after.connections(table)
                                - before.connections(blob) - before.connections(table)),
        "imap_connections": after.connections(imap) - before.connections(imap),
        "imap_commands": counting.commands(),
        "blob_writes": after.blobs - before.blobs,
        "token_requests": after.identity["token_requests"] - before.identity["token_requests"],
        "vault_requests": after.identity["vault_requests"] - before.identity["vault_requests"],
        "msi_requests": after.identity["msi_requests"] - before.identity["msi_requests"],
    }
    result = meter.result(first.delivered, sum(m.bytes_delivered for m in first.mailboxes),
                          **extra)
    problems = [f"{m.address}: {m.error}" for m in [*first.failed, *report.failed]]
    if problems:
        result.ok = False
        result.error = f"{len(problems)} mailbox polls failed; the first: {problems[0]}"[:500]
    return result


def main(argv: list[str] | None = None) -> int:
    return child_main(run_idle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
