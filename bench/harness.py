"""What every measurement of a bench run shares: the stack, seeding, the WAN proxy and
running one measuring subprocess."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

from bench.delay_proxy import read_counts
from bench.measure import RESULT_PREFIX, Measured
from bench.messages import make_message, write_messages
from bench.plan import Workload
from bench.report import Results, median
from devstack.azurite import ACCOUNT, ACCOUNT_KEY
from devstack.stack import Stack
from shared.settings import SETTING_NAMES

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
IDENTITY_VARS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")


def log(text: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


@dataclass
class Seeded:
    """One seeded mailbox (or set of mailboxes) and the bytes it holds."""

    addresses: list[str]
    count: int
    nbytes: int
    messages_file: Path

    @property
    def per_mailbox(self) -> int:
        return self.count // len(self.addresses)


@dataclass
class Endpoints:
    """Where clients connect: straight to the stack (LAN) or through the delay proxy (WAN)."""

    profile: str
    imap_port: int
    connection_string: str
    proxy_control: int | None = None
    # The real ports behind the proxy, by role: how the proxy's counts are keyed.
    targets: dict[str, int] = field(default_factory=dict)
    proxy_pid: int | None = None


def parse_result(out: str, err: str, returncode: int | None) -> Measured:
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Measured.from_json(json.loads(line[len(RESULT_PREFIX):]))
    tail = (err or out).strip().splitlines()[-3:]
    return Measured(False, error=f"exit {returncode}, no result: {' / '.join(tail)}"[:500])


class Harness:
    """The running stack and what the measurements of one run share."""

    def __init__(self, args: argparse.Namespace, stack: Stack, work: Path, results: Results) -> None:
        self.args = args
        self.stack = stack
        self.work = work
        self.results = results
        self.proxies: list[subprocess.Popen[str]] = []
        self.timeout = float(args.timeout)
        self.lan = Endpoints("LAN", stack.imaps_port, stack.storage_connection_string)

    # -- subprocesses ----------------------------------------------------------------------
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
        """Run ``python -m module args`` (one measurement), wait, and read its result line."""
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
        except BaseException:  # the bench itself is ending (SIGTERM, Ctrl-C): the child too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return parse_result(out, err, proc.returncode)

    def run_spec(self, module: str, spec: dict[str, Any], *args: str) -> Measured:
        """Run a module with a private spec file, removed afterwards."""
        path = self.spec_file(spec)
        try:
            return self.run_module(module, *args, str(path))
        finally:
            path.unlink()

    # -- storage ---------------------------------------------------------------------------
    def fresh_storage(self) -> None:
        """An empty Azurite on the same ports, for the next workload (see
        ``Stack.restart_storage``: a long-lived one stalls for minutes late in a full run)."""
        started = time.perf_counter()
        self.stack.restart_storage()
        log(f"storage restarted empty in {time.perf_counter() - started:.1f} s")

    def blob_counts(self, container: str) -> tuple[int, int, dict[str, int]]:
        """(blobs, bytes, blobs per first name segment) in a container, read over LAN."""
        client = ContainerClient.from_connection_string(self.lan.connection_string, container)
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

    def mailferry_env(self, addresses: list[str], ends: Endpoints) -> dict[str, str]:
        """The product's settings for these mailboxes: fresh container and table."""
        env: dict[str, str] = self.stack.settings_env(",".join(addresses))
        env["IMAP_PORT"] = str(ends.imap_port)
        env["MAIL_STORAGE"] = ends.connection_string
        return env

    # -- seeding ---------------------------------------------------------------------------
    def seed(self, workload: Workload, profile: str, count: int) -> Seeded:
        """Mailboxes holding ``count`` messages of the workload, written as maildir files."""
        tag = f"{workload.key}-{profile.lower()}"
        addresses = ([f"b{tag}@bench.example"] if workload.mailboxes == 1 else
                     [f"b{tag}-{i:04d}@bench.example" for i in range(workload.mailboxes)])
        per_box = count // len(addresses)
        started = time.perf_counter()
        mail = {a: [make_message(a.split("@")[0], i, workload.size) for i in range(per_box)]
                for a in addresses}
        self.stack.seed_mailboxes(mail)
        files = self.work / f"messages-{tag}.bin"
        write_messages(files, mail[addresses[0]] if len(addresses) == 1 else [])
        total = sum(len(m) for messages in mail.values() for m in messages)
        log(f"seeded {len(addresses):,} mailbox(es) with {per_box * len(addresses):,} x "
            f"{workload.size:,} B in {time.perf_counter() - started:.1f} s")
        return Seeded(addresses, per_box * len(addresses), total, files)

    # -- WAN -------------------------------------------------------------------------------
    def start_delay_proxy(self, delay_ms: float, *, targets: Sequence[int],
                          http_targets: Sequence[int] = ()) -> dict[str, Any]:
        """A delay proxy process in front of the ports (stopped with the others): what it
        printed when it started (``ports``: target port -> its port; ``control``)."""
        argv = [sys.executable, "-m", "bench.delay_proxy", "--delay-ms", str(delay_ms),
                "--parent-pid", str(os.getpid()), "--max-seconds", str(self.timeout * 8),
                *(a for port in targets for a in ("--target", f"{LOOPBACK}:{port}")),
                *(a for port in http_targets for a in ("--http-target", f"{LOOPBACK}:{port}"))]
        proc = subprocess.Popen(argv, cwd=REPO, env=self.child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        self.proxies.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the delay proxy in front of ports {[*targets, *http_targets]} did not start")
        started: dict[str, Any] = json.loads(line)
        return started

    def start_proxies(self, delay_ms: float) -> Endpoints:
        ports = self.stack.azurite_ports
        started = self.start_delay_proxy(delay_ms, targets=[self.stack.imaps_port],
                                         http_targets=[ports.blob, ports.table])
        mapped = {int(k): int(v) for k, v in started["ports"].items()}
        connection = (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{LOOPBACK}:{mapped[ports.blob]}/{ACCOUNT};"
            f"QueueEndpoint=http://{LOOPBACK}:{ports.queue}/{ACCOUNT};"
            f"TableEndpoint=http://{LOOPBACK}:{mapped[ports.table]}/{ACCOUNT};"
        )
        control = int(started["control"])
        rtt = self.http_rtt(mapped[ports.blob])
        counted = read_counts(control)[str(ports.blob)]["requests"]
        self.results.notes.append(
            f"WAN: a delay proxy (`bench/delay_proxy.py`) adds {delay_ms:g} ms each way per chunk "
            f"in front of Dovecot IMAPS and Azurite blob and table (not the queue, which stands "
            f"for the Functions host's own queue listener); measured HTTP round trip through it "
            f"{rtt * 1000:.1f} ms (direct: {self.http_rtt(ports.blob) * 1000:.1f} ms); "
            f"its request counter saw {counted} of the 5 requests of that measurement. The "
            "identity emulator (token, Key Vault) is not behind it.")
        return Endpoints("WAN", mapped[self.stack.imaps_port], connection, control,
                         {"imap": self.stack.imaps_port, "blob": ports.blob, "table": ports.table},
                         self.proxies[-1].pid)

    def watched(self, ends: Endpoints) -> dict[str, int]:
        """The processes sharing the cores with a measured client, by name: their CPU during
        its timed run shows how busy the machine was."""
        watched = {"Azurite": self.stack.procs["azurite"].pid,
                   "Dovecot": self.stack.procs["dovecot"].pid}
        if ends.proxy_pid is not None:
            watched["WAN proxy"] = ends.proxy_pid
        return watched

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


def status_of(error: str | None) -> str:
    text = error or "unknown error"
    return text if text.startswith("not available") else f"failed: {text}"


def num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"
