"""Many mailboxes: fan-out against inline, the cost of an idle run, the enqueue rate."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.enqueue import default_senders
from bench.fanout import READY_PREFIX
from bench.harness import REPO, Endpoints, Harness, Seeded, log, parse_result, status_of
from bench.host_queue import read_queue_limits
from bench.measure import RESULT_PREFIX, Measured, cpu_spent, trees_cpu_seconds
from bench.plan import Workload, enqueue_senders
from bench.report import Row, fanout_variant, median, service_cpu_note
from bench.throughput import run_variant


def _wait_ready(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, float] | str]:
    """Each worker's start-up phases once it says it is ready, or why it never did."""
    states: list[dict[str, float] | str | None] = [None] * len(procs)
    pending = {p.stdout.fileno(): (i, p.stdout) for i, p in enumerate(procs) if p.stdout}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd in pending:
            selector.register(fd, selectors.EVENT_READ)
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                index, stream = pending[key.fd]
                line = stream.readline()
                if line.startswith(READY_PREFIX):
                    states[index] = json.loads(line[len(READY_PREFIX):])
                elif line.startswith(RESULT_PREFIX):
                    states[index] = str(parse_result(line, "", None).error)
                elif not line:
                    states[index] = "exited before it was ready"
                else:
                    continue
                selector.unregister(key.fd)
                del pending[key.fd]
    return [s if s is not None else f"not ready after {timeout:.0f} s" for s in states]


def _finish(proc: subprocess.Popen[str], timeout: float, stderr_file: Any) -> Measured:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out = proc.stdout.read() if proc.stdout else ""
    with open(stderr_file, encoding="utf-8", errors="replace") as fh:
        err = fh.read()
    return parse_result(out, err, proc.returncode)


def _fanout_run(bench: Harness, workload: Workload, seeded: Seeded, ends: Endpoints,
                workers: int, summary: dict[str, Any]) -> list[dict[str, float]]:
    """One fan-out run with ``workers`` warm worker processes; their start-up phases."""
    limits = read_queue_limits(bench.args.host_json)
    row = Row(ends.profile, workload.key, workload.name(seeded.count), fanout_variant(workers),
              seeded.count, seeded.nbytes,
              note=f"{workers} worker process{'es' if workers != 1 else ''}, started and "
              f"warm before the timer; {limits.describe()}")
    bench.results.rows.append(row)
    env = bench.mailferry_env(seeded.addresses, ends)
    env["POLL_MODE"] = "fanout"
    env["POLL_QUEUE"] = f"bench-{uuid.uuid4().hex[:12]}"
    spec_path = bench.spec_file({"env": env, "idle_seconds": 2.0, "probe_mailbox": seeded.addresses[0],
                                 "start_timeout": min(bench.timeout, 120.0),
                                 "batch_size": limits.batch_size,
                                 "new_batch_threshold": limits.new_batch_threshold})
    procs: list[subprocess.Popen[str]] = []
    logs = [bench.work / f"worker-{uuid.uuid4().hex[:8]}.log" for _ in range(workers)]
    try:
        for path in logs:
            with open(path, "w") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.fanout", "worker", str(spec_path)], cwd=REPO,
                    env=bench.child_env(), stdout=subprocess.PIPE, stderr=err, text=True,
                    start_new_session=True))
        ready = _wait_ready(procs, min(bench.timeout, 300.0))
        not_ready = [s for s in ready if isinstance(s, str)]
        watched = bench.watched(ends)
        services_before = trees_cpu_seconds(watched)
        timer = (Measured(False, error=f"worker: {not_ready[0]}") if not_ready else
                 bench.run_module("bench.fanout", "timer", str(spec_path)))
        if not timer.ok:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
        results = [_finish(p, bench.timeout, path) for p, path in zip(procs, logs, strict=True)]
        services = cpu_spent(services_before, trees_cpu_seconds(watched))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        spec_path.unlink()
    startups = [s for s in ready if isinstance(s, dict)]
    failed = [r for r in [timer, *results] if not r.ok]
    if failed:
        row.status = status_of(failed[0].error)
        summary["status"] = f"{row.variant}: {row.status}"
        log(f"fan-out x{workers}: {row.status}")
        return startups
    last = max(float(r.extra.get("last_done") or 0.0) for r in results)
    seconds = last - float(timer.extra["started"])
    blobs, nbytes, per = bench.blob_counts(env["BLOB_CONTAINER"])
    processed = [int(r.extra.get("processed") or 0) for r in results]
    complete = (blobs == seeded.count and nbytes == seeded.nbytes
                and len(per) == len(seeded.addresses)
                and all(v == seeded.per_mailbox for v in per.values()))
    summary["blobs"][row.variant] = blobs
    summary["polls"][row.variant] = sum(processed)
    summary["complete"][row.variant] = complete and sum(processed) == len(seeded.addresses)
    peak = max(r.rss_peak_kb - r.rss_base_kb for r in results)
    row.measured = Measured(True, blobs, nbytes, seconds,
                            sum(r.cpu_seconds for r in results) + timer.cpu_seconds,
                            1, 1 + max(0, peak),
                            extra={"processed": processed, "others_cpu": services})
    in_flight = [int(r.extra.get("peak_in_flight") or 0) for r in results]
    row.note += (f"; seconds = timer start → last mailbox done; polls per worker {processed}, "
                 f"most at once {in_flight}; CPU = all workers + timer; RSS = largest worker; "
                 f"{service_cpu_note(row)} (services counted until the workers stopped, "
                 "2 s after the queue emptied: it leans high)")
    if not complete:
        row.status = f"failed: {blobs} blobs, per mailbox {sorted(set(per.values()))}"
    log(f"fan-out x{workers}: {row.status}; {seconds:.1f} s")
    return startups


def run_fanout(bench: Harness, workload: Workload, seeded: Seeded, ends: Endpoints) -> None:
    """Inline, one fan-out worker and ``--workers`` fan-out workers on the same mailboxes."""
    workers = int(bench.args.workers)
    summary: dict[str, Any] = {
        "workers": workers, "expected": seeded.count, "mailboxes": len(seeded.addresses),
        "blobs": {}, "polls": {}, "complete": {}, "status": "ok"}
    bench.results.fanout = summary
    inline = run_variant(bench, "mailferry", workload, seeded, ends, warm=True)
    inline.variant = "inline"
    inline.note = (inline.note + "; " if inline.note else "") + \
        "one process, poller built and token cached before the timed run"
    summary["startup"] = {}
    for count in sorted({1, workers}):
        startups = _fanout_run(bench, workload, seeded, ends, count, summary)
        if startups:
            # Median per phase over the workers that started together.
            summary["startup"][str(count)] = {
                phase: median([s[phase] for s in startups if phase in s]) for phase in startups[0]}


def run_idle(bench: Harness, seeded: Seeded, ends: Endpoints) -> None:
    """An empty timer run over many mailboxes after a first one delivered their mail."""
    env = bench.mailferry_env(seeded.addresses, ends)
    measured = bench.run_spec("bench.idle", {
        "env": env, "state_dir": str(bench.stack.state_dir), "proxy_control": ends.proxy_control,
        "ports": ends.targets, "lan_connection_string": bench.lan.connection_string})
    idle: dict[str, Any] = {**measured.extra, "seconds": measured.seconds,
                            "cpu_seconds": measured.cpu_seconds, "status": "ok"}
    if not measured.ok:
        idle["status"] = status_of(measured.error)
    else:
        blobs, nbytes, _ = bench.blob_counts(env["BLOB_CONTAINER"])
        if blobs != seeded.count or nbytes != seeded.nbytes:
            idle["status"] = (f"failed: the first poll left {blobs} blobs ({nbytes:,} B) for "
                              f"{seeded.count} messages ({seeded.nbytes:,} B)")
    bench.results.idle = idle
    log(f"idle: {idle['status']}; empty poll of {len(seeded.addresses):,} mailboxes in "
        f"{measured.seconds:.1f} s")


def run_enqueue(bench: Harness, workload: Workload) -> None:
    """The fan-out timer's enqueue rate at several sender counts."""
    env = bench.mailferry_env(["enqueue@bench.example"], bench.lan)
    env["POLL_MODE"] = "fanout"
    senders = enqueue_senders(default_senders(), bench.args.enqueue_senders)
    measured = bench.run_spec("bench.enqueue", {
        "env": env, "mailboxes": workload.mailboxes, "senders": senders,
        "queue_prefix": f"bench-enqueue-{uuid.uuid4().hex[:8]}"})
    enqueue: dict[str, Any] = {**measured.extra, "status": "ok"}
    if not measured.ok:
        enqueue["status"] = status_of(measured.error)
    bench.results.enqueue = enqueue
    rates = ", ".join(f"{r['senders']}: {r['msgs_per_s']:,.0f}/s" for r in enqueue.get("runs", []))
    log(f"enqueue {workload.mailboxes:,}: {enqueue['status']}; {rates}")
