"""The throughput rows: each variant, and the limits, on one seeded mailbox."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.harness import LOOPBACK, Endpoints, Harness, Seeded, log, num
from bench.plan import Workload
from bench.report import Row, limit_note, service_cpu_note

# Run order: mailferry right after the storage limit it is judged against, and with notices
# right after mailferry, so that a change in the shared machine's load between them is least likely.
# The same product run over POP3 (Dovecot's POP3S, same maildir): only for the large message
# on LAN, where what it shows is the memory a streamed RETR needs.
POP3_VARIANT = "mailferry-pop3"
VARIANTS = ("limit", "mailferry", "notices", "imap", "naive", "getmail6", POP3_VARIANT)
# Workloads the notices row runs on (its target: the cost of notices on 5 KB messages).
NOTICE_WORKLOADS = ("5k",)


def _logged(row: Row) -> Row:
    log(f"{row.profile} {row.workload} {row.variant}: {row.status}; "
        f"{num(row.msgs_per_s)} msg/s, {num(row.mb_per_s)} MB/s, "
        f"{num(row.cpu_ms_per_msg)} CPU ms/msg, {num(row.rss_growth_mb)} MB RSS growth")
    return row


def _check_blobs(bench: Harness, row: Row, container: str, seeded: Seeded) -> None:
    blobs, nbytes, _ = bench.blob_counts(container)
    if blobs != seeded.count or nbytes != seeded.nbytes:
        row.status = (f"failed: {blobs} blobs ({nbytes:,} B) for {seeded.count} "
                      f"messages ({seeded.nbytes:,} B)")


def run_limit(bench: Harness, workload: Workload, seeded: Seeded, ends: Endpoints) -> Row:
    """The storage limit: the fastest client and thread count for these bytes."""
    row = Row(ends.profile, workload.key, workload.name(seeded.count), "limit", seeded.count,
              seeded.nbytes)
    measured = bench.run_spec("bench.limits", {
        "kind": "storage", "connection_string": ends.connection_string,
        "messages_file": str(seeded.messages_file), "threads": list(bench.args.limit_threads),
        "watch": bench.watched(ends)})
    row.measured = measured
    if not measured.ok:
        row.status = f"failed: {measured.error}"
    else:
        _check_blobs(bench, row, str(measured.extra["container"]), seeded)
        row.note = _joined(limit_note(measured.extra, seeded.count), service_cpu_note(row))
    bench.results.rows.append(row)
    return _logged(row)


def run_imap_limit(bench: Harness, workload: Workload, seeded: Seeded, ends: Endpoints) -> Row:
    """The IMAP side alone: batched UID FETCH of every message, nothing stored."""
    row = Row(ends.profile, workload.key, workload.name(seeded.count), "imap", seeded.count,
              seeded.nbytes)
    measured = bench.run_spec("bench.limits", {
        "kind": "imap", "imap_host": LOOPBACK, "imap_port": ends.imap_port,
        "ca_file": str(bench.stack.ca_pem), "address": seeded.addresses[0],
        "token": bench.stack.issue_token(), "watch": bench.watched(ends)})
    row.measured = measured
    if not measured.ok:
        row.status = f"failed: {measured.error}"
    elif measured.count != seeded.count or measured.bytes != seeded.nbytes:
        row.status = (f"failed: fetched {measured.count} messages ({measured.bytes:,} B) of "
                      f"{seeded.count} ({seeded.nbytes:,} B)")
    else:
        row.note = _joined(f"imaplib, one connection, batches of {measured.extra.get('batch')}",
                           service_cpu_note(row))
    bench.results.rows.append(row)
    return _logged(row)


def run_variant(bench: Harness, variant: str, workload: Workload, seeded: Seeded,
                ends: Endpoints, *, warm: bool = False) -> Row:
    """One of naive, mailferry, getmail6 on a seeded mailbox (or mailboxes, for mailferry)."""
    row = Row(ends.profile, workload.key, workload.name(seeded.count), variant, seeded.count,
              seeded.nbytes)
    container = f"bench-{variant}-{uuid.uuid4().hex[:12]}"
    spec: dict[str, Any] = {
        "variant": variant, "connection_string": ends.connection_string,
        "container": container, "imap_host": LOOPBACK, "imap_port": ends.imap_port,
        "ca_file": str(bench.stack.ca_pem), "address": seeded.addresses[0],
        "messages_file": str(seeded.messages_file), "state_dir": str(bench.stack.state_dir),
        "timeout": bench.timeout, "warm": warm, "watch": bench.watched(ends),
    }
    if variant in ("naive", "getmail6"):
        spec["token"] = bench.stack.issue_token()
    if variant in ("mailferry", "notices", POP3_VARIANT):
        env = bench.mailferry_env(seeded.addresses, ends)
        if variant == "notices":
            env["NOTIFY_QUEUE"] = f"notices-{uuid.uuid4().hex[:12]}"
        if variant == POP3_VARIANT:
            env |= {"MAIL_PROTOCOL": "pop3", "POP3_HOST": LOOPBACK,
                    "POP3_PORT": str(bench.stack.pop3s_port)}
            spec["variant"] = "mailferry"
        if bench.args.upload_concurrency is not None:
            env["UPLOAD_CONCURRENCY"] = str(bench.args.upload_concurrency)
        spec["env"] = env
        container = env["BLOB_CONTAINER"]
    if variant == "getmail6":
        getmail = shutil.which("getmail", path=str(Path(sys.executable).parent))
        if getmail is None:
            row.status = "not available: getmail6 is not installed (pip install getmail6)"
            bench.results.rows.append(row)
            return row
        spec["getmail"] = getmail
        spec["work_dir"] = str(bench.work / f"getmail-{uuid.uuid4().hex[:8]}")
    measured = bench.run_spec("bench.variant", spec)
    row.measured = measured
    if not measured.ok:
        row.status = f"failed: {measured.error}"
    elif variant == "getmail6":
        if measured.count != seeded.count:
            row.status = f"failed: {measured.count} Maildir files for {seeded.count} messages"
    else:
        _check_blobs(bench, row, container, seeded)
    if variant in ("mailferry", "notices", POP3_VARIANT) and measured.ok:
        settings = measured.extra.get("settings", {})
        row.note = ", ".join(f"{k}={v}" for k, v in settings.items())
    if measured.ok:
        row.note = _joined(row.note, service_cpu_note(row))
    bench.results.rows.append(row)
    return _logged(row)


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def run_throughput(bench: Harness, workload: Workload, seeded: Seeded, ends: Endpoints,
                   variants: list[str]) -> None:
    """Every chosen variant of one workload in one profile, limits first."""
    for variant in variants:
        if variant == "limit":
            run_limit(bench, workload, seeded, ends)
        elif variant == "imap":
            run_imap_limit(bench, workload, seeded, ends)
        elif variant == "notices" and workload.key not in NOTICE_WORKLOADS:
            continue
        elif variant == POP3_VARIANT:
            if workload.key == "large" and ends.profile == "LAN":
                run_variant(bench, variant, workload, seeded, ends)
        else:
            run_variant(bench, variant, workload, seeded, ends)
