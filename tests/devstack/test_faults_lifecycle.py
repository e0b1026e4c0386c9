"""The fronts as a process of the stack: recorded in stack.json, found again from another
process, stopped by PID with the stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack._proc import ServiceError, proc_start_time
from devstack.stack import REPO_ROOT, Stack


def test_a_loaded_stack_finds_its_running_fronts(stack: Stack, faults):
    assert stack.pids()["faults"] == faults.proc.pid and stack.alive()["faults"]
    again = Stack.load(stack.state_dir).faults()
    assert again.ports == faults.ports
    fault_id = again.throttle("someone@contoso.com", times=2)
    assert [f["id"] for f in faults.live_faults()] == [fault_id]
    with pytest.raises(ServiceError, match="already running"):
        stack.start_faults()


def test_cli_up_with_faults_points_the_settings_at_the_fronts_and_down_stops_them(tmp_path: Path):
    state = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "devstack"]
    up = subprocess.run([*cmd, "up", "--faults", "--state-dir", str(state)], env=env, cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120, check=False)
    assert up.returncode == 0, up.stderr
    other = Stack.load(state)
    try:
        fronts = other.faults()
        assert fronts.alive() and "faults:     imap" in up.stdout
        printed = subprocess.run([*cmd, "env", "--state-dir", str(state)], env=env,
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"export IMAP_PORT={fronts.imap_port}\n" in printed
        assert f"export POP3_PORT={fronts.pop3_port}\n" in printed
        assert f"BlobEndpoint=http://127.0.0.1:{fronts.ports.blob}/" in printed
        assert fronts.live_faults() == []
    finally:
        down = subprocess.run([*cmd, "down", "--state-dir", str(state)], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    assert proc_start_time(other.pids()["faults"]) is None
    assert not state.exists()
