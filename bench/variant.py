"""One variant of one workload, run in its own process and measuring itself.

    python -m bench.variant SPEC.json

prints one line ``BENCH-RESULT {json}`` (see :class:`bench.measure.Measured`). The
variants: ``naive`` (one FETCH and one sequential upload per message), ``mailferry`` (the
product end to end; ``notices`` is the same with NOTIFY_QUEUE set) and ``getmail6`` (the
peer, delivering into a Maildir). The limits each side alone reaches are measured by
:mod:`bench.limits`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import imaplib
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from requests.adapters import HTTPAdapter

from bench.limits import imap_login
from bench.measure import CountingServer, Measured, Meter, child_main
from shared.settings import Settings
from shared.wiring import Components

Spec = dict[str, Any]


def _blob_service(connection_string: str, pool: int) -> Any:
    """A BlobServiceClient whose connection pool holds ``pool`` connections."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool + 4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return BlobServiceClient.from_connection_string(
        connection_string, transport=RequestsTransport(session=session, session_owner=False))


# -- (b) the naive loop ------------------------------------------------------------------
def run_naive(spec: Spec) -> Measured:
    container = _blob_service(spec["connection_string"], 1).get_container_client(
        spec["container"])
    container.create_container()
    address = spec["address"]
    count = total = 0
    with Meter(spec.get("watch")) as meter:
        conn = imap_login(spec)
        try:
            typ, data = conn.select('"INBOX"', readonly=True)
            if typ != "OK":
                raise RuntimeError(f"EXAMINE failed: {data!r}")
            found = conn.response("UIDVALIDITY")[1]
            uidvalidity = found[0].decode() if found and isinstance(found[0], bytes) else "0"
            typ, data = conn.uid("SEARCH", "ALL")
            if typ != "OK" or not data or data[0] is None:
                raise RuntimeError(f"UID SEARCH failed: {data!r}")
            for uid in data[0].decode().split():
                typ, items = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((i[1] for i in items if isinstance(i, tuple)), None)
                if typ != "OK" or raw is None:
                    raise RuntimeError(f"UID FETCH {uid!r} failed: {items!r}")
                name = f"{address}/INBOX/{uidvalidity}/{uid}.eml"
                container.upload_blob(name, raw, overwrite=False)
                count += 1
                total += len(raw)
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()
    return meter.result(count, total)


# -- (c) mailferry end to end -------------------------------------------------------------
def run_mailferry(spec: Spec) -> Measured:
    env: dict[str, str] = spec["env"]
    os.environ.update({k: env[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER") if k in env})
    settings = Settings.from_mapping(env)
    t0 = time.perf_counter()
    poller = Components(settings).poller
    setup_seconds = time.perf_counter() - t0
    if spec.get("warm"):
        poller.tokens.get_token()  # a warm instance has its token cached
    counting = CountingServer(poller.server)
    poller = dataclasses.replace(poller, server=counting)
    with Meter(spec.get("watch")) as meter:
        report = poller.run(settings.mailboxes)
    failed = [f"{m.address}: {m.error_type}: {m.error}" for m in report.failed]
    extra: dict[str, Any] = {
        "setup_seconds": setup_seconds,
        "settings": {
            "FETCH_BATCH_SIZE": settings.poll.fetch_batch_size,
            "UPLOAD_CONCURRENCY": settings.poll.upload_concurrency,
            "MAX_CONCURRENT_MAILBOXES": settings.poll.max_concurrent_mailboxes,
        },
        "failed": failed[:5],
        "imap_commands": counting.commands(),
    }
    if settings.notify_queue:
        extra["notices"] = _queued(env["MAIL_STORAGE"], settings.notify_queue)
    result = meter.result(report.delivered, sum(m.bytes_delivered for m in report.mailboxes),
                          **extra)
    if failed:
        result.ok = False
        result.error = "; ".join(failed[:3])
    elif settings.notify_queue and extra["notices"] != report.delivered:
        result.ok = False
        result.error = f"{extra['notices']} notices queued for {report.delivered} messages"
    return result


def _queued(connection_string: str, queue: str) -> int:
    """How many messages a queue holds (after the timed run)."""
    properties = QueueClient.from_connection_string(connection_string, queue).get_queue_properties()
    return int(properties.approximate_message_count or 0)


# -- (d) getmail6 --------------------------------------------------------------------------
GETMAILRC = """\
[retriever]
type = SimpleIMAPSSLRetriever
server = {host}
port = {port}
username = {address}
use_xoauth2 = True
password_command = ("/bin/cat", "{token_file}")
ca_certs = {ca_file}
mailboxes = ("INBOX",)

[destination]
type = Maildir
path = {maildir}/
{user_line}

[options]
read_all = true
delete = false
verbose = 0
message_log_verbose = false
"""


def _maildir_files(maildir: Path) -> tuple[int, int]:
    count = total = 0
    for sub in ("new", "cur"):
        for entry in (maildir / sub).iterdir():
            count += 1
            total += entry.stat().st_size
    return count, total


def _launched(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m bench.launch -- ...`` and return what it measured."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"launcher failed: {proc.stderr.strip()[-300:]}")
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def run_getmail6(spec: Spec) -> Measured:
    getmail = Path(spec["getmail"])
    work = Path(spec["work_dir"])
    maildir = work / "Maildir"
    state = work / "getmail"
    for path in (work, maildir, maildir / "new", maildir / "cur", maildir / "tmp", state):
        path.mkdir(exist_ok=True)
        path.chmod(0o755)
    user_line = ""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        user_line = "user = nobody"
    token_file = state / "token"
    token_file.write_text(spec["token"])
    token_file.chmod(0o600)
    (state / "getmailrc").write_text(GETMAILRC.format(
        host=spec["imap_host"], port=spec["imap_port"], address=spec["address"],
        token_file=token_file, ca_file=spec["ca_file"], maildir=maildir, user_line=user_line))
    timeout = float(spec.get("timeout", 1800))
    launch = [sys.executable, "-m", "bench.launch", "--timeout", str(timeout), "--",
              sys.executable, str(getmail)]
    # The interpreter and getmail's modules, loaded and gone: the RSS of a bare getmail.
    bare = _launched([*launch, "--version"], 60.0)
    run = _launched([*launch, "--getmaildir", str(state), "--rcfile", "getmailrc", "--quiet"],
                    timeout + 30)
    count, total = _maildir_files(maildir)
    result = Measured(run["returncode"] == 0, count, total, float(run["seconds"]),
                      float(run["cpu_seconds"]), int(bare["maxrss_kb"]), int(run["maxrss_kb"]),
                      extra={"returncode": run["returncode"]})
    if run["returncode"] != 0:
        result.error = str(run["output"])
    return result


VARIANTS: dict[str, Callable[[Spec], Measured]] = {
    "naive": run_naive,
    "mailferry": run_mailferry,
    "notices": run_mailferry,  # with NOTIFY_QUEUE set in its env
    "getmail6": run_getmail6,
}


def main(argv: list[str] | None = None) -> int:
    return child_main(lambda spec: VARIANTS[spec["variant"]](spec), argv)


if __name__ == "__main__":
    raise SystemExit(main())
