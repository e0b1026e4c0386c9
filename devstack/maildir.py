"""Messages written straight into a Dovecot maildir, for seeding many mailboxes quickly."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path


def write_maildir(maildir: Path, messages: Sequence[bytes], *, owner: int | None = None) -> None:
    """Put ``messages`` into ``maildir/cur`` as unread mail, in order.

    The names carry the size (``S=``) and the CRLF size (``W=``) as Dovecot's own do, and a
    sequence in the microseconds field, so Dovecot gives the messages UIDs in this order
    when it first indexes the folder. ``owner``: uid (and gid) of the mail processes.
    """
    made = []
    for sub in ("", "cur", "new", "tmp"):
        path = maildir / sub
        if not path.exists():
            path.mkdir(mode=0o700, parents=True)
            made.append(path)
    # The host part is unique per call: a second call in the same second adds files.
    stamp, pid, host = int(time.time()), os.getpid(), f"seed{uuid.uuid4().hex[:12]}"
    for index, raw in enumerate(messages):
        crlf_size = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
        path = maildir / "cur" / f"{stamp}.M{index:06d}P{pid}.{host},S={len(raw)},W={crlf_size}:2,"
        path.write_bytes(raw)
        made.append(path)
    if owner is not None:
        if maildir.parent not in made and maildir.parent.stat().st_uid != owner:
            made.append(maildir.parent)
        for path in made:
            os.chown(path, owner, owner)
