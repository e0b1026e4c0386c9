"""Shared Key signing for the blob service that sorts each set of header names once.

The SDK's policy sorts the ``x-ms-`` headers of every request with a Python comparison of
the service's collation, one character at a time: a tenth of a small upload's client CPU
with a connection string. Every message's Put Blob carries the same header names, so the
order found for a set of names is kept and reused. The order itself still comes from the
SDK's own sort, and the signature from the SDK's policy. This leans on the SDK's internals
(``_shared.authentication``), so azure-storage-blob is pinned and
``tests/test_shared_key.py`` fails if they change.
"""

from __future__ import annotations

import functools
from typing import Any

from azure.storage.blob._shared.authentication import (
    SharedKeyCredentialPolicy,
    _storage_header_sort,
)

_ORDERS = 256  # distinct header-name sets remembered: a few per kind of request


@functools.lru_cache(maxsize=_ORDERS)
def canonical_order(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` (lower case, distinct) in the order the service signs them."""
    return tuple(name for name, _ in _storage_header_sort([(name, "") for name in names]))


class SortedHeadersSharedKey(SharedKeyCredentialPolicy):
    """The SDK's Shared Key policy, with each set of header names sorted once."""

    @staticmethod
    def _get_canonicalized_headers(request: Any) -> str:
        headers = [(name.lower(), value) for name, value in request.http_request.headers.items()
                   if name.startswith("x-ms-")]
        values = dict(headers)
        if len(values) != len(headers):  # a name twice: the SDK's own handling, uncached
            signed: str = SharedKeyCredentialPolicy._get_canonicalized_headers(request)  # type: ignore[no-untyped-call]
            return signed
        return "".join(f"{name}:{values[name]}\n" for name in canonical_order(tuple(values))
                       if values[name] is not None)


def sorted_headers_key(credential: object) -> SortedHeadersSharedKey | None:
    """The same account key, signing with less CPU, when ``credential`` is the SDK's Shared Key
    policy (a connection string with a key); None for any other credential."""
    if isinstance(credential, SharedKeyCredentialPolicy):
        return SortedHeadersSharedKey(credential.account_name,  # type: ignore[no-untyped-call]
                                      credential.account_key)
    return None
