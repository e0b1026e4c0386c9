"""What each variant's subprocess measures about itself: wall time, CPU, peak RSS, IMAP commands."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack._proc import stat_fields

RESULT_PREFIX = "BENCH-RESULT "


def _status_kb(field_name: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), or None off Linux."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ≥ 4.0: clear_refs ``5``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_kb() -> int:
    value = _status_kb("VmRSS")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kb() -> int:
    """This process's peak RSS: VmHWM (after :func:`reset_peak_rss`), else ru_maxrss."""
    value = _status_kb("VmHWM")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def tree_cpu_seconds(root: int) -> float | None:
    """User + system CPU seconds of ``root`` and every process below it, those that ended
    included (a reaped child's time is in its parent's cutime and cstime, a zombie's in its
    own stat), or None when ``root`` is gone: what Dovecot spent across its master, login
    and per-connection processes."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        if fields is None:
            continue
        pid = int(entry.name)
        times[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        children.setdefault(int(fields[1]), []).append(pid)
    if root not in times:
        return None
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / tick


def trees_cpu_seconds(watch: dict[str, int]) -> dict[str, float | None]:
    """:func:`tree_cpu_seconds` of each watched process, by name."""
    return {name: tree_cpu_seconds(pid) for name, pid in watch.items()}


def cpu_spent(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float]:
    """CPU seconds each watched process tree spent between two readings (those seen in both)."""
    spent: dict[str, float] = {}
    for name, start in before.items():
        end = after.get(name)
        if start is not None and end is not None:
            spent[name] = end - start
    return spent


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Measured:
    """One variant's run, as printed by its subprocess (one JSON line)."""

    ok: bool
    count: int = 0
    bytes: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rss_base_kb: int = 0
    rss_peak_kb: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rss_growth_mb(self) -> float:
        return max(0, self.rss_peak_kb - self.rss_base_kb) / 1024.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measured:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Meter:
    """Measures one block of work in this process.

    ``with Meter() as m: work()`` — RSS growth is the peak during the block minus the
    RSS just before it; CPU is user + system time of the whole process (every thread).
    ``watch`` (name -> PID): other processes whose CPU during the block (theirs and their
    children's) goes into the result as ``others_cpu``, the services sharing the cores.
    """

    def __init__(self, watch: dict[str, int] | None = None) -> None:
        self.watch = dict(watch or {})
        self.others: dict[str, float] = {}
        self._others0: dict[str, float | None] = {}
        self.rss_base_kb = 0
        self.rss_peak_kb = 0
        self.seconds = 0.0
        self.cpu = 0.0
        self._t0 = 0.0
        self._c0 = 0.0

    def __enter__(self) -> Meter:
        with contextlib.suppress(OSError):
            reset_peak_rss()
        self.rss_base_kb = current_rss_kb()
        self._others0 = trees_cpu_seconds(self.watch)
        self._c0 = cpu_seconds()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu = cpu_seconds() - self._c0
        self.rss_peak_kb = max(peak_rss_kb(), self.rss_base_kb)
        self.others = cpu_spent(self._others0, trees_cpu_seconds(self.watch))

    def result(self, count: int, nbytes: int, **extra: Any) -> Measured:
        if self.watch:
            extra["others_cpu"] = dict(self.others)
        return Measured(True, count, nbytes, self.seconds, self.cpu, self.rss_base_kb,
                        self.rss_peak_kb, None, dict(extra))


class CountingServer:
    """Delegates to the product's mail server and keeps every session it opened, to read
    the product's own per-session command counter (``ImapSession.commands``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sessions: list[Any] = []

    @contextlib.contextmanager
    def open(self, address: str, token: Any, **options: Any) -> Iterator[Any]:
        with self.inner.open(address, token, **options) as session:
            self.sessions.append(session)
            yield session

    def commands(self) -> int:
        """IMAP commands counted by the sessions opened so far."""
        return sum(int(getattr(s, "commands", 0)) for s in self.sessions)


def child_main(run: Callable[[dict[str, Any]], Measured], argv: list[str] | None) -> int:
    """A measuring child process: read the spec file named by the first argument, run, and
    print the result on one line the parent reads (a failure is a result too)."""
    args = sys.argv[1:] if argv is None else argv
    spec: dict[str, Any] = json.loads(Path(args[0]).read_text())
    try:
        result = run(spec)
    except Exception as e:
        traceback.print_exc()
        result = Measured(False, error=f"{type(e).__name__}: {e}"[:500])
    sys.stdout.write(RESULT_PREFIX + json.dumps(result.to_json()) + "\n")
    sys.stdout.flush()
    return 0
