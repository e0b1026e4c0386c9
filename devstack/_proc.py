"""Process and port helpers shared by the services of the stack."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service of the stack failed to start; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def can_connect(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def proc_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (to detect PID reuse)."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass
class Proc:
    """A started service process, identified by PID and start time."""

    name: str
    pid: int
    start_time: int | None
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.start_time is None:
            return proc_start_time(self.pid) is not None
        return proc_start_time(self.pid) == self.start_time

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; always reaps our children."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        else:
            deadline = time.monotonic() + 5
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def to_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "start_time": self.start_time, "log": str(self.log)}

    @classmethod
    def from_dict(cls, name: str, data: dict[str, object]) -> Proc:
        start = data.get("start_time")
        return cls(
            name=name,
            pid=int(str(data["pid"])),
            start_time=int(str(start)) if start is not None else None,
            log=Path(str(data["log"])),
        )


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start ``argv`` in its own session with output to ``log``; it outlives its parent."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out, open(os.devnull, "rb") as devnull:
        popen = subprocess.Popen(
            list(argv),
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    return Proc(name=name, pid=popen.pid, start_time=proc_start_time(popen.pid), log=log,
                popen=popen)


def wait_until(
    proc: Proc, ready: Callable[[], bool], timeout: float, what: str
) -> None:
    """Poll ``ready`` until it is true; raise with the log tail when the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not proc.alive():
            raise ServiceError(
                f"{proc.name} exited while waiting for {what}; log {proc.log}:\n{tail(proc.log)}"
            )
        time.sleep(0.05)
    raise ServiceError(
        f"{proc.name} not ready ({what}) after {timeout:.0f}s; log {proc.log}:\n{tail(proc.log)}"
    )
