"""What the fault-front scenarios share: seeding, the exactly-once check, the stated margin
past the time box, and their size (small by default, full with MAILFERRY_FULL_FAULT_RUNS=1)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from devstack.dovecot import NOBODY
from devstack.stack import Stack
from shared.model import PollReport
from shared.time_box import READ_GRACE_SECONDS, UPLOAD_GRACE_SECONDS
from tests.devstack.raw_clients import message
from tests.integration.helpers import container, poll

# What a run may take past POLL_DEADLINE_SECONDS: the read grace, the upload grace, then the
# checkpoint and health writes and the goodbye (storage gives up on each within seconds).
MARGIN = READ_GRACE_SECONDS + UPLOAD_GRACE_SECONDS + 10

FULL = os.environ.get("MAILFERRY_FULL_FAULT_RUNS") == "1"


def scaled(full: int, small: int) -> int:
    """The size of a scenario: ``full`` with MAILFERRY_FULL_FAULT_RUNS=1, else ``small``."""
    return full if FULL else small


def seeded(stack: Stack, new_mailbox: Callable[..., str], count: int, *, lines: int = 20) -> str:
    """A new mailbox holding ``count`` messages of about ``lines`` times 71 bytes."""
    address = new_mailbox()
    stack.append_many(address, "INBOX", [message(n, lines=lines) for n in range(count)])
    return address


def stored_digests(env: dict[str, str]) -> list[bytes]:
    """The MD5 of every blob in the mail container, sorted: storage computes it on upload, so
    thousands are compared without downloading them (a blob without one is downloaded)."""
    client = container(env)
    digests = []
    for blob in client.list_blobs():
        md5 = blob.content_settings.content_md5
        if md5 is not None:
            digests.append(bytes(md5))
        else:
            digests.append(hashlib.md5(client.download_blob(blob.name).readall()).digest())  # noqa: S324
    return sorted(digests)


def assert_exactly_once(stack: Stack, env: dict[str, str], *addresses: str) -> None:
    """Every message of the mailboxes' INBOX stored once, byte for byte, and nothing else."""
    expected = sorted(hashlib.md5(raw).digest()  # noqa: S324 - compared with storage's MD5
                      for address in addresses
                      for raw in stack.server_messages(address, "INBOX").values())
    stored = stored_digests(env)
    assert len(stored) == len(expected), (len(stored), len(expected))
    assert stored == expected


class TimedPoll:
    """A poll running in a thread, timed: start it, act while it runs, then ``wait``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.report: PollReport | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._env = env
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TimedPoll:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.report = poll(self._env)
        except BaseException as e:  # handed to the test in wait()
            self.error = e
        finally:
            self.seconds = time.monotonic() - started

    def wait(self, timeout: float) -> PollReport:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the poll was still running after {timeout:g} s"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               running: TimedPoll | None = None) -> None:
    """Wait for ``condition``; fail after ``timeout``, or at once when ``running`` failed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if running is not None and running.error is not None:
            raise running.error
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.05)


def seed_maildir(stack: Stack, address: str, messages: Iterable[bytes]) -> int:
    """Put messages straight into the INBOX maildir of an existing mailbox and have Dovecot
    index them: thousands in seconds, where APPEND takes minutes. Returns how many."""
    maildir = stack.dovecot.mail_root / address.lower() / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp, batch = int(time.time()), uuid.uuid4().hex[:12]
    written: list[Path] = []
    for index, raw in enumerate(messages):
        # Dovecot's own naming: size (S=) and CRLF size (W=); the index orders the UIDs.
        name = f"{stamp}.M{index:06d}P1.fault{batch},S={len(raw)},W={len(raw)}:2,"
        path = maildir / "cur" / name
        path.write_bytes(raw)
        written.append(path)
    if os.geteuid() == 0:  # the mail processes run as nobody
        for path in [maildir.parent, maildir, *(maildir / s for s in ("cur", "new", "tmp")), *written]:
            os.chown(path, NOBODY, NOBODY)
    stack.dovecot.doveadm("force-resync", "-u", address, "INBOX")
    return len(written)


def run_measured(command: list[str], env: dict[str, str], cwd: Path,
                 timeout: float) -> tuple[int, str, float]:
    """Run a process; its exit code, its stderr, and its own peak memory in MB."""
    err_path = cwd / f"stderr-{uuid.uuid4().hex[:8]}.txt"
    with err_path.open("wb") as err:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + timeout
    # The kernel's high-water mark of the process's own memory since it exec'd. (ru_maxrss
    # from wait4 would also count the copy of this test process the child was forked from.)
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, _high_water_kb(process.pid))
        pid, status, _ = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"{command} still running after {timeout:g} s")
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return process.returncode, err_path.read_text(errors="replace"), peak_kb / 1024


def _high_water_kb(pid: int) -> int:
    """VmHWM of a running process, in KiB (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def next_run(env: dict[str, str], *, within: float = 90) -> PollReport:
    """The next timer run: one that finds no mailbox held by the lease of a run that ended
    while storage was not answering (the lease expires within a minute)."""
    deadline = time.monotonic() + within
    while True:
        report = poll(env)
        if all(m.skipped is None for m in report.mailboxes) or time.monotonic() > deadline:
            return report
        time.sleep(2)
