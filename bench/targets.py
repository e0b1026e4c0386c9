"""The issue's targets, each judged from figures of one run. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.fault_profile import fault_targets
from bench.report import METHOD_LABELS, Results, Row, fanout_variant, fmt

LIMIT_SHARE = 0.9
# Notices may cost at most 10 % of a poll's throughput.
NOTICE_SHARE = 0.9
SIZE_LABELS = {"5k": "5 KB", "200k": "200 KB", "large": "large message"}


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


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _at_least(name: str, target: str, a: Row | None, b: Row | None, factor: float) -> Target:
    av = a.msgs_per_s if a else None
    bv = b.msgs_per_s if b else None
    ratio = _ratio(av, bv)
    return Target(name, target, f"{fmt(av)} vs {fmt(bv)} msgs/s", ratio,
                  None if ratio is None else ratio >= factor)


def _vs_limit(results: Results, profile: str, key: str) -> Target:
    """mailferry against the storage limit of the same workload and profile."""
    mine = results.find(profile, key, "mailferry")
    limit = results.find(profile, key, "limit")
    imap = results.find(profile, key, "imap")
    large = key == "large"
    unit = "MB/s" if large else "msgs/s"

    def speed(row: Row | None) -> float | None:
        if row is None:
            return None
        return row.mb_per_s if large else row.msgs_per_s

    ratio = _ratio(speed(mine), speed(limit))
    how = ""
    if limit is not None and limit.ok and limit.measured is not None:
        extra = limit.measured.extra
        how = f" ({METHOD_LABELS.get(str(extra.get('method')), extra.get('method'))}, " \
              f"{extra.get('threads')} threads)"
    measured = (f"{fmt(speed(mine))} vs {fmt(speed(limit))} {unit}{how}; IMAP alone "
                f"{fmt(speed(imap))}")
    busy = [row.busy_cores if row else None for row in (mine, limit)]
    if any(b is not None for b in busy):
        # Near the machine's cores, a row is bound by the CPU of everything on it.
        measured += f"; cores busy {fmt(busy[0], 2)} vs {fmt(busy[1], 2)}"
    return Target(f"{profile} {SIZE_LABELS[key]} vs storage limit",
                  f"mailferry ≥ {LIMIT_SHARE:g} x storage limit ({unit})", measured, ratio,
                  None if ratio is None else ratio >= LIMIT_SHARE)


def _cpu(results: Results, key: str) -> Target:
    mine = results.find("LAN", key, "mailferry")
    naive = results.find("LAN", key, "naive")
    mine_cpu = mine.cpu_ms_per_msg if mine else None
    naive_cpu = naive.cpu_ms_per_msg if naive else None
    ratio = _ratio(mine_cpu, naive_cpu)
    return Target(f"Client CPU per {SIZE_LABELS[key]} message", "mailferry ≤ 0.6 x naive loop",
                  f"{fmt(mine_cpu, 2)} vs {fmt(naive_cpu, 2)} ms/msg", ratio,
                  None if ratio is None else ratio <= 0.6)


def _notice_cost(results: Results) -> Target:
    """A poll with NOTIFY_QUEUE against the same poll without, LAN 5 KB."""
    plain = results.find("LAN", "5k", "mailferry")
    announced = results.find("LAN", "5k", "notices")
    speed = [r.msgs_per_s if r else None for r in (announced, plain)]
    cpu = [r.cpu_ms_per_msg if r else None for r in (announced, plain)]
    storage = [r.storage_cpu_ms_per_msg if r else None for r in (announced, plain)]
    ratio = _ratio(speed[0], speed[1])
    return Target("LAN 5 KB: notices cost ≤ 10 %",
                  f"mailferry + notices ≥ {NOTICE_SHARE:g} x mailferry (msgs/s)",
                  f"{fmt(speed[0])} vs {fmt(speed[1])} msgs/s; client CPU {fmt(cpu[0], 2)} vs "
                  f"{fmt(cpu[1], 2)} ms/msg; Azurite CPU {fmt(storage[0], 2)} vs "
                  f"{fmt(storage[1], 2)} ms/msg", ratio, None if ratio is None else ratio >= NOTICE_SHARE)


def evaluate_targets(results: Results) -> list[Target]:
    """Every target, in the order of the issue."""
    find = results.find
    targets = [_vs_limit(results, profile, key)
               for profile in ("LAN", "WAN") for key in ("5k", "200k", "large")]
    mf_lan = find("LAN", "5k", "mailferry")
    mf_wan = find("WAN", "5k", "mailferry")
    targets.append(_at_least("LAN 5 KB vs getmail6", "mailferry ≥ 4 x getmail6",
                             mf_lan, find("LAN", "5k", "getmail6"), 4.0))
    targets.append(_at_least("WAN 5 KB vs own LAN", "mailferry WAN ≥ 0.8 x mailferry LAN",
                             mf_wan, mf_lan, 0.8))
    targets.append(_at_least("WAN 5 KB vs getmail6", "mailferry ≥ 8 x getmail6",
                             mf_wan, find("WAN", "5k", "getmail6"), 8.0))
    big = find("LAN", "large", "mailferry")
    growth = big.rss_growth_mb if big else None
    label = big.workload if big else "large message"
    targets.append(Target("Large message RSS", f"{label}: mailferry peak RSS growth < 64 MB",
                          f"{fmt(growth)} MB", _ratio(growth, 64.0),
                          None if growth is None else growth < 64.0))
    targets.extend(_cpu(results, key) for key in ("5k", "200k"))
    targets.append(_notice_cost(results))
    targets.extend(_fanout_targets(results))
    targets.extend(_idle_targets(results.idle))
    targets.append(_enqueue_target(results.enqueue))
    targets.append(_import_target(results.imports))
    targets.extend(Target(*t) for t in fault_targets(results.faults))
    return targets


def _fanout_targets(results: Results) -> list[Target]:
    fan = results.fanout or {}
    workers = int(fan.get("workers", 4))
    many = results.find("WAN", "fanout", fanout_variant(workers))
    one = results.find("WAN", "fanout", fanout_variant(1))
    inline = results.find("WAN", "fanout", "inline")

    def speedup(name: str, goal: str, slow: Row | None, factor: float, label: str) -> Target:
        slow_s = slow.seconds if slow else None
        fast_s = many.seconds if many else None
        ratio = _ratio(slow_s, fast_s)
        measured = f"{label} {fmt(slow_s)} s, {workers} workers {fmt(fast_s)} s"
        return Target(name, goal, measured, ratio, None if ratio is None else ratio >= factor)

    runs = [r for r in (one, many) if r is not None]
    dup_ok: bool | None = None
    measured = (fan.get("status") or "not measured")
    if runs and all(r.ok for r in runs):
        dup_ok = all(bool(fan.get("complete", {}).get(r.variant)) for r in runs)
        measured = "; ".join(f"{r.variant}: {fan.get('blobs', {}).get(r.variant)} blobs for "
                             f"{fan.get('expected')}, {fan.get('polls', {}).get(r.variant)} polls "
                             f"for {fan.get('mailboxes')} mailboxes" for r in runs)
    return [
        speedup("Fan-out vs 1 worker", f"{workers} workers ≥ 3 x the speed of 1 worker (WAN)",
                one, 3.0, "1 worker"),
        speedup("Fan-out vs inline", f"{workers} workers ≥ 1.5 x inline with the default "
                "MAX_CONCURRENT_MAILBOXES (WAN)", inline, 1.5, "inline"),
        Target("Fan-out: exactly once", "0 duplicate deliveries or polls (blobs = messages, every "
               "mailbox complete, one poll per mailbox)", measured, None, dup_ok),
    ]


def _idle_targets(idle: dict[str, Any] | None) -> list[Target]:
    if not idle or idle.get("status") != "ok":
        reason = (idle or {}).get("status", "not measured")
        return [Target("Idle: empty run in the time box", "the timer's empty run fits "
                       "POLL_DEADLINE_SECONDS with the defaults", reason, None, None)]
    boxes = int(idle["mailboxes"])
    seconds, deadline = float(idle["seconds"]), float(idle["deadline"])
    fits = seconds <= deadline and not idle["skipped"] and not idle["failed"]
    per_folder = float(idle["imap_commands"]) / max(1, int(idle["folders"]))
    return [
        Target("Idle: empty run in the time box",
               f"the timer's empty run of {boxes:,} mailboxes (WAN) fits "
               f"POLL_DEADLINE_SECONDS ({deadline:.0f} s) with the defaults",
               f"{seconds:.1f} s, {idle['skipped']} skipped, {idle['failed']} failed",
               seconds / deadline, fits),
        Target("Idle: IMAP commands", "≤ 5 per folder", f"{per_folder:g} per folder",
               per_folder / 5.0, per_folder <= 5),
        Target("Idle: blob writes", "0", str(idle["blob_writes"]), None, idle["blob_writes"] == 0),
        Target("Idle: token requests", "0 while the cached token is valid",
               str(idle["token_requests"]), None, idle["token_requests"] == 0),
    ]


def _enqueue_target(enq: dict[str, Any] | None) -> Target:
    goal = "≥ 500 poll messages/s to Azurite at the default senders"
    if not enq or enq.get("status") != "ok":
        return Target("Enqueue rate", goal, (enq or {}).get("status", "not measured"), None, None)
    run = next((r for r in enq["runs"] if r["senders"] == enq["default"]), None)
    if run is None:
        return Target("Enqueue rate", goal, "the default was not measured", None, None)
    rate = float(run["msgs_per_s"])
    ok = rate >= 500.0 and int(run["queued"]) == int(enq["mailboxes"])
    return Target("Enqueue rate", goal,
                  f"{rate:,.0f} msgs/s with {run['senders']} senders, {run['queued']:,} of "
                  f"{enq['mailboxes']:,} queued", rate / 500.0, ok)


def _import_target(imports: dict[str, float] | None) -> Target:
    if not imports:
        return Target("import function_app cold", "≤ 0.3 s above azure.storage.blob",
                      "not measured", None, None)
    extra = imports["function_app"] - imports["azure.storage.blob"]
    return Target("import function_app cold", "≤ 0.3 s above importing azure.storage.blob",
                  f"{imports['function_app']:.3f} s vs {imports['azure.storage.blob']:.3f} s "
                  f"({extra:+.3f} s)", extra / 0.3, extra <= 0.3)
