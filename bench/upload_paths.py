"""Client CPU of the ways to write one small blob, against the local Azurite.

``python -m bench.upload_paths``: the same 5 KB bytes, N uploads from 8 and 16 concurrent
workers, through (1) ``ContainerClient.upload_blob`` (sync, threads), (2) the async client's
``upload_blob`` (aiohttp, tasks), and (3) one Put Blob request sent through the container's
own SDK pipeline (what mailferry does). Prints msgs/s and client CPU ms per upload.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from requests.adapters import HTTPAdapter

from devstack.stack import Stack
from shared.adapters.blob import BlobMessageSink

BODY = os.urandom(2560).hex().encode()
METADATA = {"mailbox": "ops@contoso.com", "folder": "INBOX", "uidvalidity": "1", "uid": "1",
            "internal_date": "2026-11-28T10:00:00+00:00", "message_id": "%3Cm%40contoso.com%3E",
            "size": str(len(BODY)), "dedup_key": "mid-" + "0" * 64}
EML = ContentSettings(content_type="message/rfc822")


def _container(connection_string: str, name: str, pool: int) -> ContainerClient:
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", HTTPAdapter(pool_maxsize=pool))
    service = BlobServiceClient.from_connection_string(
        connection_string, transport=RequestsTransport(session=session, session_owner=False))
    container = service.get_container_client(name)
    container.create_container()
    return container


def _threads(count: int, workers: int, upload: Callable[[int], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(upload, range(count)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def _tasks(connection_string: str, name: str, count: int, workers: int) -> tuple[float, float]:
    async with AsyncBlobServiceClient.from_connection_string(connection_string) as service:
        container = service.get_container_client(name)
        await container.create_container()
        gate = asyncio.Semaphore(workers)

        async def one(i: int) -> None:
            async with gate:
                await container.upload_blob(f"m/{i:08d}.eml", BODY, overwrite=False,
                                            metadata=METADATA, content_settings=EML)

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upload_paths", description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    stack = Stack.start(Path(tempfile.mkdtemp(prefix="mailferry-upload-paths-")))
    try:
        conn = stack.storage_connection_string
        print("| path | workers | msgs/s | client CPU ms/upload |")
        print("| --- | --- | --- | --- |")
        for round_ in range(2):
            for workers in (8, 16):
                tag = f"{round_}{workers}"
                sdk = _container(conn, f"sdk-{tag}", workers)
                sink = BlobMessageSink(_container(conn, f"put-{tag}", workers))

                def with_upload_blob(i: int, container: ContainerClient = sdk) -> None:
                    container.upload_blob(f"m/{i:08d}.eml", BODY, overwrite=False,
                                          metadata=METADATA, content_settings=EML)

                def with_put_blob(i: int, target: BlobMessageSink = sink) -> None:
                    target.create(f"m/{i:08d}.eml", BODY, METADATA)

                results = {
                    "upload_blob (sync, threads)": _threads(args.count, workers, with_upload_blob),
                    "upload_blob (async, aiohttp)": asyncio.run(
                        _tasks(conn, f"aio-{tag}", args.count, workers)),
                    "Put Blob via the pipeline (mailferry)": _threads(args.count, workers, with_put_blob),
                }
                for path, (wall, cpu) in results.items():
                    print(f"| {path} | {workers} | {args.count / wall:.0f} | {cpu * 1000 / args.count:.2f} |")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
