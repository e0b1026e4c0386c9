"""The process's TLS contexts: each trust setting's CA bundle is read once, not by every client
and every new connection. Reading a bundle of public roots costs about 50 ms of CPU, and
requests reads the one it is given (``CA_BUNDLE``, or ``verify=<path>``) for each connection
it opens: MSAL's, Key Vault's, the identity's and the storage clients' each paid it."""

from __future__ import annotations

import functools
import os
import ssl
from typing import TYPE_CHECKING, Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH

if TYPE_CHECKING:
    from requests.adapters import _HostParams, _PoolKwargs


@functools.cache
def tls_context(verify: str | bool) -> ssl.SSLContext:
    """The HTTPS context for ``verify``, built once per process and never changed after.

    True trusts what requests trusts by default (its CA bundle, certifi's); a path trusts
    that bundle; False checks nothing, as requests' ``verify=False``.
    """
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH)


@functools.cache
def mail_tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The IMAP and POP3 context: the CA bundle given, else the system's trust store. Not the
    HTTPS one: urllib3 sets options on the contexts it is given, per connection."""
    return ssl.create_default_context(cafile=ca_bundle)


class SharedContextAdapter(HTTPAdapter):
    """requests' adapter, verifying a CA bundle file with the process's context for it instead
    of reading the file again for each new connection (what requests does for a path)."""

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: Any,
                                             cert: Any = None) -> tuple[_HostParams, _PoolKwargs]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if _bundle_file(verify) and "ca_certs" in pool_kwargs:
            del pool_kwargs["ca_certs"]
            pool_kwargs["ssl_context"] = tls_context(verify)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if _bundle_file(verify):
            conn.ca_certs = None  # the pool's context holds the bundle: not loaded into it again


def _bundle_file(verify: Any) -> bool:
    return isinstance(verify, str) and os.path.isfile(verify)


def mount_shared_contexts(session: requests.Session, **adapter_options: Any) -> requests.Session:
    """``session`` with ``SharedContextAdapter`` for http and https (``adapter_options``: its
    pool sizes)."""
    adapter = SharedContextAdapter(**adapter_options)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def sdk_transport_options(verify: str | bool) -> dict[str, Any]:
    """Options for an Azure SDK client or credential built with ``connection_verify=verify``:
    with a CA bundle file, a requests transport whose connections share the process's context
    for it; with the default trust, nothing (requests already builds that context once)."""
    if not isinstance(verify, str):
        return {}
    session = mount_shared_contexts(requests.Session())
    return {"transport": RequestsTransport(session=session, session_owner=False,
                                           connection_verify=verify)}
