"""Exchange's throttling answer, read from raw response lines: the back-off is data."""

from __future__ import annotations

import pytest

from shared.adapters.mail_failures import ThrottleNotice, throttle_notice

THROTTLED_RESPONSES = [
    # Tagged NO and BAD, untagged BYE, as Exchange sends them.
    (b"A0003 NO Request is throttled. Suggested Backoff Time: 299961 milliseconds\r\n", 299.961),
    (b"A0003 BAD Request is throttled. Suggested Backoff Time: 89117 milliseconds\r\n", 89.117),
    (b"* BYE Request is throttled. Suggested Backoff Time: 299961 milliseconds\r\n", 299.961),
    (b"A0012 NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 1500 milliseconds", 1.5),
    (b"-ERR Request is throttled. Suggested Backoff Time: 3000000 milliseconds\r\n", 3000.0),
    # imaplib's rendering of a tagged BAD keeps the words.
    (b"AUTHENTICATE command error: BAD [b'Request is throttled. Suggested Backoff Time: 89117 "
     b"milliseconds']", 89.117),
    # Case, spacing and the unit's spelling vary little, but do vary.
    (b"* BYE request IS THROTTLED. suggested backoff time:120000 Milliseconds", 120.0),
    (b"A1 NO Request is throttled. Suggested Backoff Time : 5 millisecond", 0.005),
    (b"A1 NO Request is throttled. Suggested Back-off Time: 250 ms", 0.25),
    (b"A1 NO Request is throttled. Suggested Backoff Time: 0 milliseconds", 0.0),
    # Throttled without a usable wait: the kind stands, the wait is unknown.
    (b"* BYE Request is throttled.\r\n", None),
    (b"A1 NO [THROTTLED] Too many commands", None),
    (b"A1 NO Request is throttled. Suggested Backoff Time: 10 minutes", None),
    (b"A1 NO Request is throttled. Suggested Backoff Time: -5 milliseconds", None),
    (b"A1 NO Request is throttled. Suggested Backoff Time: 1234567890123 milliseconds", None),
    (b"A1 NO Request is throttled. Suggested Backoff Time: " + b"9" * 5000 + b" milliseconds", None),
    # The suggestion alone still says throttled.
    (b"A1 NO Suggested Backoff Time: 60000 milliseconds", 60.0),
    # Bytes that are not UTF-8 do not stop the reading.
    (b"* BYE \xff\xfe Request is throttled. Suggested Backoff Time: 1000 milliseconds", 1.0),
]

NOT_THROTTLED = [
    b"A0003 NO AUTHENTICATE failed.\r\n",
    b"A0003 BAD User is authenticated but not connected.\r\n",
    b"* BYE Connection closed. 14\r\n",
    b"A4 BAD Command Argument Error. 11",
    b"-ERR Authentication failure: unknown user name or bad password.",
    b"A5 NO Mailbox doesn't exist: Throttledness",  # a word that only contains it
    b"",
]


@pytest.mark.parametrize(("response", "seconds"), THROTTLED_RESPONSES)
def test_throttled_responses_give_their_suggested_back_off(response: bytes, seconds: float | None):
    assert throttle_notice(response) == ThrottleNotice(seconds)


@pytest.mark.parametrize("response", NOT_THROTTLED)
def test_other_responses_are_not_throttling(response: bytes):
    assert throttle_notice(response) is None


def test_text_is_read_like_bytes():
    assert throttle_notice("A1 NO Request is throttled. Suggested Backoff Time: 1500 milliseconds") \
        == ThrottleNotice(1.5)
    assert throttle_notice("A1 NO AUTHENTICATE failed.") is None
