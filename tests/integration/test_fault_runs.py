"""Long runs against the fault fronts: many polls under random resets and BYEs, overlapping
poll processes under faults, and a backfill across many time-boxed runs. Small by default;
MAILFERRY_FULL_FAULT_RUNS=1 runs them at full size (1,000 and 20,000 messages)."""

from __future__ import annotations

import random
import subprocess
import time

import pytest

from devstack.faults import FaultFront
from devstack.stack import Stack
from shared.settings import Settings
from shared.wiring import Components
from tests.devstack.raw_clients import message
from tests.integration.fault_runs import (
    MARGIN,
    assert_exactly_once,
    run_measured,
    scaled,
    seed_maildir,
    seeded,
)
from tests.integration.helpers import cli_command, cli_environment, poll

pytestmark = [pytest.mark.usefixtures("identity_endpoint"), pytest.mark.fault_runs]


def arm_random_cuts(faults: FaultFront, address: str, rng: random.Random, *, count: int,
                    within: int) -> None:
    """``count`` resets and BYEs, each at a random offset into a FETCH's message bytes."""
    for _ in range(count):
        at_byte = rng.randrange(1, within)
        if rng.random() < 0.5:
            faults.reset(address, on="FETCH", in_literal=True, at_byte=at_byte)
        else:
            faults.bye(address, on="FETCH", in_literal=True, at_byte=at_byte)


def test_polls_under_resets_and_byes_at_random_offsets_lose_and_duplicate_nothing(
        stack: Stack, faults: FaultFront, new_mailbox):
    polls, count, deadline = scaled(20, 6), scaled(1000, 300), 15
    address = seeded(stack, new_mailbox, count)
    env = faults.settings_env(address, storage=False) | {"POLL_DEADLINE_SECONDS": str(deadline)}
    rng = random.Random(20)  # noqa: S311 - seeded, reproducible fault offsets
    # Message bytes of a 100-message FETCH: the offsets fall anywhere in one.
    batch_bytes = 100 * len(message(0, lines=20))
    for n in range(polls):
        faults.clear()
        stack.append_many(address, "INBOX", [message(count + 10 * n + k) for k in range(10)])
        arm_random_cuts(faults, address, rng, count=rng.randint(1, 6), within=batch_bytes)
        started = time.monotonic()
        poll(env)
        took = time.monotonic() - started
        assert took <= deadline + MARGIN, (n, took)
    faults.clear()
    [clean] = poll(env).mailboxes
    assert clean.ok and clean.complete, clean.error
    assert_exactly_once(stack, env, address)


def test_four_overlapping_poll_processes_under_faults_store_each_message_once(
        stack: Stack, faults: FaultFront, new_mailbox, tmp_path):
    count = scaled(500, 150)
    addresses = [seeded(stack, new_mailbox, count) for _ in range(2)]
    env = faults.settings_env("; ".join(addresses)) | {"FETCH_BATCH_SIZE": "20",
                                                        "UPLOAD_CONCURRENCY": "4"}
    rng = random.Random(4)  # noqa: S311 - seeded, reproducible fault offsets
    for address in addresses:
        arm_random_cuts(faults, address, rng, count=6, within=20 * len(message(0, lines=20)))
    faults.storage_busy(service="blob", method="PUT", times=6)
    faults.storage_reset(service="table", method="PUT", times=2)
    runs = [subprocess.Popen(cli_command("poll"), env=cli_environment(env), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode in (0, 1), err  # a run may give up on a mailbox; never crash
        assert "Traceback" not in err, err
    faults.clear()
    final = poll(env)
    assert all(m.complete for m in final.mailboxes), [m.error for m in final.mailboxes]
    assert_exactly_once(stack, env, *addresses)


def test_a_big_backfill_is_delivered_across_time_boxed_runs_each_resuming_where_the_last_stopped(
        stack: Stack, new_mailbox, tmp_path):
    # Enough that even a fast, idle machine needs several 10-second runs: this one delivered
    # the 6,000 this test used to seed in one run (about 600 small messages a second).
    count = scaled(20_000, 15_000)
    address = new_mailbox()
    seed_maildir(stack, address, (message(n, lines=10) for n in range(count)))
    env = stack.settings_env(address) | {"POLL_DEADLINE_SECONDS": "10"}
    state = Components(Settings.from_mapping(env)).state
    checkpoints, peaks = [0], []
    while checkpoints[-1] < count:
        assert len(checkpoints) <= count // 100, f"{checkpoints[-1]} of {count} after {len(checkpoints) - 1} runs"
        started = time.monotonic()
        code, errors, peak_mb = run_measured(cli_command("poll"), cli_environment(env), tmp_path, 120)
        # The run's box, plus the process's own start-up (imports, token, storage clients).
        assert time.monotonic() - started <= 10 + MARGIN + 15
        assert code == 0, errors
        checkpoint = state.get_checkpoint(address, "INBOX")
        assert checkpoint is not None and checkpoint.last_uid > checkpoints[-1], "a run made no progress"
        checkpoints.append(checkpoint.last_uid)
        peaks.append(peak_mb)
    assert len(checkpoints) > 2, "the backfill should need several time-boxed runs"
    assert_exactly_once(stack, env, address)
    # Memory does not grow with the backlog: no run needs much more than the last, small one.
    assert max(peaks) < 300 and max(peaks) < 1.5 * peaks[-1], peaks
