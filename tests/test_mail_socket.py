"""The paced reader of mail sockets, over a real socket pair: stalls, trickles and the end of
the time box each cut the read, and a healthy stream passes untouched."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from shared.adapters.mail_socket import GOODBYE_SECONDS, Pace, ServerTooSlow, paced_file


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    client, server = socket.socketpair()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def send_slowly(sock: socket.socket, *, every: float, count: int, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        for _ in range(count):
            if stop.wait(every):
                return
            try:
                sock.sendall(b"x")
            except OSError:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_healthy_stream_is_read_whole(pair):
    client, server = pair
    payload = bytes(range(256)) * 4096
    sender = threading.Thread(target=server.sendall, args=(payload + b"\r\n",))
    sender.start()
    reader = paced_file(client, Pace(read_timeout=5.0))
    assert reader.read(len(payload)) == payload and reader.readline() == b"\r\n"
    sender.join()


def test_a_stall_is_cut_after_the_read_timeout_naming_the_setting(pair):
    client, _ = pair
    pace = Pace(read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ServerTooSlow, match=r"nothing arrived for 0.3 s \(IMAP_TIMEOUT_SECONDS\)"):
        paced_file(client, pace).readline()
    assert time.monotonic() - started < 5 and pace.broken


def test_no_command_is_sent_on_a_connection_left_in_the_middle_of_an_answer(pair):
    client, _ = pair
    pace = Pace(read_timeout=0.3)
    with pytest.raises(ServerTooSlow):
        paced_file(client, pace).readline()
    # What arrives next could be the rest of that answer, read as the next one's.
    with pytest.raises(ConnectionAbortedError, match="middle of an answer"):
        pace.new_answer()


def test_a_trickle_that_never_trips_the_read_timeout_is_cut_by_the_minimum_pace(pair):
    client, server = pair
    stop = threading.Event()
    send_slowly(server, every=0.05, count=1000, stop=stop)
    pace = Pace(read_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(ServerTooSlow, match=r"sent only \d+ bytes"):
            paced_file(client, pace).readline()
    finally:
        stop.set()
    assert time.monotonic() - started < 5 and pace.broken


def test_no_read_outlasts_the_time_box(pair):
    client, server = pair
    stop = threading.Event()
    send_slowly(server, every=0.05, count=1000, stop=stop)
    pace = Pace(read_timeout=60.0, deadline=time.monotonic() + 0.4)
    try:
        with pytest.raises(ServerTooSlow, match="share of the run's time box ran out"):
            paced_file(client, pace).readline()
    finally:
        stop.set()
    assert pace.deadline is not None and time.monotonic() <= pace.deadline + 1.0


def test_waiting_between_answers_is_not_held_against_the_server(pair):
    client, server = pair
    pace = Pace(read_timeout=0.3)
    reader = paced_file(client, pace)
    for _ in range(4):  # idle longer than the window between answers: still fine
        time.sleep(0.2)
        pace.new_answer()
        server.sendall(b"* OK\r\n")
        assert reader.readline() == b"* OK\r\n"
    assert not pace.broken


def test_a_spent_time_box_refuses_the_next_command_at_once(pair):
    client, _ = pair
    pace = Pace(read_timeout=60.0, deadline=time.monotonic() - 1)
    pace.attach(client)
    with pytest.raises(ServerTooSlow, match="share of the run's time box ran out"):
        pace.new_answer()


def test_the_goodbye_gets_a_few_seconds_at_most(pair):
    client, _ = pair
    pace = Pace(read_timeout=60.0, deadline=time.monotonic() + 3600)
    pace.attach(client)
    pace.goodbye()
    assert pace.deadline is not None and pace.deadline <= time.monotonic() + GOODBYE_SECONDS
