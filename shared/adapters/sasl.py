"""SASL XOAUTH2, as IMAP and POP3 both send it to Exchange Online."""

from __future__ import annotations

from shared.model import Secret


def xoauth2_string(address: str, token: Secret) -> bytes:
    """The SASL XOAUTH2 initial response (never logged)."""
    return f"user={address}\x01auth=Bearer {token.reveal()}\x01\x01".encode()
