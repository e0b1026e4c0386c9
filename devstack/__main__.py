"""``python -m devstack up|down|env|status|demo --state-dir DIR``."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from devstack._proc import ServiceError
from devstack.seed import demo_mailboxes_setting, seed_demo
from devstack.stack import REPO_ROOT, STACK_FILE, Stack

ENV_FILE = "env"


def _write_env(stack: Stack, env: dict[str, str]) -> Path:
    path = stack.state_dir / ENV_FILE
    path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    path.chmod(0o600)
    return path


def _summary(stack: Stack) -> str:
    lines = [
        f"state:      {stack.state_dir}",
        f"identity:   {stack.base_url} (Entra tenant {stack.tenant_id}, Key Vault, MSI)",
        f"imap:       127.0.0.1:{stack.imaps_port} (TLS), 127.0.0.1:{stack.imap_port} (STARTTLS)",
        f"pop3:       127.0.0.1:{stack.pop3s_port} (TLS)",
        f"azurite:    blob {stack.azurite_ports.blob}, queue {stack.azurite_ports.queue}, "
        f"table {stack.azurite_ports.table}",
    ]
    if "faults" in stack.procs:
        fronts = stack.faults()
        lines.append(f"faults:     imap {fronts.imap_port}, pop3 {fronts.pop3_port} (TLS), blob "
                     f"{fronts.ports.blob}, queue {fronts.ports.queue}, table {fronts.ports.table}; "
                     f"control {fronts.base_url} (key in {fronts.directory / 'faults.json'})")
    lines += [f"ca bundle:  {stack.ca_bundle}", f"pids:       {stack.pids()}"]
    return "\n".join(lines)


def cmd_up(state_dir: Path, seed: bool, faults: bool = False) -> int:
    started = time.monotonic()
    stack = Stack.start(state_dir)
    try:
        mailboxes = ""
        if seed:
            counts = seed_demo(stack)
            mailboxes = demo_mailboxes_setting()
            for address, folders in counts.items():
                print(f"seeded {address}: {folders}")
        if faults:
            _write_env(stack, stack.start_faults().settings_env(mailboxes))
        else:
            _write_env(stack, stack.settings_env(mailboxes))
    except BaseException:
        stack.stop(remove_state=True)
        raise
    print(_summary(stack))
    print(f"started in {time.monotonic() - started:.1f}s; settings: {stack.state_dir / ENV_FILE}")
    return 0


def cmd_down(state_dir: Path) -> int:
    if not (state_dir / STACK_FILE).exists():
        print(f"no stack recorded in {state_dir}")
        return 0
    Stack.load(state_dir).stop(remove_state=True)
    print(f"stopped the stack in {state_dir}")
    return 0


def cmd_env(state_dir: Path) -> int:
    path = state_dir / ENV_FILE
    if not path.exists():
        print(f"no stack recorded in {state_dir}: run `python -m devstack up`", file=sys.stderr)
        return 1
    sys.stdout.write(path.read_text())
    return 0


def cmd_status(state_dir: Path) -> int:
    if not (state_dir / STACK_FILE).exists():
        print(f"no stack recorded in {state_dir}")
        return 1
    stack = Stack.load(state_dir)
    print(_summary(stack))
    print(f"alive:      {stack.alive()}")
    return 0 if all(stack.alive().values()) else 1


def cmd_demo(state_dir: Path, keep: bool) -> int:
    """Start a stack, seed the demo mailboxes, run one real poll and list the blobs."""
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    if (state_dir / STACK_FILE).exists():
        cmd_down(state_dir)
    stack = Stack.start(state_dir)
    try:
        counts = seed_demo(stack)
        for address, folders in counts.items():
            print(f"seeded {address}: {folders}")
        settings = stack.settings_env(demo_mailboxes_setting())
        _write_env(stack, settings)
        env = {**os.environ, **settings}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        def mailferry(command: str, title: str) -> int:
            print(f"\n$ mailferry {command}    # {title}")
            result = subprocess.run(
                [sys.executable, "-m", "shared.cli", command], env=env, cwd=stack.state_dir,
                check=False,
            )
            if result.returncode != 0:
                print(f"mailferry {command} exited with {result.returncode}", file=sys.stderr)
            return result.returncode

        if code := mailferry("poll", "delivers every seeded message"):
            return code
        with BlobServiceClient.from_connection_string(settings["MAIL_STORAGE"]) as service:
            container = service.get_container_client(settings["BLOB_CONTAINER"])
            blobs = list(container.list_blobs())
            print(f"\n{len(blobs)} blobs landed in container {settings['BLOB_CONTAINER']}:")
            for blob in blobs:
                print(f"  {blob.size:>9}  {blob.name}")
        for command, title in (("poll", "a second poll: nothing new"),
                               ("status", "checkpoints and health")):
            if code := mailferry(command, title):
                return code
        return 0
    finally:
        if keep:
            print(_summary(stack))
            print(f"stack left running; stop it with: python -m devstack down --state-dir "
                  f"{state_dir}")
        else:
            stack.stop(remove_state=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start the stack detached and write DIR/env"),
        ("down", "stop the stack recorded in DIR and remove DIR"),
        ("env", "print the app settings of the running stack as export lines"),
        ("status", "show endpoints and whether each process is alive"),
        ("demo", "start a stack, seed demo mail, run one poll, list the blobs, stop"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--state-dir", type=Path, default=Path(".devstack"))
        if name == "up":
            sub.add_argument("--seed-demo", action="store_true", help="seed demo mailboxes")
            sub.add_argument("--faults", action="store_true",
                             help="also start the Exchange behaviour layer and point the settings at it")
        if name == "demo":
            sub.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    try:
        if args.command == "up":
            return cmd_up(state_dir, args.seed_demo, args.faults)
        if args.command == "down":
            return cmd_down(state_dir)
        if args.command == "env":
            return cmd_env(state_dir)
        if args.command == "status":
            return cmd_status(state_dir)
        return cmd_demo(state_dir, args.keep)
    except ServiceError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
