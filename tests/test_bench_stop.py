"""Stopping a bench run with SIGTERM stops everything it started: its stack (Dovecot, Azurite,
the identity emulator) and the measurement under way, and removes its state."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name; None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now, by each process's parent."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    waiting = [pid]
    while waiting:
        parent = waiting.pop()
        for child in (p for p, pp in parents.items() if pp == parent and p not in found):
            found.add(child)
            waiting.append(child)
    return found


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has ended: only its status is left


def _measuring(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if b"bench.variant" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_a_sigterm_mid_measurement_leaves_no_process_of_the_run(tmp_path: Path) -> None:
    log = tmp_path / "bench.log"
    with log.open("w") as out:
        bench = subprocess.Popen(
            [sys.executable, "-m", "bench", "--workloads", "5k", "--variants", "naive",
             "--profiles", "LAN", "--no-imports", "--out", str(tmp_path / "results.md")],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        # The stack up and the naive loop measuring (5,000 messages: tens of seconds).
        while not (_measuring(started) and "seeded" in log.read_text()):
            assert time.monotonic() < deadline and bench.poll() is None, log.read_text()
            time.sleep(0.2)
            started = _descendants(bench.pid)
        assert len(started) >= 4, started  # Dovecot, Azurite, the emulator, the measurement
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) == 128 + signal.SIGTERM
        left = [p for p in started if _alive(p)]
        assert not left, (left, log.read_text())
        [work] = re.findall(r"starting the local stack in (\S+)", log.read_text())
        assert not Path(work).exists()  # its state went with it
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
