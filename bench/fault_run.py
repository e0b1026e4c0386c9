"""The fault profile's rows: mailferry on WAN, through the idle fault fronts, and under faults.

All three poll the same seeded mailbox into fresh containers, one after the other. The
fronts (``devstack/faults``) stand between a delay proxy and Dovecot, so the client sees
Exchange's words and resets across the same WAN link as the plain WAN row; storage goes
through the WAN proxy straight to Azurite (no storage faults in this profile).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from azure.storage.blob import ContainerClient

from bench.fault_profile import SEED, FaultSchedule, check_delivery, fault_schedule
from bench.harness import Endpoints, Harness, Seeded, log, status_of
from bench.messages import message_id_of
from bench.plan import Workload
from bench.report import Row
from bench.throughput import run_variant
from shared.setting_specs import SPECS

# Full runs alternate the three rows this many times and keep each one's median.
ROUNDS = 3


def _proxy_to(bench: Harness, port: int) -> int:
    """A delay proxy like the WAN one, in front of ``port``; stopped with the others."""
    started = bench.start_delay_proxy(bench.args.wan_delay_ms, targets=[port])
    return int(started["ports"][str(port)])


def _delivered(bench: Harness, container: str) -> list[tuple[str, int, str]]:
    client = ContainerClient.from_connection_string(bench.lan.connection_string, container)
    if not client.exists():
        return []
    return [(b.name, int(b.size or 0), unquote((b.metadata or {}).get("message_id", "")))
            for b in client.list_blobs(include=["metadata"])]


def _under_faults(bench: Harness, workload: Workload, seeded: Seeded, ends: Endpoints,
                  faults_dir: str, schedule: FaultSchedule) -> tuple[Row, dict[str, Any]]:
    """One measured run of the schedule: its row, and what it did for the report."""
    row = Row(ends.profile, workload.key, workload.name(seeded.count), "faults", seeded.count,
              seeded.nbytes)
    env = bench.mailferry_env(seeded.addresses, ends)
    address = seeded.addresses[0]
    measured = bench.run_spec("bench.fault_poll", {
        "env": env, "faults_dir": faults_dir, "address": address,
        "schedule": schedule.to_json(), "timeout": bench.timeout})
    row.measured = measured
    extra = measured.extra
    polls = extra.get("polls", [])
    expected_ids = [message_id_of(address.split("@")[0], i) for i in range(seeded.count)]
    check = check_delivery(_delivered(bench, env["BLOB_CONTAINER"]), expected_ids, seeded.nbytes)
    done: dict[str, Any] = {
        "polls": polls, "runs": len(polls), "busy_seconds": float(extra.get("busy_seconds") or 0.0),
        "seconds": measured.seconds, "resets_fired": extra.get("resets_fired", 0),
        "throttles_fired": extra.get("throttles_fired", 0),
        "connections": extra.get("connections", 0), "delivery": check.describe(),
        "exact": check.exact, "lost": check.lost, "duplicated": check.duplicated}
    if not measured.ok:
        row.status = status_of(measured.error)
    elif not check.exact:
        row.status = f"failed: {check.describe()}"
    else:
        row.note = (f"{len(polls)} polls, {done['resets_fired']} resets, "
                    f"{done['throttles_fired']} throttle of {schedule.backoff_ms / 1000:g} s; "
                    "seconds = first poll's start → last poll's end, back-off waits included; "
                    "lost 0, duplicated 0")
    log(f"faults: {row.status}; {measured.seconds:.1f} s in {len(polls)} polls; "
        f"{check.describe()}")
    return row, done


def _median_row(rows: list[Row]) -> Row:
    """The row of median seconds (a failed one if any failed), its note naming every round."""
    failed = [r for r in rows if not r.ok]
    if failed or len(rows) == 1:
        return failed[0] if failed else rows[0]
    ranked = sorted(rows, key=lambda r: r.seconds or 0.0)
    chosen = ranked[len(ranked) // 2]
    times = ", ".join(f"{r.seconds or 0.0:.2f}" for r in rows)
    chosen.note = (chosen.note + "; " if chosen.note else "") + \
        f"median of {len(rows)} alternating rounds ({times} s)"
    return chosen


def run_faults(bench: Harness, workload: Workload, seeded: Seeded, wan: Endpoints) -> None:
    """Rounds of WAN, WAN through the idle fronts and WAN under the schedule's faults, each
    into a fresh container; the median row of each, and every run's delivery checked."""
    summary: dict[str, Any] = {"status": "ok", "seed": SEED, "workload": workload.name(seeded.count),
                               "speed": {}}
    bench.results.faults = summary
    schedule = fault_schedule(seeded.count, workload.size,
                              int(SPECS["FETCH_BATCH_SIZE"].default or 100))
    summary.update(schedule.to_json())
    try:
        front = bench.stack.start_faults()
        through_front = replace(wan, imap_port=_proxy_to(bench, front.imap_port))
    except Exception as e:  # reported in the section; the other rows of the run go on
        summary["status"] = f"failed: the fault front did not start: {type(e).__name__}: {e}"[:300]
        log(summary["status"])
        return
    rows: dict[str, list[Row]] = {"mailferry": [], "front": [], "faults": []}
    runs: dict[int, dict[str, Any]] = {}
    for _ in range(1 if bench.args.quick else ROUNDS):
        rows["mailferry"].append(run_variant(bench, "mailferry", workload, seeded, wan))
        idle = run_variant(bench, "mailferry", workload, seeded, through_front)
        idle.variant = "front"
        rows["front"].append(idle)
        row, done = _under_faults(bench, workload, seeded, through_front, str(front.directory),
                                  schedule)
        rows["faults"].append(row)
        runs[id(row)] = done
    measured = [r for group in rows.values() for r in group]
    bench.results.rows = [r for r in bench.results.rows if all(r is not m for m in measured)]
    for variant, group in rows.items():
        chosen = _median_row(group)
        bench.results.rows.append(chosen)
        summary["speed"][variant] = chosen.msgs_per_s
        if variant == "faults":
            summary.update(runs[id(chosen)])
            summary["rounds"] = [{"seconds": r.seconds, **{k: runs[id(r)][k] for k in (
                "runs", "resets_fired", "throttles_fired", "lost", "duplicated")}} for r in group]
            summary["exact"] = all(runs[id(r)]["exact"] for r in group)
            if not chosen.ok or not summary["exact"]:
                summary["status"] = next((r.status for r in group if not r.ok), chosen.status)
