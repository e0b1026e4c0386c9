"""Demo mail: varied RFC 5322 messages and three seeded mailboxes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Protocol

DEMO_DOMAIN = "contoso.com"
DEMO_MAILBOXES: dict[str, tuple[str, ...]] = {
    f"ops@{DEMO_DOMAIN}": ("INBOX",),
    f"billing@{DEMO_DOMAIN}": ("INBOX", "Invoices"),
    f"support@{DEMO_DOMAIN}": ("INBOX",),
}
_BASE_DATE = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)


class Seedable(Protocol):
    def add_mailbox(self, address: str, *, granted: bool = True) -> None: ...
    def create_folder(self, address: str, folder: str) -> None: ...
    def append(self, address: str, folder: str, raw: bytes) -> None: ...


def demo_mailboxes_setting() -> str:
    """The MAILBOXES setting for the demo mailboxes (with their folders)."""
    return ", ".join(
        address if folders == ("INBOX",) else f"{address}:{'|'.join(folders)}"
        for address, folders in DEMO_MAILBOXES.items()
    )


def _message(index: int, subject: str, sender: Address, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(_BASE_DATE + timedelta(minutes=7 * index))
    msg["Message-ID"] = f"<demo-{index}.{_BASE_DATE:%Y%m%d}@mail.fabrikam.example>"
    return msg


def _plain() -> bytes:
    msg = _message(0, "Nightly job report", Address("Scheduler", "jobs", "fabrikam.example"),
                   f"ops@{DEMO_DOMAIN}")
    msg.set_content("All 42 jobs finished.\n\nSlowest: export-ledger (12 min).\n")
    return msg.as_bytes(policy=SMTP)


def _html() -> bytes:
    msg = _message(1, "Your weekly digest", Address("Digest", "news", "fabrikam.example"),
                   f"ops@{DEMO_DOMAIN}")
    msg.set_content("Your weekly digest: 3 new articles.\n")
    msg.add_alternative(
        "<html><body><h1>Weekly digest</h1><p>3 new <b>articles</b>.</p></body></html>\n",
        subtype="html",
    )
    return msg.as_bytes(policy=SMTP)


def _with_attachments() -> bytes:
    msg = _message(2, "Invoice INV-2025-0042", Address("Accounts", "ar", "fabrikam.example"),
                   f"billing@{DEMO_DOMAIN}")
    msg.set_content("Please find invoice INV-2025-0042 attached.\n")
    rng = random.Random(42)  # noqa: S311 - deterministic filler, not security
    pdf = b"%PDF-1.4\n" + bytes(rng.getrandbits(8) for _ in range(20_000)) + b"\n%%EOF\n"
    msg.add_attachment(pdf, maintype="application", subtype="pdf",
                       filename="INV-2025-0042.pdf")
    msg.add_attachment("item;qty;price\nwidget;3;9.99\n", subtype="csv",
                       filename="lines.csv")
    return msg.as_bytes(policy=SMTP)


def _non_ascii() -> bytes:
    msg = _message(3, "Réclamation n° 17 \u2013 Lieferung verspätet \u2713",
                   Address("Zoë Müller-Ødegård", "zoe", "fabrikam.example"),
                   f"support@{DEMO_DOMAIN}")
    msg.set_content("Grüße aus Zürich — la commande n'est pas arrivée. 你好\n")
    return msg.as_bytes(policy=SMTP)  # the policy encodes headers as RFC 2047 words


def _without_message_id() -> bytes:
    msg = _message(4, "No Message-ID here", Address("Legacy", "legacy", "fabrikam.example"),
                   f"support@{DEMO_DOMAIN}")
    del msg["Message-ID"]
    msg.set_content("Sent by an old system that does not add a Message-ID.\n")
    return msg.as_bytes(policy=SMTP)


def _malformed() -> bytes:
    # Declares a boundary that never occurs, has no closing delimiter and mixes bare LF
    # with CRLF line ends.
    return (
        b"From: Broken Mailer <broken@fabrikam.example>\r\n"
        b"To: support@contoso.com\r\n"
        b"Subject: Malformed MIME\r\n"
        b"Date: Mon, 03 Mar 2025 10:15:00 +0000\r\n"
        b"Message-ID: <malformed-1@fabrikam.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="never-used"\n'
        b"\r\n"
        b"--wrong-boundary\n"
        b"Content-Type: text/plain\r\n"
        b"\n"
        b"bare LF line\nand a CRLF line\r\n"
    )


def _large(size: int = 5 * 1024 * 1024) -> bytes:
    msg = _message(5, "Quarterly export (large)", Address("Exports", "export", "fabrikam.example"),
                   f"billing@{DEMO_DOMAIN}")
    msg.set_content("The quarterly export is attached.\n")
    rng = random.Random(5)  # noqa: S311 - deterministic filler, not security
    payload = rng.randbytes(size * 3 // 4)  # about ``size`` once base64-encoded
    msg.add_attachment(payload, maintype="application", subtype="octet-stream",
                       filename="export.bin")
    return msg.as_bytes(policy=SMTP)


def demo_messages() -> list[bytes]:
    """Plain, HTML, attachments, RFC 2047 headers, no Message-ID, malformed, ~5 MB."""
    return [
        _plain(), _html(), _with_attachments(), _non_ascii(), _without_message_id(),
        _malformed(), _large(),
    ]


def seed_demo(stack: Seedable) -> dict[str, dict[str, int]]:
    """Create the demo mailboxes, grant the app, and seed them; returns counts per folder."""
    plain, html, attach, non_ascii, no_id, malformed, large = demo_messages()
    plan: dict[str, dict[str, list[bytes]]] = {
        f"ops@{DEMO_DOMAIN}": {"INBOX": [plain, html]},
        f"billing@{DEMO_DOMAIN}": {"INBOX": [attach, large], "Invoices": [attach]},
        f"support@{DEMO_DOMAIN}": {"INBOX": [non_ascii, no_id, malformed]},
    }
    counts: dict[str, dict[str, int]] = {}
    for address, folders in plan.items():
        stack.add_mailbox(address)
        for folder, messages in folders.items():
            if folder != "INBOX":
                stack.create_folder(address, folder)
            for raw in messages:
                stack.append(address, folder, raw)
            counts.setdefault(address, {})[folder] = len(messages)
    return counts
