"""Runs a command and prints its resource usage as one JSON line.

    python -m bench.launch [--timeout SECONDS] -- COMMAND ARGS...

A process started from a large one inherits that process's peak RSS as its own
``ru_maxrss`` floor (the kernel records the old memory map's peak at ``exec``); this small
launcher, with few imports, lets ``ru_maxrss`` of its children say what the command itself
used. CPU is user + system time of the command and every descendant it waited for.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    timeout: float | None = None
    if args[:1] == ["--timeout"]:
        timeout, args = float(args[1]), args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    started = time.perf_counter()
    try:
        # On timeout, run() kills the command (its own child, by PID) and reaps it.
        proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)
        returncode, output = proc.returncode, (proc.stderr or proc.stdout).strip()[-500:]
    except subprocess.TimeoutExpired:
        returncode, output = -9, f"timed out after {timeout} s"
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stdout.write(json.dumps({
        "returncode": returncode, "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss,
        "output": output,
    }) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
