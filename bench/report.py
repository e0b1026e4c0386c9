"""Rows, results and the Markdown report. Pure: no I/O besides what the caller passes in."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.fault_profile import LABELS as FAULT_LABELS
from bench.fault_profile import fault_section
from bench.measure import Measured
from bench.plan import workload_name

VARIANT_LABELS = {
    "limit": "(a) storage limit",
    "imap": "(a) IMAP fetch limit",
    "naive": "(b) naive loop",
    "mailferry": "(c) mailferry",
    "notices": "(c) mailferry + notices",
    "getmail6": "(d) getmail6",
    "inline": "(c) mailferry inline",
    **FAULT_LABELS,
}
FANOUT_PREFIX = "fanout-"
METHOD_LABELS = {
    "upload_blob": "SDK `upload_blob`",
    "put_blob": "Put Blob via the pipeline",
    "put_blob_pooled": "Put Blob via the pipeline on mailferry's transport",
    "put_blob_stream": "Put Blob via the pipeline, body streamed",
    "staged_blocks": "staged blocks + commit",
}

__all__ = ["Results", "Row", "fanout_variant", "median", "render", "workload_name"]


def fanout_variant(workers: int) -> str:
    """The variant key of a fan-out run with ``workers`` worker processes."""
    return f"{FANOUT_PREFIX}{workers}"


def variant_label(variant: str) -> str:
    if variant.startswith(FANOUT_PREFIX):
        workers = int(variant[len(FANOUT_PREFIX):])
        return f"(c) mailferry fan-out, {workers} worker{'s' if workers != 1 else ''}"
    return VARIANT_LABELS.get(variant, variant)


@dataclass
class Row:
    """One variant of one workload in one profile."""

    profile: str
    key: str
    workload: str
    variant: str
    messages: int
    nbytes: int
    measured: Measured | None = None
    status: str = "ok"
    note: str = ""
    seconds_override: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.measured is not None

    @property
    def seconds(self) -> float | None:
        if not self.ok:
            return None
        if self.seconds_override is not None:
            return self.seconds_override
        assert self.measured is not None
        return self.measured.seconds

    @property
    def msgs_per_s(self) -> float | None:
        seconds = self.seconds
        return self.messages / seconds if seconds else None

    @property
    def mb_per_s(self) -> float | None:
        seconds = self.seconds
        return self.nbytes / 1e6 / seconds if seconds else None

    @property
    def cpu_ms_per_msg(self) -> float | None:
        if not self.ok or not self.messages:
            return None
        assert self.measured is not None
        return self.measured.cpu_seconds * 1000.0 / self.messages

    @property
    def others_cpu(self) -> dict[str, float]:
        """CPU seconds each service sharing the cores (Azurite, Dovecot, the WAN proxy) spent
        during the timed run, when they were watched."""
        if self.measured is None:
            return {}
        watched = self.measured.extra.get("others_cpu") or {}
        return {str(name): float(seconds) for name, seconds in watched.items()}

    @property
    def storage_cpu_ms_per_msg(self) -> float | None:
        """CPU Azurite spent per message during the row: on Azure the storage service's work
        is not on the poller's cores; here it is."""
        seconds = self.others_cpu.get("Azurite")
        return seconds * 1000 / self.messages if seconds is not None and self.messages else None

    @property
    def busy_cores(self) -> float | None:
        """Cores kept busy on average during the timed run by the client and the watched
        services together: near the machine's core count, the row is bound by CPU."""
        seconds, others = self.seconds, self.others_cpu
        if not seconds or not others or self.measured is None:
            return None
        return (self.measured.cpu_seconds + sum(others.values())) / seconds

    @property
    def rss_growth_mb(self) -> float | None:
        if not self.ok:
            return None
        assert self.measured is not None
        if not self.measured.rss_peak_kb:
            return None
        return self.measured.rss_growth_mb


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    fanout: dict[str, Any] | None = None
    idle: dict[str, Any] | None = None
    enqueue: dict[str, Any] | None = None
    faults: dict[str, Any] | None = None
    imports: dict[str, float] | None = None
    machine: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def find(self, profile: str, workload_key: str, variant: str) -> Row | None:
        for row in self.rows:
            if row.profile == profile and row.key == workload_key and row.variant == variant:
                return row
        return None


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend("| " + " | ".join(r) + " |" for r in rows)
    return lines


def _table_order(rows: Sequence[Row]) -> list[Row]:
    """Rows by workload (in run order), then in the order of VARIANT_LABELS."""
    workloads = list(dict.fromkeys(r.key for r in rows))
    ranks = list(VARIANT_LABELS)

    def rank(row: Row) -> tuple[int, int, str]:
        known = ranks.index(row.variant) if row.variant in ranks else len(ranks)
        return workloads.index(row.key), known, row.variant

    return sorted(rows, key=rank)


def _rows_section(results: Results, profile: str) -> list[str]:
    body = []
    for r in _table_order([r for r in results.rows if r.profile == profile]):
        status = r.status if not r.note else f"{r.status}; {r.note}"
        body.append([variant_label(r.variant), r.workload, fmt(r.msgs_per_s), fmt(r.mb_per_s, 2),
                     fmt(r.rss_growth_mb), fmt(r.cpu_ms_per_msg, 2), fmt(r.seconds, 2), status])
    return [f"## {profile}", "",
            *_table(["variant", "workload", "msgs/s", "MB/s", "peak RSS growth MB",
                     "CPU ms/msg", "seconds", "status"], body), ""]


def cores() -> int:
    """The cores this run may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def service_cpu_note(row: Row) -> str:
    """What the services sharing the cores spent per message during the row, and how busy
    the cores were; empty when nothing was watched."""
    others, busy = row.others_cpu, row.busy_cores
    if not others or not row.messages or busy is None:
        return ""
    spent = ", ".join(f"{name} {seconds * 1000 / row.messages:.2f}"
                      for name, seconds in others.items())
    return f"CPU ms/msg of {spent}; {busy:.2f} of {cores()} cores busy"


def limit_note(extra: dict[str, Any], messages: int) -> str:
    """Which client and thread count the storage limit row is, and how it was chosen."""
    method = METHOD_LABELS.get(str(extra.get("method")), str(extra.get("method")))
    sample = int(extra.get("sample") or messages)
    how = ("fastest of the sweep" if sample >= messages else
           f"fastest of the sweep on {sample:,} messages, run again on all")
    return f"{method}, {extra.get('threads')} threads ({how})"


def _sweep_section(results: Results) -> list[str]:
    body = []
    for r in results.rows:
        if r.variant != "limit" or r.measured is None or not r.measured.extra.get("sweep"):
            continue
        extra = r.measured.extra
        for item in extra["sweep"]:
            seconds = float(item["seconds"]) or None
            chosen = item["method"] == extra.get("method") and item["threads"] == extra.get("threads")
            body.append([r.profile, r.workload, METHOD_LABELS.get(item["method"], item["method"]),
                         str(item["threads"]), f"{item['messages']:,}",
                         fmt(item["messages"] / seconds if seconds else None),
                         fmt(item["bytes"] / 1e6 / seconds if seconds else None, 2),
                         fmt(item["cpu_seconds"] * 1000 / max(1, item["messages"]), 2),
                         "**best**" if chosen else ""])
    if not body:
        return []
    return ["## Storage limit sweep", "",
            "Every client at every thread count, each into a fresh container; the best row "
            "of each workload is its storage limit above.", "",
            *_table(["profile", "workload", "client", "threads", "messages", "msgs/s", "MB/s",
                     "CPU ms/msg", ""], body), ""]


def _fanout_section(fan: dict[str, Any] | None) -> list[str]:
    startup: dict[str, dict[str, float]] = (fan or {}).get("startup") or {}
    if not startup:
        return []
    runs = sorted(startup, key=int)
    phases = list(dict.fromkeys(p for run in runs for p in startup[run]))
    rows = [[phase, *(fmt(startup[run].get(phase), 3) for run in runs)] for phase in phases]
    header = ["phase", *("1 worker alone" if run == "1" else f"{run} workers starting together"
                         for run in runs)]
    return ["## Fan-out worker start-up", "",
            "Seconds per worker process before it takes its first message (median over the "
            "workers of a run; not in the fan-out rows' seconds, which start from warm "
            "workers). Workers starting together share the machine's cores.", "",
            *_table(header, rows), ""]


def _idle_section(idle: dict[str, Any] | None) -> list[str]:
    if not idle:
        return []
    if idle.get("status") != "ok":
        return ["## Idle cost", "", f"Not measured: {idle.get('status')}", ""]
    boxes = int(idle["mailboxes"])

    def per(value: float) -> str:
        return f"{value:,} ({value / boxes:.2f} per mailbox)"

    rows = [
        ["first poll (delivers every message)",
         f"{idle['first_seconds']:.1f} s, {idle['first_delivered']:,} messages"],
        ["empty poll: wall time", f"{idle['seconds']:.1f} s of a {idle['deadline']:.0f} s time "
         f"box ({idle['skipped']} mailboxes skipped, {idle['failed']} failed)"],
        ["empty poll: client CPU", f"{idle['cpu_seconds']:.1f} s "
         f"({idle['cpu_seconds'] * 1000 / boxes:.1f} ms per mailbox)"],
        ["storage requests: blob", per(idle["blob_requests"])],
        ["storage requests: table", per(idle["table_requests"])],
        ["storage connections opened", per(idle["storage_connections"])],
        ["IMAP connections", per(idle["imap_connections"])],
        ["IMAP commands (`ImapSession.commands`)", per(idle["imap_commands"])],
        ["blobs written", str(idle["blob_writes"])],
        ["token / Key Vault / managed-identity requests",
         f"{idle['token_requests']} / {idle['vault_requests']} / {idle['msi_requests']}"],
    ]
    return ["## Idle cost", "",
            f"An empty timer run (inline, product defaults: MAX_CONCURRENT_MAILBOXES="
            f"{idle.get('max_concurrent_mailboxes')}) over {boxes:,} mailboxes on WAN, after a "
            "first run in the same process delivered their messages. Storage requests are "
            "counted at the delay proxy (HTTP requests to Azurite blob and table); IMAP "
            "commands by the product's per-session counter (EXAMINE, UID SEARCH, UID FETCH; "
            "each connection adds CAPABILITY, AUTHENTICATE and LOGOUT).", "",
            *_table(["", "measured"], rows), ""]


def _enqueue_section(enq: dict[str, Any] | None) -> list[str]:
    if not enq:
        return []
    if enq.get("status") != "ok":
        return ["## Enqueue rate", "", f"Not measured: {enq.get('status')}", ""]
    rows = []
    for run in enq["runs"]:
        default = " (default)" if run["senders"] == enq["default"] else ""
        cpu = run.get("cpu_seconds")
        rows.append([f"{run['senders']}{default}", fmt(run["msgs_per_s"]), f"{run['seconds']:.2f}",
                     f"{run['queued']:,}", str(run["discarded_connections"]),
                     fmt(None if cpu is None else cpu * 1000 / enq["mailboxes"], 2)])
    return ["## Enqueue rate", "",
            f"`shared.fanout.enqueue_polls` sending {enq['mailboxes']:,} poll messages to Azurite "
            "(LAN) through the composition root's queue client (`Components.poll_queue`), a fresh queue per "
            "row. Discarded connections: the client's pool (sized for the default) was full. CPU: "
            "the sending process's, per message (steadier than msgs/s on a busy machine).", "",
            *_table(["senders", "msgs/s", "seconds", "messages in the queue",
                     "discarded connections", "client CPU ms/msg"], rows), ""]


def render(results: Results, targets: Sequence[Any], title: str) -> str:
    out: list[str] = [f"# {title}", ""]
    for profile in dict.fromkeys(r.profile for r in results.rows):
        out.extend(_rows_section(results, profile))
    out.extend(["## Targets", "",
                *_table(["target", "goal", "measured", "ratio", "result"],
                        [[t.name, t.target, t.measured, fmt(t.ratio, 2), t.verdict]
                         for t in targets]), ""])
    out.extend(_sweep_section(results))
    out.extend(_fanout_section(results.fanout))
    out.extend(_idle_section(results.idle))
    out.extend(_enqueue_section(results.enqueue))
    out.extend(fault_section(results.faults))
    if results.imports:
        i = results.imports
        out.append("Cold imports (fresh interpreter, median of 5, wall time of `python -c`): "
                   + ", ".join(f"`{k}` {v:.3f} s" for k, v in i.items()) + ".")
        out.append("")
    if results.notes:
        out.extend(["## Notes", "", *(f"- {n}" for n in results.notes), ""])
    out.extend(["## Machine", "", *_table(["", ""], [[k, v] for k, v in results.machine.items()]),
                ""])
    return "\n".join(out)
