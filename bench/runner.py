"""Runs every variant of every workload on the local stack and writes the report.

    python -m bench [--quick] [--profiles LAN,WAN] [--workloads 5k,200k,large,fanout]
                    [--variants ceiling,naive,mailferry,getmail6] [--scale 1.0] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
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
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

from bench.measure import RESULT_PREFIX, Measured
from bench.messages import make_message, write_messages
from bench.report import Results, Row, evaluate_targets, median, render, workload_name
from devstack.azurite import ACCOUNT, ACCOUNT_KEY
from devstack.stack import Stack
from shared.setting_specs import SPECS
from shared.settings import SETTING_NAMES

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
KB = 1024
MB = 1024 * 1024
ALL_VARIANTS = ("ceiling", "naive", "mailferry", "getmail6")
ALL_WORKLOADS = ("5k", "200k", "large", "fanout")
PACKAGES = ("azure-storage-blob", "azure-core", "azure-data-tables", "azure-storage-queue",
            "azure-identity", "msal", "IMAPClient", "requests", "getmail6")
IDENTITY_VARS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")


def log(text: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Workload:
    key: str
    size: int
    count: int              # messages in total (all mailboxes), LAN
    wan_count: int | None   # messages on WAN (a smaller, separately seeded mailbox), or None
    mailboxes: int = 1

    def name(self, count: int) -> str:
        return workload_name(count, self.size, self.mailboxes)


def plan_workloads(quick: bool, scale: float) -> dict[str, Workload]:
    def n(value: int) -> int:
        return max(1, round(value * scale))

    if quick:
        return {
            "5k": Workload("5k", 5 * KB, n(500), n(200)),
            "200k": Workload("200k", 200 * KB, n(50), n(20)),
            "large": Workload("large", 20 * MB, 1, 1),
            "fanout": Workload("fanout", 5 * KB, 10 * n(20), None, mailboxes=10),
        }
    return {
        "5k": Workload("5k", 5 * KB, n(5000), n(2000)),
        "200k": Workload("200k", 200 * KB, n(500), n(200)),
        "large": Workload("large", 100 * MB, 1, 1),
        "fanout": Workload("fanout", 5 * KB, 50 * n(100), None, mailboxes=50),
    }


@dataclass
class Seeded:
    """One seeded mailbox (or set of mailboxes for fan-out) and the bytes it holds."""

    addresses: list[str]
    count: int
    nbytes: int
    messages_file: Path


@dataclass
class Endpoints:
    """Where variants connect: straight to the stack (LAN) or through delay proxies (WAN)."""

    imap_port: int
    connection_string: str


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack, work: Path, results: Results) -> None:
        self.args = args
        self.stack = stack
        self.work = work
        self.results = results
        self.proxies: list[subprocess.Popen[str]] = []
        self.timeout = float(args.timeout)

    # -- helpers ---------------------------------------------------------------------------
    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in SETTING_NAMES and k not in IDENTITY_VARS}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        return env

    def spec_file(self, spec: dict[str, Any]) -> Path:
        path = self.work / f"spec-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(spec))
        path.chmod(0o600)
        return path

    def run_module(self, module: str, *args: str) -> Measured:
        """Run ``python -m module args`` (a variant), wait, and read its result line."""
        # Its own process group, so a timeout also ends what it started (getmail6).
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO,
                                env=self.child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Measured(False, error=f"timed out after {self.timeout:.0f} s")
        return parse_result(out, err, proc.returncode)

    def lan_storage(self) -> str:
        return str(self.stack.storage_connection_string)

    def blob_counts(self, container: str) -> tuple[int, int, dict[str, int]]:
        """(blobs, bytes, blobs per first name segment) in a container, read over LAN."""
        client = ContainerClient.from_connection_string(self.lan_storage(), container)
        count = total = 0
        per: dict[str, int] = {}
        if not client.exists():
            return 0, 0, per
        for blob in client.list_blobs():
            count += 1
            total += int(blob.size or 0)
            head = blob.name.split("/", 1)[0]
            per[head] = per.get(head, 0) + 1
        return count, total, per

    # -- seeding ---------------------------------------------------------------------------
    def seed(self, workload: Workload, profile: str, count: int) -> Seeded:
        tag = f"{workload.key}-{profile.lower()}"
        addresses = ([f"b{tag}@bench.example"] if workload.mailboxes == 1 else
                     [f"b{tag}-{i:02d}@bench.example" for i in range(workload.mailboxes)])
        per_box = count // len(addresses)
        started = time.perf_counter()
        total = 0
        files = self.work / f"messages-{tag}.bin"
        all_messages: list[bytes] = []
        for address in addresses:
            self.stack.add_mailbox(address)
            messages = [make_message(address.split("@")[0], i, workload.size)
                        for i in range(per_box)]
            self.stack.append_many(address, "INBOX", messages)
            total += sum(len(m) for m in messages)
            if len(addresses) == 1:
                all_messages = messages
        write_messages(files, all_messages)
        log(f"seeded {len(addresses)} mailbox(es) with {per_box * len(addresses):,} x "
            f"{workload.size:,} B in {time.perf_counter() - started:.1f} s")
        return Seeded(addresses, per_box * len(addresses), total, files)

    # -- WAN -------------------------------------------------------------------------------
    def start_proxies(self, delay_ms: float) -> Endpoints:
        ports = self.stack.azurite_ports
        targets = [self.stack.imaps_port, ports.blob, ports.table]
        argv = [sys.executable, "-m", "bench.delay_proxy", "--delay-ms", str(delay_ms),
                "--parent-pid", str(os.getpid()), "--max-seconds", str(self.timeout * 8)]
        for port in targets:
            argv += ["--target", f"{LOOPBACK}:{port}"]
        proc = subprocess.Popen(argv, cwd=REPO, env=self.child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        self.proxies.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the delay proxy did not start")
        mapped = {int(k): int(v) for k, v in json.loads(line)["ports"].items()}
        connection = (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{LOOPBACK}:{mapped[ports.blob]}/{ACCOUNT};"
            f"QueueEndpoint=http://{LOOPBACK}:{ports.queue}/{ACCOUNT};"
            f"TableEndpoint=http://{LOOPBACK}:{mapped[ports.table]}/{ACCOUNT};"
        )
        rtt = self.http_rtt(mapped[ports.blob])
        self.results.notes.append(
            f"WAN: a delay proxy (`bench/delay_proxy.py`) adds {delay_ms:g} ms each way per chunk "
            f"in front of Dovecot IMAPS and Azurite blob and table; measured HTTP round trip "
            f"through it {rtt * 1000:.1f} ms (direct: {self.http_rtt(ports.blob) * 1000:.1f} ms). "
            "The identity emulator (token, Key Vault) is not behind it.")
        return Endpoints(mapped[self.stack.imaps_port], connection)

    def stop_proxies(self) -> None:
        for proc in self.proxies:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.proxies.clear()

    @staticmethod
    def http_rtt(port: int) -> float:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        times = []
        try:
            for _ in range(5):
                t0 = time.perf_counter()
                conn.request("GET", "/devstoreaccount1?comp=list")
                conn.getresponse().read()
                times.append(time.perf_counter() - t0)
        finally:
            conn.close()
        return median(times[1:])

    # -- variants --------------------------------------------------------------------------
    def mailferry_env(self, addresses: Sequence[str], ends: Endpoints) -> dict[str, str]:
        env: dict[str, str] = self.stack.settings_env(",".join(addresses))
        env["IMAP_PORT"] = str(ends.imap_port)
        env["MAIL_STORAGE"] = ends.connection_string
        return env

    def run_variant(self, variant: str, profile: str, workload: Workload, seeded: Seeded,
                    ends: Endpoints, *, empty_poll: bool = False) -> Row:
        row = Row(profile, workload.key, workload.name(seeded.count), variant, seeded.count,
                  seeded.nbytes)
        container = f"bench-{variant}-{uuid.uuid4().hex[:12]}"
        spec: dict[str, Any] = {
            "variant": variant, "connection_string": ends.connection_string,
            "container": container, "upload_concurrency": self.args.upload_concurrency,
            "imap_host": LOOPBACK, "imap_port": ends.imap_port, "ca_file": str(self.stack.ca_pem),
            "address": seeded.addresses[0], "messages_file": str(seeded.messages_file),
            "state_dir": str(self.stack.state_dir), "timeout": self.timeout,
            "empty_poll": empty_poll,
        }
        if variant in ("naive", "getmail6"):
            spec["token"] = self.stack.issue_token()
        if variant == "mailferry":
            env = self.mailferry_env(seeded.addresses, ends)
            env["UPLOAD_CONCURRENCY"] = str(self.args.upload_concurrency)
            spec["env"] = env
            container = env["BLOB_CONTAINER"]
        if variant == "getmail6":
            getmail = shutil.which("getmail", path=str(Path(sys.executable).parent))
            if getmail is None:
                row.status = "not available: getmail6 is not installed (pip install getmail6)"
                return row
            spec["getmail"] = getmail
            spec["work_dir"] = str(self.work / f"getmail-{uuid.uuid4().hex[:8]}")
        spec_path = self.spec_file(spec)
        try:
            measured = self.run_module("bench.variant", str(spec_path))
        finally:
            spec_path.unlink()
        row.measured = measured
        if not measured.ok:
            row.status = f"failed: {measured.error}"
        elif variant == "getmail6":
            if measured.count != seeded.count:
                row.status = f"failed: {measured.count} Maildir files for {seeded.count} messages"
        else:
            blobs, nbytes, _ = self.blob_counts(container)
            if blobs != seeded.count or nbytes != seeded.nbytes:
                row.status = (f"failed: {blobs} blobs ({nbytes:,} B) for {seeded.count} "
                              f"messages ({seeded.nbytes:,} B)")
        if variant == "mailferry" and measured.ok:
            settings = measured.extra.get("settings", {})
            row.note = ", ".join(f"{k}={v}" for k, v in settings.items())
            if empty_poll and "empty_poll" in measured.extra:
                self.results.empty_poll = measured.extra["empty_poll"]
        if variant == "ceiling":
            row.note = f"{self.args.upload_concurrency} threads"
        self.results.rows.append(row)
        log(f"{profile} {row.workload} {variant}: {row.status}; "
            f"{_num(row.msgs_per_s)} msg/s, {_num(row.cpu_ms_per_msg)} CPU ms/msg, "
            f"{_num(row.rss_growth_mb)} MB RSS growth")
        return row

    # -- fan-out ---------------------------------------------------------------------------
    def run_fanout(self, workload: Workload, seeded: Seeded, ends: Endpoints) -> None:
        workers = int(self.args.workers)
        name = workload.name(seeded.count)
        inline = self.run_variant("mailferry", "LAN", workload, seeded, ends)
        inline.variant = "inline"
        inline.note = (inline.note + "; " if inline.note else "") + "one process, seconds = build + poll"
        if inline.ok and inline.measured is not None:
            inline.seconds_override = (inline.measured.seconds
                                       + float(inline.measured.extra.get("setup_seconds", 0.0)))
        fan = Row("LAN", workload.key, name, "fanout", seeded.count, seeded.nbytes,
                  note=f"{workers} worker processes")
        self.results.rows.append(fan)
        summary: dict[str, Any] = {"workers": workers, "expected": seeded.count,
                                   "per_mailbox": seeded.count // len(seeded.addresses)}
        self.results.fanout = summary
        env = self.mailferry_env(seeded.addresses, ends)
        env["POLL_MODE"] = "fanout"
        env["POLL_QUEUE"] = f"bench-{uuid.uuid4().hex[:12]}"
        spec_path = self.spec_file({"env": env, "idle_seconds": 2.0,
                                    "start_timeout": min(self.timeout, 120.0)})
        procs: list[subprocess.Popen[str]] = []
        try:
            for _ in range(workers):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.fanout", "worker", str(spec_path)], cwd=REPO,
                    env=self.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True))
            time.sleep(float(self.args.worker_warmup))  # imports done: instances are warm
            timer = self.run_module("bench.fanout", "timer", str(spec_path))
            results: list[Measured] = []
            for proc in procs:
                try:
                    out, err = proc.communicate(timeout=self.timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    out, err = proc.communicate()
                results.append(parse_result(out, err, proc.returncode))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            spec_path.unlink()
        if not timer.ok:
            fan.status = _status_of(timer.error)
            summary["status"] = fan.status
            log(f"fan-out: {fan.status}")
            return
        failed = [r for r in results if not r.ok]
        if failed:
            fan.status = _status_of(failed[0].error)
            summary["status"] = fan.status
            log(f"fan-out: {fan.status}")
            return
        last = max(float(r.extra.get("last_done") or 0.0) for r in results)
        started = float(timer.extra["started"])
        seconds = last - started
        blobs, nbytes, per = self.blob_counts(env["BLOB_CONTAINER"])
        per_mailbox = summary["per_mailbox"]
        counts_ok = (blobs == seeded.count and len(per) == len(seeded.addresses)
                     and all(v == per_mailbox for v in per.values()))
        peak = max(r.rss_peak_kb - r.rss_base_kb for r in results)
        fan.measured = Measured(True, blobs, nbytes, seconds,
                                sum(r.cpu_seconds for r in results) + timer.cpu_seconds,
                                1, 1 + max(0, peak),
                                extra={"processed": [r.extra.get("processed") for r in results]})
        fan.note += (f"; seconds = timer start → last mailbox done; messages handled per worker "
                     f"{[r.extra.get('processed') for r in results]}; CPU = all workers + timer; "
                     "RSS = largest worker")
        if not counts_ok:
            fan.status = f"failed: {blobs} blobs, per mailbox {sorted(set(per.values()))}"
        summary.update(status="ok" if inline.ok else f"inline {inline.status}",
                       inline_seconds=inline.seconds, fanout_seconds=seconds,
                       blobs=blobs, counts_ok=counts_ok)
        log(f"fan-out: {fan.status}; {seconds:.1f} s vs inline {_num(inline.seconds)} s")

    # -- imports ---------------------------------------------------------------------------
    def measure_imports(self, repeats: int = 5) -> None:
        def cold(statement: str) -> float:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", statement], cwd=REPO, env=self.child_env(),
                               check=True, capture_output=True, timeout=120)
                times.append(time.perf_counter() - t0)
            return median(times)

        try:
            self.results.imports = {
                "pass (interpreter alone)": cold("pass"),
                "azure.storage.blob": cold("import azure.storage.blob"),
                "function_app": cold("import function_app"),
            }
        except subprocess.CalledProcessError as e:
            self.results.notes.append(f"import timing failed: {e.stderr!r}"[:300])


def _status_of(error: str | None) -> str:
    text = error or "unknown error"
    return text if text.startswith("not available") else f"failed: {text}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def parse_result(out: str, err: str, returncode: int | None) -> Measured:
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Measured.from_json(json.loads(line[len(RESULT_PREFIX):]))
    tail = (err or out).strip().splitlines()[-3:]
    return Measured(False, error=f"exit {returncode}, no result: {' / '.join(tail)}"[:500])


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


def run(args: argparse.Namespace) -> Results:
    workloads = plan_workloads(args.quick, args.scale)
    chosen = [w for w in args.workloads if w in workloads]
    variants = [v for v in args.variants if v in ALL_VARIANTS]
    profiles = [p.upper() for p in args.profiles]
    results = Results()
    work = Path(tempfile.mkdtemp(prefix="mailferry-bench-"))
    work.chmod(0o755)  # getmail6 delivers as nobody below it
    log(f"starting the local stack in {work}")
    try:
        with started_stack(work / "stack") as stack:
            bench = Bench(args, stack, work, results)
            results.machine = machine_details()
            try:
                lan = Endpoints(stack.imaps_port, stack.storage_connection_string)
                seeded: dict[tuple[str, str], Seeded] = {}
                for key in chosen:
                    w = workloads[key]
                    seeded[(key, "LAN")] = bench.seed(w, "LAN", w.count)
                    if "WAN" in profiles and w.wan_count and w.wan_count != w.count:
                        seeded[(key, "WAN")] = bench.seed(w, "WAN", w.wan_count)
                for profile in profiles:
                    ends = lan if profile == "LAN" else bench.start_proxies(args.wan_delay_ms)
                    for key in chosen:
                        w = workloads[key]
                        if key == "fanout":
                            continue
                        if profile == "WAN" and w.wan_count is None:
                            continue
                        box = seeded.get((key, profile), seeded[(key, "LAN")])
                        for variant in variants:
                            bench.run_variant(variant, profile, w, box, ends,
                                              empty_poll=(profile == "LAN" and key == "5k"))
                if "fanout" in chosen:
                    bench.run_fanout(workloads["fanout"], seeded[("fanout", "LAN")], lan)
                if args.imports:
                    bench.measure_imports()
            finally:
                bench.stop_proxies()
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
                 "msgs/s and MB/s use the seeded messages' bytes (MB = 10^6 B).")
    notes.insert(1, "Peak RSS growth: the process's peak RSS (VmHWM, reset just before the "
                 "work) minus its RSS just before the work; for getmail6 (a child process that "
                 "forks a delivery per message, started from a small launcher so that its "
                 "ru_maxrss is its own) the children's ru_maxrss minus that of "
                 "`getmail --version`. CPU: user + system time of the process during the work "
                 "(getmail6: RUSAGE_CHILDREN, so its deliveries count).")
    notes.insert(2, "Timed: ceiling = the uploads (client built, container created before); "
                 "naive = IMAP connect + login + fetch/upload loop; mailferry = `Poller.run` "
                 "(Key Vault secret, token, IMAP login, delivery, checkpoints; `build_poller` "
                 "before it, as on a warm instance); getmail6 = the `getmail` process.")
    if "WAN" in [p.upper() for p in args.profiles]:
        smaller = [f"{workloads[k].name(workloads[k].wan_count or 0)}" for k in chosen
                   if k != "fanout" and workloads[k].wan_count not in (None, workloads[k].count)]
        if smaller:
            notes.append("WAN rows use smaller, separately seeded mailboxes of the same messages "
                         f"({', '.join(smaller)}) to keep the run short; the fan-out workload "
                         "runs on LAN only.")
    if args.quick:
        notes.append("Quick run (`--quick`): reduced counts; targets are stated for the full "
                     "workloads and are only indicative here.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def csv(text: str) -> list[str]:
        return [p.strip() for p in text.split(",") if p.strip()]

    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.md",
                        help="Markdown results file (default bench/results.md)")
    parser.add_argument("--quick", action="store_true",
                        help="small workloads, LAN only unless --profiles says otherwise")
    parser.add_argument("--profiles", type=csv, default=None, help="LAN,WAN (default both)")
    parser.add_argument("--workloads", type=csv, default=list(ALL_WORKLOADS),
                        help=f"subset of {','.join(ALL_WORKLOADS)}")
    parser.add_argument("--variants", type=csv, default=list(ALL_VARIANTS),
                        help=f"subset of {','.join(ALL_VARIANTS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--workers", type=int, default=4, help="fan-out worker processes")
    parser.add_argument("--worker-warmup", type=float, default=3.0,
                        help="seconds the fan-out workers get to start before the timer runs")
    parser.add_argument("--upload-concurrency", type=int,
                        default=int(SPECS["UPLOAD_CONCURRENCY"].default or "16"),
                        help="ceiling threads and mailferry UPLOAD_CONCURRENCY (default: the product's)")
    parser.add_argument("--wan-delay-ms", type=float, default=15.0, help="delay each way on WAN")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per-variant time limit")
    parser.add_argument("--no-imports", dest="imports", action="store_false",
                        help="skip the cold-import timing")
    parser.add_argument("--keep-state", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.profiles is None:
        args.profiles = ["LAN"] if args.quick else ["LAN", "WAN"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    targets = evaluate_targets(results)
    title = "mailferry benchmark" + (" (quick)" if args.quick else "")
    text = render(results, targets, title)
    sys.stdout.write(text + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    log(f"written to {args.out}")
    return 0
