"""SIGKILL at random points of a poll that moves or deletes a 500-message folder, then a clean
poll: every message stored once, every stored message acted on once, none removed without its blob.

Progress is blobs written plus messages gone from the Inbox (0 to 1,000); each run is killed
after a random (seeded) stretch of it, so kills land in the delivery and in the actions.
MAILFERRY_KILL_POINTS (default 8; 20 for the full treatment) and MAILFERRY_KILL_SEED choose
how many and which. The polls go through the IMAP front, where each command that acts takes
a round trip like Exchange's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from devstack.faults import FaultFront
from devstack.stack import Stack
from tests.integration.helpers import cli_command, cli_environment, container, run_cli
from tests.integration.mail_view import (
    Watcher,
    break_lease,
    folder_ids,
    numbered,
    stored_id_names,
    stored_ids,
)

pytestmark = pytest.mark.usefixtures("identity_endpoint")

TOTAL = 500
KILL_POINTS = int(os.environ.get("MAILFERRY_KILL_POINTS", "8"))
KILL_SEED = int(os.environ.get("MAILFERRY_KILL_SEED", "20261201"))
TARGET = "Archive/mailferry"


class Progress:
    """Blobs written plus messages gone from the Inbox: 0 before the first run, 1,000 when done.
    Once every blob is there only the Inbox is counted (one STATUS), so the short action phase
    is watched closely enough to be killed in."""

    def __init__(self, watcher: Watcher, env: dict[str, str]) -> None:
        self.watcher = watcher
        self.container = container(env)
        self.blobs = 0

    def now(self) -> int:
        if self.blobs < TOTAL and self.container.exists():
            self.blobs = sum(1 for _ in self.container.list_blobs())
        return self.blobs + TOTAL - self.watcher.count("INBOX")


def check_nothing_removed_without_its_blob(watcher: Watcher, env: dict[str, str], seeded: set[str],
                                           moved: bool) -> None:
    gone = seeded - set(watcher.ids("INBOX"))
    stored = stored_id_names(env)
    assert gone <= set(stored), f"removed without a blob: {sorted(gone - set(stored))[:5]}"
    assert set(stored.values()) <= {1}, "a message was stored twice"
    if moved:
        target = watcher.ids(TARGET)
        # Gone from the Inbox means it is in the target (a copy may come before the removal).
        assert gone <= set(target), f"gone but not in {TARGET}: {sorted(gone - set(target))[:5]}"


def kill_at_random_points(stack: Stack, env: dict[str, str], address: str, tmp_path: Path,
                          seed: str) -> list[int]:
    """Start polls and SIGKILL each once the progress reaches the next drawn point; the progress
    at each kill (runs that finished first are not counted). After each: nothing removed
    without its blob."""
    rng = random.Random(seed)  # noqa: S311 - kill points, not secrets
    seeded = set(stored_ids_of_seed(address))
    moved = TARGET in env["AFTER_DELIVERY"]
    watcher = Watcher(stack, address)
    progress = Progress(watcher, env)
    kills = []
    try:
        for _ in range(KILL_POINTS):
            # The next kill comes after a random stretch of progress, so kills spread over
            # the delivery and the actions whatever the machine's speed.
            point = progress.now() + rng.randint(1, 4 * TOTAL // KILL_POINTS)
            with (tmp_path / "stderr.txt").open("w") as errors:
                process = subprocess.Popen(cli_command("poll"), env=cli_environment(env), cwd=tmp_path,
                                           stdout=subprocess.DEVNULL, stderr=errors)
                try:
                    deadline = time.monotonic() + 120
                    while process.poll() is None and time.monotonic() < deadline:
                        if progress.now() >= point:
                            process.send_signal(signal.SIGKILL)
                            break
                finally:
                    if process.poll() is None:
                        process.send_signal(signal.SIGKILL)
                    process.wait(timeout=30)
            if process.returncode == -signal.SIGKILL:
                kills.append(progress.now())
                break_lease(env, address)
            assert process.returncode in (0, -signal.SIGKILL), (tmp_path / "stderr.txt").read_text()[-3000:]
            check_nothing_removed_without_its_blob(watcher, env, seeded, moved)
    finally:
        watcher.close()
    return kills


def stored_ids_of_seed(address: str) -> list[str]:
    tag = address.partition("@")[0]
    return [f"<{tag}-{n}@fabrikam.example>" for n in range(TOTAL)]


def seed_folder(stack: Stack, address: str) -> set[str]:
    stack.append_many(address, "INBOX", (numbered(n, address.partition("@")[0], size=1500)
                                         for n in range(TOTAL)))
    return set(stored_ids_of_seed(address))


def check_converged(stack: Stack, env: dict[str, str], address: str, seeded: set[str], tmp_path: Path) -> None:
    clean = run_cli(env, "poll", cwd=tmp_path, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    stored = stored_ids(env)
    assert set(stored) == seeded and set(stored.values()) == {1}, "each message stored exactly once"
    assert folder_ids(stack, address, "INBOX") == Counter(), "every stored message acted on"
    if TARGET in env["AFTER_DELIVERY"]:
        assert folder_ids(stack, address, TARGET) == stored, "each message moved exactly once"
    else:
        assert folder_ids(stack, address, TARGET) == Counter()


def exchange_env(faults: FaultFront, address: str, action: str) -> dict[str, str]:
    """Settings through the IMAP front, where each command that acts takes a round trip like
    Exchange's (20 ms): the action phase lasts long enough for kills to land inside it."""
    faults.stall(address, on=["MOVE", "COPY", "STORE", "EXPUNGE"], duration=0.02, times=100_000,
                 seconds=900)
    return faults.settings_env(address, storage=False) | {
        "AFTER_DELIVERY": action, "FETCH_BATCH_SIZE": "5", "UPLOAD_CONCURRENCY": "4"}


@pytest.mark.parametrize("action", [f"move:{TARGET}", "delete"])
def test_sigkill_at_random_points_then_a_clean_poll_converges(stack, faults, new_mailbox, tmp_path, action):
    address = new_mailbox()
    seeded = seed_folder(stack, address)
    env = exchange_env(faults, address, action)
    kills = kill_at_random_points(stack, env, address, tmp_path, f"{KILL_SEED}-{action}")
    assert kills, "no run was killed: the kill points all fell after the runs ended"
    check_converged(stack, env, address, seeded, tmp_path)
    assert faults.commands(address).get("COPY", 0) == 0


def test_sigkill_at_random_points_without_move_then_a_clean_poll_converges(
        stack, faults: FaultFront, new_mailbox, tmp_path):
    address = new_mailbox()
    seeded = seed_folder(stack, address)
    faults.hide_move(address, times=None, seconds=900)
    env = exchange_env(faults, address, f"move:{TARGET}")
    kills = kill_at_random_points(stack, env, address, tmp_path, f"{KILL_SEED}-nomove")
    assert kills, "no run was killed: the kill points all fell after the runs ended"
    check_converged(stack, env, address, seeded, tmp_path)
    assert faults.commands(address).get("MOVE", 0) == 0
