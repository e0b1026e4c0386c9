"""Rows, targets and the Markdown report. Pure: no I/O besides what the caller passes in."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.measure import Measured

VARIANT_LABELS = {
    "ceiling": "(a) storage ceiling",
    "naive": "(b) naive loop",
    "mailferry": "(c) mailferry",
    "getmail6": "(d) getmail6",
    "inline": "(c) mailferry inline",
    "fanout": "(c) mailferry fan-out",
}


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
    def rss_growth_mb(self) -> float | None:
        if not self.ok:
            return None
        assert self.measured is not None
        if not self.measured.rss_peak_kb:
            return None
        return self.measured.rss_growth_mb


@dataclass
class Target:
    name: str
    target: str
    measured: str
    ratio: float | None
    met: bool | None

    @property
    def verdict(self) -> str:
        return "n/a" if self.met is None else ("met" if self.met else "NOT met")


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    empty_poll: dict[str, Any] | None = None
    fanout: dict[str, Any] | None = None
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


def workload_name(count: int, size: int, mailboxes: int = 1) -> str:
    """``5,000 x 5 KB``, ``1 x 100 MB``, ``50 mailboxes x 100 x 5 KB``."""
    each = f"{size / (1024 * 1024):g} MB" if size >= 1024 * 1024 else f"{size / 1024:g} KB"
    if mailboxes > 1:
        return f"{mailboxes} mailboxes x {count // mailboxes:,} x {each}"
    return f"{count:,} x {each}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _at_least(name: str, target: str, a: Row | None, b: Row | None, factor: float,
              what: str = "msgs/s") -> Target:
    av = a.msgs_per_s if a else None
    bv = b.msgs_per_s if b else None
    ratio = _ratio(av, bv)
    measured = f"{fmt(av)} vs {fmt(bv)} {what}"
    return Target(name, target, measured, ratio, None if ratio is None else ratio >= factor)


def evaluate_targets(results: Results) -> list[Target]:
    """The issue's targets, each from figures of this one run."""
    find = results.find
    lan_5k = wan_5k = "5k"
    big = "large"
    targets: list[Target] = []
    mf_lan = find("LAN", lan_5k, "mailferry")
    targets.append(_at_least("LAN 5 KB vs ceiling", "mailferry ≥ 0.95 x storage ceiling",
                             mf_lan, find("LAN", lan_5k, "ceiling"), 0.95))
    targets.append(_at_least("LAN 5 KB vs getmail6", "mailferry ≥ 4 x getmail6",
                             mf_lan, find("LAN", lan_5k, "getmail6"), 4.0))
    mf_wan = find("WAN", wan_5k, "mailferry")
    targets.append(_at_least("WAN 5 KB vs own LAN", "mailferry WAN ≥ 0.8 x mailferry LAN",
                             mf_wan, mf_lan, 0.8))
    targets.append(_at_least("WAN 5 KB vs getmail6", "mailferry ≥ 8 x getmail6",
                             mf_wan, find("WAN", wan_5k, "getmail6"), 8.0))
    big_row = find("LAN", big, "mailferry")
    growth = big_row.rss_growth_mb if big_row else None
    label = big_row.workload if big_row else "large message"
    targets.append(Target("Large message RSS", f"{label}: mailferry peak RSS growth < 64 MB",
                          f"{fmt(growth)} MB", _ratio(growth, 64.0),
                          None if growth is None else growth < 64.0))
    naive = find("LAN", lan_5k, "naive")
    mf_cpu = mf_lan.cpu_ms_per_msg if mf_lan else None
    naive_cpu = naive.cpu_ms_per_msg if naive else None
    cpu_ratio = _ratio(mf_cpu, naive_cpu)
    targets.append(Target("Client CPU per 5 KB message", "mailferry ≤ 0.6 x naive loop",
                          f"{fmt(mf_cpu, 2)} vs {fmt(naive_cpu, 2)} ms/msg", cpu_ratio,
                          None if cpu_ratio is None else cpu_ratio <= 0.6))
    targets.extend(_empty_poll_targets(results.empty_poll))
    targets.extend(_fanout_targets(results.fanout))
    targets.append(_import_target(results.imports))
    return targets


def _empty_poll_targets(empty: dict[str, Any] | None) -> list[Target]:
    if not empty:
        return [Target("Empty poll", "≤ 5 IMAP commands per folder, 0 blob writes, 0 token requests",
                       "not measured", None, None)]
    per_folder = float(empty["imap_commands_per_folder"])
    return [
        Target("Empty poll: IMAP commands", "≤ 5 per folder", f"{per_folder:g} per folder",
               per_folder / 5.0, per_folder <= 5),
        Target("Empty poll: blob writes", "0", str(empty["blob_writes"]), None,
               empty["blob_writes"] == 0),
        Target("Empty poll: token requests", "0 while the cached token is valid",
               str(empty["token_requests"]), None, empty["token_requests"] == 0),
    ]


def _fanout_targets(fan: dict[str, Any] | None) -> list[Target]:
    if not fan or fan.get("status") != "ok":
        reason = (fan or {}).get("status", "not measured")
        return [Target("Fan-out speed-up", "fan-out ≥ 3 x inline wall-clock speed", reason,
                       None, None),
                Target("Fan-out duplicates", "0 duplicate deliveries", reason, None, None)]
    speedup = float(fan["inline_seconds"]) / float(fan["fanout_seconds"])
    dup_ok = bool(fan["counts_ok"])
    return [
        Target("Fan-out speed-up", f"{fan['workers']} workers ≥ 3 x inline wall-clock speed",
               f"inline {fan['inline_seconds']:.1f} s, fan-out {fan['fanout_seconds']:.1f} s",
               speedup, speedup >= 3.0),
        Target("Fan-out duplicates", "0 duplicate deliveries (blob count = messages, "
               "each mailbox complete)",
               f"{fan['blobs']} blobs for {fan['expected']}; per-mailbox counts "
               f"{'all' if dup_ok else 'NOT all'} {fan['per_mailbox']}", None, dup_ok),
    ]


def _import_target(imports: dict[str, float] | None) -> Target:
    if not imports:
        return Target("import function_app cold", "≤ 0.3 s above azure.storage.blob",
                      "not measured", None, None)
    extra = imports["function_app"] - imports["azure.storage.blob"]
    return Target("import function_app cold", "≤ 0.3 s above importing azure.storage.blob",
                  f"{imports['function_app']:.3f} s vs {imports['azure.storage.blob']:.3f} s "
                  f"(+{extra:.3f} s)", extra / 0.3, extra <= 0.3)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend("| " + " | ".join(r) + " |" for r in rows)
    return lines


def render(results: Results, targets: Sequence[Target], title: str) -> str:
    out: list[str] = [f"# {title}", ""]
    profiles = list(dict.fromkeys(r.profile for r in results.rows))
    for profile in profiles:
        out.append(f"## {profile}")
        out.append("")
        body = []
        for r in results.rows:
            if r.profile != profile:
                continue
            status = r.status if not r.note else f"{r.status}; {r.note}"
            body.append([VARIANT_LABELS.get(r.variant, r.variant), r.workload, fmt(r.msgs_per_s),
                         fmt(r.mb_per_s, 2), fmt(r.rss_growth_mb), fmt(r.cpu_ms_per_msg, 2),
                         fmt(r.seconds, 2), status])
        out.extend(_table(["variant", "workload", "msgs/s", "MB/s", "peak RSS growth MB",
                           "CPU ms/msg", "seconds", "status"], body))
        out.append("")
    out.append("## Targets")
    out.append("")
    out.extend(_table(["target", "goal", "measured", "ratio", "result"],
                      [[t.name, t.target, t.measured, fmt(t.ratio, 2), t.verdict]
                       for t in targets]))
    out.append("")
    if results.empty_poll:
        e = results.empty_poll
        out.append("Empty poll (second poll of the delivered LAN 5 KB mailbox, same process): "
                   f"{e['imap_commands']} IMAP commands for {e['folders']} folder(s) "
                   f"(EXAMINE, UID SEARCH, UID FETCH as counted by `ImapSession.commands`; "
                   f"CAPABILITY, AUTHENTICATE and LOGOUT are per connection and not counted), "
                   f"{e['blob_writes']} blob writes, {e['token_requests']} token requests, "
                   f"{e['delivered']} delivered.")
        out.append("")
    if results.imports:
        i = results.imports
        out.append("Cold imports (fresh interpreter, median of 5, wall time of `python -c`): "
                   + ", ".join(f"`{k}` {v:.3f} s" for k, v in i.items()) + ".")
        out.append("")
    if results.notes:
        out.append("## Notes")
        out.append("")
        out.extend(f"- {n}" for n in results.notes)
        out.append("")
    out.append("## Machine")
    out.append("")
    out.extend(_table(["", ""], [[k, v] for k, v in results.machine.items()]))
    out.append("")
    return "\n".join(out)
