"""How a value from the settings may appear in an error message."""

from __future__ import annotations


def quoted(value: object, limit: int = 80) -> str:
    """The value quoted, with control characters and lone surrogates escaped, cut to ``limit``."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")
