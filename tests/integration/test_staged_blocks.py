"""A message written piece by piece (``BlobMessageSink.create_from_chunks``) on real Azurite:
several blocks staged while the next piece is read, and a blob only once every piece is in."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from devstack.stack import Stack
from shared.adapters.blob import BLOCKS_IN_FLIGHT, BlobMessageSink


class ReaderFailed(Exception):
    """Stands for the mail server failing partway (a drop, an expunged message)."""


@pytest.fixture
def blobs(stack: Stack) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    client = service.get_container_client(f"staged-{uuid.uuid4().hex[:12]}")
    client.create_container()
    return client


def pieces(sizes: list[int], *, fail_after: int | None = None) -> Iterator[bytes]:
    for index, size in enumerate(sizes):
        if index == fail_after:
            raise ReaderFailed
        yield os.urandom(size)


def test_every_piece_lands_in_order_with_the_metadata_asked_for_last(blobs: ContainerClient):
    sent: list[bytes] = []
    read: list[int] = []

    def source() -> Iterator[bytes]:
        for piece in pieces([1, 300_000, 5, 2 * 1024 * 1024, 0, 77, 1024 * 1024, 3]):
            sent.append(piece)
            yield piece

    def metadata() -> dict[str, str]:
        read.append(len(sent))
        return {"size": str(sum(len(p) for p in sent))}

    assert BlobMessageSink(blobs).create_from_chunks("a/1.eml", source(), metadata) is True
    assert read == [8]  # asked once, after the last piece
    blob = blobs.get_blob_client("a/1.eml")
    assert blob.download_blob().readall() == b"".join(sent)
    properties = blob.get_blob_properties()
    assert properties.metadata == {"size": str(properties.size)}
    assert properties.content_settings.content_type == "message/rfc822"


def test_a_reader_failing_after_more_pieces_than_are_in_flight_leaves_no_blob(blobs: ContainerClient):
    sink = BlobMessageSink(blobs)
    with pytest.raises(ReaderFailed):  # the reader's own error, not a storage one
        sink.create_from_chunks("a/2.eml", pieces([512 * 1024] * 20, fail_after=BLOCKS_IN_FLIGHT + 3),
                                lambda: {})
    assert not sink.exists("a/2.eml")
    # The next attempt writes it whole; one after that finds it there.
    assert sink.create_from_chunks("a/2.eml", pieces([512 * 1024] * 3), lambda: {}) is True
    assert sink.create_from_chunks("a/2.eml", pieces([10]), lambda: {}) is False
    assert blobs.get_blob_client("a/2.eml").get_blob_properties().size == 3 * 512 * 1024


def test_the_threads_that_stage_blocks_are_set_up_like_every_thread_of_a_run(blobs: ContainerClient):
    """On Functions a log record (an SDK retry, say) is kept only from a thread tagged with the
    invocation: the block threads must run the run's ThreadStart too."""
    started: list[str] = []

    def tag_thread() -> None:
        started.append(threading.current_thread().name)

    assert BlobMessageSink(blobs).create_from_chunks(
        "a/3.eml", pieces([1024] * (BLOCKS_IN_FLIGHT * 2)), dict, on_thread_start=tag_thread)
    assert started and all(name.startswith("block") for name in started)
