"""Runs every measurement of a bench run on the local stack and writes the report.

    python -m bench [--quick] [--profiles LAN,WAN]
                    [--workloads 5k,200k,large,fanout,idle,enqueue]
                    [--variants limit,imap,naive,mailferry,notices,getmail6] [--scale 1.0] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.fault_run import run_faults
from bench.fleet import run_enqueue, run_fanout, run_idle
from bench.harness import REPO, Endpoints, Harness, Seeded, log
from bench.host_queue import HOST_JSON
from bench.plan import ENQUEUE_SENDERS, LIMIT_THREADS, THROUGHPUT, Workload, plan_workloads
from bench.report import Results, median, render
from bench.targets import evaluate_targets
from bench.throughput import VARIANTS, run_throughput
from devstack.stack import Stack
from shared.setting_specs import SPECS

ALL_WORKLOADS = (*THROUGHPUT, "fanout", "idle", "enqueue", "faults")
WAN_ONLY = ("fanout", "idle", "faults")
PACKAGES = ("azure-storage-blob", "azure-core", "azure-data-tables", "azure-storage-queue",
            "azure-identity", "msal", "IMAPClient", "requests", "getmail6")


def measure_imports(bench: Harness, repeats: int = 5) -> None:
    def cold(statement: str) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], cwd=REPO, env=bench.child_env(),
                           check=True, capture_output=True, timeout=120)
            times.append(time.perf_counter() - started)
        return median(times)

    try:
        bench.results.imports = {
            "pass (interpreter alone)": cold("pass"),
            "azure.storage.blob": cold("import azure.storage.blob"),
            "function_app": cold("import function_app"),
        }
    except subprocess.CalledProcessError as e:
        bench.results.notes.append(f"import timing failed: {e.stderr!r}"[:300])


def machine_details() -> dict[str, str]:
    info: dict[str, str] = {}
    info["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["nproc"] = str(os.cpu_count())
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["CPU"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    with contextlib.suppress(OSError):
        info["load average at the end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    info["kernel"] = platform.release()
    info["Python"] = platform.python_version()
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    info["packages"] = ", ".join(versions)
    with contextlib.suppress(OSError, ValueError, KeyError):
        package = REPO / "devstack" / "node_modules" / "azurite" / "package.json"
        info["Azurite"] = json.loads(package.read_text())["version"]
    dovecot = shutil.which("dovecot") or "/usr/sbin/dovecot"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["Dovecot"] = subprocess.run([dovecot, "--version"], capture_output=True, text=True,
                                         timeout=10, check=False).stdout.strip()
    return info


@contextlib.contextmanager
def started_stack(state_dir: Path) -> Iterator[Stack]:
    stack = Stack.start(state_dir)
    try:
        yield stack
    finally:
        stack.stop()


def _seed_all(bench: Harness, workloads: dict[str, Workload], chosen: Sequence[str],
              profiles: Sequence[str]) -> dict[tuple[str, str], Seeded]:
    seeded: dict[tuple[str, str], Seeded] = {}
    for key in chosen:
        w = workloads[key]
        if key == "enqueue":
            continue
        if key in WAN_ONLY:
            seeded[(key, "WAN")] = bench.seed(w, "WAN", w.count)
            continue
        seeded[(key, "LAN")] = bench.seed(w, "LAN", w.count)
        if "WAN" in profiles and w.wan_count and w.wan_count != w.count:
            seeded[(key, "WAN")] = bench.seed(w, "WAN", w.wan_count)
    return seeded


def _measure_all(bench: Harness, args: argparse.Namespace, workloads: dict[str, Workload],
                 chosen: Sequence[str], profiles: Sequence[str]) -> None:
    seeded = _seed_all(bench, workloads, chosen, profiles)
    wan: Endpoints | None = None
    if "WAN" in profiles or any(k in WAN_ONLY for k in chosen):
        wan = bench.start_proxies(args.wan_delay_ms)
    variants = [v for v in args.variants if v in VARIANTS]
    for profile in profiles:
        ends = bench.lan if profile == "LAN" else wan
        assert ends is not None
        for key in chosen:
            if key in THROUGHPUT:
                box = seeded.get((key, profile), seeded[(key, "LAN")])
                run_throughput(bench, workloads[key], box, ends, variants)
                bench.fresh_storage()
    if "fanout" in chosen and wan is not None:
        run_fanout(bench, workloads["fanout"], seeded[("fanout", "WAN")], wan)
        bench.fresh_storage()
    if "idle" in chosen and wan is not None:
        run_idle(bench, seeded[("idle", "WAN")], wan)
        bench.fresh_storage()
    if "enqueue" in chosen:
        run_enqueue(bench, workloads["enqueue"])
        bench.fresh_storage()
    if "faults" in chosen and wan is not None:
        run_faults(bench, workloads["faults"], seeded[("faults", "WAN")], wan)
    if args.imports:
        measure_imports(bench)


def run(args: argparse.Namespace) -> Results:
    workloads = plan_workloads(args.quick, args.scale)
    chosen = [w for w in ALL_WORKLOADS if w in args.workloads]
    profiles = [p.upper() for p in args.profiles]
    results = Results()
    work = Path(tempfile.mkdtemp(prefix="mailferry-bench-"))
    work.chmod(0o755)  # getmail6 delivers as nobody below it
    log(f"starting the local stack in {work}")
    try:
        with started_stack(work / "stack") as stack:
            bench = Harness(args, stack, work, results)
            try:
                _measure_all(bench, args, workloads, chosen, profiles)
            finally:
                bench.stop_proxies()
            results.machine = machine_details()
    finally:
        if args.keep_state:
            log(f"state kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    _add_notes(results, args, workloads, chosen)
    return results


def _add_notes(results: Results, args: argparse.Namespace, workloads: dict[str, Workload],
               chosen: Sequence[str]) -> None:
    notes = results.notes
    notes.insert(0, "Each variant runs in its own process against the same seeded mailbox and "
                 "writes to a fresh container; a variant that delivered the wrong number of "
                 "messages (blob count and bytes, or Maildir files) is reported as failed. "
                 "msgs/s and MB/s use the seeded messages' bytes (MB = 10^6 B). Mailboxes are "
                 "seeded as maildir files that Dovecot indexes before any measurement.")
    notes.insert(1, "Peak RSS growth: the process's peak RSS (VmHWM, reset just before the "
                 "work) minus its RSS just before the work; for getmail6 (a child process that "
                 "forks a delivery per message, started from a small launcher so that its "
                 "ru_maxrss is its own) the children's ru_maxrss minus that of "
                 "`getmail --version`. CPU: user + system time of the process during the work "
                 "(getmail6: RUSAGE_CHILDREN, so its deliveries count).")
    notes.insert(2, "Timed: storage limit = the uploads (client built, container created "
                 "before); IMAP limit = connect, login, EXAMINE, UID SEARCH and the fetches; "
                 "naive = IMAP connect + login + fetch/upload loop; mailferry = `Poller.run` "
                 "(Key Vault secret, token, IMAP login, delivery, checkpoints; `Components.poller` "
                 "before it, as on a warm instance); getmail6 = the `getmail` process.")
    notes.insert(3, "Limits are the best of several configurations measured once each on a "
                 "shared machine: the maximum of noisy figures leans high, so a ratio against "
                 "it leans low.")
    if "WAN" in [p.upper() for p in args.profiles]:
        smaller = [workloads[k].name(workloads[k].wan_count or 0) for k in chosen
                   if k in THROUGHPUT and workloads[k].wan_count not in (None, workloads[k].count)]
        if smaller:
            notes.append("WAN rows use smaller, separately seeded mailboxes of the same messages "
                         f"({', '.join(smaller)}) to keep the run short.")
    if args.quick:
        notes.append("Quick run (`--quick`): reduced counts; targets are stated for the full "
                     "workloads and are only indicative here.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def csv(text: str) -> list[str]:
        return [p.strip() for p in text.split(",") if p.strip()]

    def ints(text: str) -> list[int]:
        return [int(p) for p in csv(text)]

    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.md",
                        help="Markdown results file (default bench/results.md)")
    parser.add_argument("--quick", action="store_true",
                        help="small workloads; throughput on LAN only unless --profiles says "
                             "otherwise (fan-out and idle always run on WAN)")
    parser.add_argument("--profiles", type=csv, default=None,
                        help="LAN,WAN for the throughput workloads (default both)")
    parser.add_argument("--workloads", type=csv, default=list(ALL_WORKLOADS),
                        help=f"subset of {','.join(ALL_WORKLOADS)}")
    parser.add_argument("--variants", type=csv, default=list(VARIANTS),
                        help=f"subset of {','.join(VARIANTS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--workers", type=int, default=4, help="fan-out worker processes")
    parser.add_argument("--host-json", type=Path, default=HOST_JSON,
                        help="host.json whose extensions.queues batchSize and newBatchThreshold "
                             "the fan-out workers follow (default the app's)")
    parser.add_argument("--limit-threads", type=ints, default=list(LIMIT_THREADS),
                        help="thread counts the storage limit tries (default "
                             f"{','.join(map(str, LIMIT_THREADS))})")
    parser.add_argument("--enqueue-senders", type=ints, default=list(ENQUEUE_SENDERS),
                        help="sender counts of the enqueue rate, besides the product's default")
    parser.add_argument("--upload-concurrency", type=int, default=None,
                        help="mailferry's UPLOAD_CONCURRENCY (default: the product's, "
                             f"{SPECS['UPLOAD_CONCURRENCY'].default})")
    parser.add_argument("--wan-delay-ms", type=float, default=15.0, help="delay each way on WAN")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per-measurement time limit")
    parser.add_argument("--no-imports", dest="imports", action="store_false",
                        help="skip the cold-import timing")
    parser.add_argument("--keep-state", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.profiles is None:
        args.profiles = ["LAN"] if args.quick else ["LAN", "WAN"]
    return args


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # As for Ctrl-C: the stack and proxies this run started are stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results = run(args)
    targets = evaluate_targets(results)
    title = "mailferry benchmark" + (" (quick)" if args.quick else "")
    text = render(results, targets, title)
    sys.stdout.write(text + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    log(f"written to {args.out}")
    return 0
