"""The limits a poller works against, each measured alone in its own process.

    python -m bench.limits SPEC.json

``storage``: the same bytes uploaded by every client here (the SDK's ``upload_blob``, one
Put Blob request through the container client's own pipeline on requests or on mailferry's
own storage transport and, for a single large message, blocks staged from several threads
then committed), at each thread count of the spec; the fastest is run on the whole workload.
``imap``: ``UID FETCH BODY.PEEK[]`` in batches of 100 over one connection, no storage.
Prints one ``BENCH-RESULT {json}`` line.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import ssl
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest import HttpRequest
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient
from requests.adapters import HTTPAdapter

from bench.measure import Measured, Meter, child_main
from bench.messages import read_messages
from bench.plan import LimitConfig, best_config, limit_configs, sample_count
from shared.storage_clients import pooled_transport

Spec = dict[str, Any]
FETCH_BATCH = 100
BLOCK_BYTES = 8 * 1024 * 1024


def _container(connection_string: str, name: str, pool: int, *, pooled: bool = False) -> ContainerClient:
    """A fresh container behind a pool of ``pool`` connections; no per-request env lookups.
    ``pooled``: through mailferry's own storage transport instead of requests."""
    if pooled:
        transport: HttpTransport = pooled_transport(pool + 4)  # type: ignore[type-arg]
    else:
        session = requests.Session()
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool + 4)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        transport = RequestsTransport(session=session, session_owner=False)
    service = BlobServiceClient.from_connection_string(connection_string, transport=transport)
    container = service.get_container_client(name)
    container.create_container()
    return container


def _put_blob(container: ContainerClient, name: str, data: bytes, *, streamed: bool = False) -> None:
    """One create-only Put Blob request through the container client's own pipeline;
    ``streamed`` sends the body in pieces of BLOCK_BYTES, as a reader would produce them."""
    headers = {"x-ms-version": container.api_version, "x-ms-blob-type": "BlockBlob",
               "x-ms-blob-content-type": "message/rfc822", "If-None-Match": "*"}
    body: bytes | _Pieces = data
    if streamed:
        headers["Content-Length"] = str(len(data))
        body = _Pieces(data, BLOCK_BYTES)
    request = HttpRequest("PUT", f"{container.url}/{quote(name, safe='/~')}", headers=headers,
                          content=body)
    response = container._pipeline.run(request).http_response
    if response.status_code != 201:
        raise RuntimeError(f"Put Blob {name}: {response.status_code} "
                           f"{response.headers.get('x-ms-error-code')}")


class _Pieces:
    """A body sent in pieces, its length known up front (no chunked encoding)."""

    def __init__(self, data: bytes, piece: int) -> None:
        self._view = memoryview(data)
        self._piece = piece

    def __len__(self) -> int:
        return len(self._view)

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self._view), self._piece):
            yield bytes(self._view[start:start + self._piece])


def _staged(container: ContainerClient, name: str, data: bytes, threads: int) -> None:
    """Blocks of BLOCK_BYTES staged from ``threads`` threads, then one Put Block List."""
    blob = container.get_blob_client(name)
    offsets = range(0, len(data), BLOCK_BYTES)
    ids = [base64.b64encode(f"{i:08d}".encode()).decode() for i in range(len(offsets))]
    view = memoryview(data)

    def stage(item: tuple[str, int]) -> None:
        block_id, start = item
        chunk = view[start:start + BLOCK_BYTES]
        # With Content-MD5, as mailferry stages: Azurite then skips the CRC64 it computes
        # for a block sent without one, which made this path three times slower there.
        blob.stage_block(block_id, bytes(chunk), length=len(chunk), validate_content=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(stage, zip(ids, offsets, strict=True)))
    blob.commit_block_list([BlobBlock(i) for i in ids])


def upload_all(config: LimitConfig, container: ContainerClient,
               messages: Sequence[bytes]) -> int:
    """Upload every message with one client and thread count; the bytes written."""
    names = [f"limit/INBOX/1/{i + 1}.eml" for i in range(len(messages))]
    one: Callable[[tuple[str, bytes]], None]
    if config.method == "put_blob_stream":
        for name, data in zip(names, messages, strict=True):
            _put_blob(container, name, data, streamed=True)
        return sum(len(m) for m in messages)
    if config.method == "staged_blocks":
        for name, data in zip(names, messages, strict=True):
            _staged(container, name, data, config.threads)
        return sum(len(m) for m in messages)
    if len(messages) == 1 and config.method == "upload_blob":
        container.upload_blob(names[0], messages[0], overwrite=False,
                              max_concurrency=config.threads)
        return len(messages[0])
    if config.method == "upload_blob":
        def one(item: tuple[str, bytes]) -> None:
            container.upload_blob(item[0], item[1], overwrite=False)
    else:
        def one(item: tuple[str, bytes]) -> None:
            _put_blob(container, item[0], item[1])
    with ThreadPoolExecutor(config.threads) as pool:
        list(pool.map(one, zip(names, messages, strict=True)))
    return sum(len(m) for m in messages)


def _timed(spec: Spec, config: LimitConfig, messages: Sequence[bytes]) -> tuple[Measured, str]:
    name = f"limit-{uuid.uuid4().hex[:12]}"
    container = _container(spec["connection_string"], name, config.threads,
                           pooled=config.method == "put_blob_pooled")
    with Meter(spec.get("watch")) as meter:
        nbytes = upload_all(config, container, messages)
    return meter.result(len(messages), nbytes), name


def run_storage(spec: Spec) -> Measured:
    messages = list(read_messages(Path(spec["messages_file"])))
    size = len(messages[0]) if messages else 0
    configs = limit_configs(len(messages), size, [int(t) for t in spec["threads"]])
    sample = messages[:sample_count(len(messages), size)]
    sweep: list[dict[str, Any]] = []
    measured: dict[LimitConfig, tuple[Measured, str]] = {}
    for config in configs:
        result, container = _timed(spec, config, sample)
        measured[config] = (result, container)
        sweep.append({"method": config.method, "threads": config.threads,
                      "messages": result.count, "bytes": result.bytes,
                      "seconds": result.seconds, "cpu_seconds": result.cpu_seconds})
    best = best_config({c: m.seconds for c, (m, _) in measured.items()})
    final, container = measured[best]
    if len(messages) == 1:
        # One large blob per configuration: give the memory of the others back to Azurite
        # (a handful of deletes, not the thousands that upset its garbage collector).
        for config, (_, name) in measured.items():
            if config != best:
                ContainerClient.from_connection_string(
                    spec["connection_string"], name).delete_container()
    if len(sample) < len(messages):
        final, container = _timed(spec, best, messages)
    final.extra |= {"sweep": sweep, "method": best.method, "threads": best.threads,
                    "sample": len(sample), "container": container}
    return final


def imap_login(spec: Spec) -> imaplib.IMAP4_SSL:
    """imaplib over TLS, logged in with XOAUTH2 as the spec's address and token."""
    context = ssl.create_default_context(cafile=spec["ca_file"])
    conn = imaplib.IMAP4_SSL(spec["imap_host"], int(spec["imap_port"]), ssl_context=context,
                             timeout=300)
    first = f"user={spec['address']}\x01auth=Bearer {spec['token']}\x01\x01".encode()
    answers = iter([first])
    conn.authenticate("XOAUTH2", lambda _: next(answers, b""))
    return conn


def run_imap(spec: Spec) -> Measured:
    """Batched UID FETCH of every message in the INBOX over one connection; no storage."""
    count = total = 0
    with Meter(spec.get("watch")) as meter:
        conn = imap_login(spec)
        try:
            typ, data = conn.select('"INBOX"', readonly=True)
            if typ != "OK":
                raise RuntimeError(f"EXAMINE failed: {data!r}")
            typ, data = conn.uid("SEARCH", "ALL")
            if typ != "OK" or not data or data[0] is None:
                raise RuntimeError(f"UID SEARCH failed: {data!r}")
            uids = data[0].decode().split()
            for start in range(0, len(uids), FETCH_BATCH):
                batch = ",".join(uids[start:start + FETCH_BATCH])
                typ, items = conn.uid("FETCH", batch, "(BODY.PEEK[])")
                if typ != "OK":
                    raise RuntimeError(f"UID FETCH failed: {items!r}"[:300])
                for item in items:
                    if isinstance(item, tuple):
                        count += 1
                        total += len(item[1])
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()
    return meter.result(count, total, batch=FETCH_BATCH)


def main(argv: list[str] | None = None) -> int:
    return child_main(lambda spec: run_imap(spec) if spec["kind"] == "imap" else run_storage(spec), argv)


if __name__ == "__main__":
    raise SystemExit(main())
