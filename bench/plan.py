"""What one bench run measures: workloads, their sizes, and the limit sweep. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

KB = 1024
MB = 1024 * 1024
# The storage limit is swept on at most this many messages, or this many bytes, of a
# workload; the fastest client and thread count then runs on the whole workload.
SAMPLE_MESSAGES = 1000
SAMPLE_BYTES = 64 * MB
LIMIT_THREADS = (4, 8, 16, 32)
# azure-storage-blob's default max_single_put_size: upload_blob sends a smaller blob whole,
# in one request, whatever its max_concurrency.
SDK_SINGLE_PUT_BYTES = 64 * MB
ENQUEUE_SENDERS = (1, 8, 16, 32)
THROUGHPUT = ("5k", "200k", "large")


def workload_name(count: int, size: int, mailboxes: int = 1) -> str:
    """``5,000 x 5 KB``, ``1 x 100 MB``, ``50 mailboxes x 100 x 5 KB``."""
    each = f"{size / MB:g} MB" if size >= MB else f"{size / KB:g} KB"
    if mailboxes > 1:
        return f"{mailboxes:,} mailboxes x {count // mailboxes:,} x {each}"
    return f"{count:,} x {each}"


@dataclass(frozen=True)
class Workload:
    key: str
    size: int
    count: int              # messages in total (all mailboxes), LAN
    wan_count: int | None   # messages on WAN (a smaller, separately seeded mailbox), or None
    mailboxes: int = 1

    def name(self, count: int) -> str:
        return workload_name(count, self.size, self.mailboxes)

    @property
    def per_mailbox(self) -> int:
        return self.count // self.mailboxes


def plan_workloads(quick: bool, scale: float) -> dict[str, Workload]:
    """Every workload of a run; ``fanout``, ``idle`` and ``faults`` run on WAN only (count = WAN's)."""
    def n(value: int) -> int:
        return max(1, round(value * scale))

    def boxes(mailboxes: int, each: int, key: str) -> Workload:
        count = n(mailboxes) * each
        return Workload(key, 5 * KB, count, count, mailboxes=n(mailboxes))

    if quick:
        return {
            "5k": Workload("5k", 5 * KB, n(500), n(200)),
            "200k": Workload("200k", 200 * KB, n(50), n(20)),
            "large": Workload("large", 20 * MB, 1, 1),
            "fanout": boxes(20, 5, "fanout"),
            "idle": boxes(100, 2, "idle"),
            "enqueue": Workload("enqueue", 0, n(1000), None, mailboxes=n(1000)),
            "faults": Workload("faults", 5 * KB, n(1000), n(1000)),
        }
    return {
        "5k": Workload("5k", 5 * KB, n(5000), n(2000)),
        "200k": Workload("200k", 200 * KB, n(500), n(200)),
        "large": Workload("large", 100 * MB, 1, 1),
        "fanout": boxes(200, 5, "fanout"),
        "idle": boxes(1000, 2, "idle"),
        "enqueue": Workload("enqueue", 0, n(10000), None, mailboxes=n(10000)),
        "faults": Workload("faults", 5 * KB, n(5000), n(5000)),
    }


@dataclass(frozen=True)
class LimitConfig:
    """One client and thread count of the storage-limit sweep."""

    method: str   # upload_blob | put_blob | put_blob_pooled | put_blob_stream | staged_blocks
    threads: int


def limit_configs(messages: int, size: int, threads: Sequence[int]) -> list[LimitConfig]:
    """The sweep: every client at every thread count that makes a difference."""
    if messages > 1:
        return ([LimitConfig("upload_blob", t) for t in threads]
                + [LimitConfig("put_blob", t) for t in threads]
                + [LimitConfig("put_blob_pooled", t) for t in threads])
    # One message: upload_blob's threads are its max_concurrency, which only a blob it
    # splits into blocks uses; a single Put Blob (whole, or streamed in pieces with its
    # length known) cannot be split; staged blocks can.
    configs = ([LimitConfig("upload_blob", t) for t in threads] if size > SDK_SINGLE_PUT_BYTES
               else [LimitConfig("upload_blob", 1)])
    configs.append(LimitConfig("put_blob", 1))
    configs.append(LimitConfig("put_blob_pooled", 1))
    configs.append(LimitConfig("put_blob_stream", 1))
    configs.extend(LimitConfig("staged_blocks", t) for t in threads)
    return configs


def sample_count(messages: int, size: int) -> int:
    """How many of a workload's messages the sweep uploads per configuration."""
    by_bytes = SAMPLE_BYTES // size if size else messages
    return max(1, min(messages, SAMPLE_MESSAGES, by_bytes))


def best_config(seconds: Mapping[LimitConfig, float]) -> LimitConfig:
    """The fastest configuration (same messages for each); ties go to fewer threads."""
    return min(seconds, key=lambda c: (seconds[c], c.threads))


def enqueue_senders(default: int, senders: Sequence[int] = ENQUEUE_SENDERS) -> list[int]:
    """Sender counts to measure: the given ones and the product's default."""
    return sorted({*senders, default})
