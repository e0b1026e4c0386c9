"""Summaries of hostile and ordinary mail: never an exception, never an unsafe file name."""

from __future__ import annotations

import base64

import pytest

from shared.summary import safe_filename, summarize


def multipart(*parts: tuple[str, bytes]) -> bytes:
    body = b""
    for headers, payload in parts:
        body += b"--B\r\n" + headers.encode("utf-8", "surrogateescape") + b"\r\n\r\n" + payload + b"\r\n"
    return (b"From: =?utf-8?q?J=C3=B6rg?= <j@fabrikam.example>\r\nTo: a@contoso.com, b@contoso.com\r\n"
            b"Cc: c@contoso.com\r\nReply-To: r@fabrikam.example\r\nSubject: =?utf-8?b?w4RwZmVs?=\r\n"
            b"Message-ID: <m1@fabrikam.example>\r\nIn-Reply-To: <m0@contoso.com>\r\n"
            b"References: <a@x> <m0@contoso.com>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            + body + b"--B--\r\n")


def test_headers_are_decoded_and_attachments_listed():
    pdf = base64.b64encode(b"%PDF-1.7 " + b"x" * 100)
    raw = multipart(
        ("Content-Type: text/plain; charset=utf-8", b"hello"),
        ('Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="invoice.pdf"\r\n'
         "Content-Transfer-Encoding: base64", pdf),
        ('Content-Type: image/png\r\nContent-Disposition: inline; filename="logo.png"\r\n'
         "Content-ID: <logo@x>\r\nContent-Transfer-Encoding: base64", base64.b64encode(b"\x89PNG")),
    )
    summary = summarize(raw)
    assert summary.from_ == "Jörg <j@fabrikam.example>"
    assert summary.subject == "Äpfel"
    assert summary.to == "a@contoso.com, b@contoso.com" and summary.cc == "c@contoso.com"
    assert summary.reply_to == "r@fabrikam.example" and summary.in_reply_to == "<m0@contoso.com>"
    assert summary.message_id == "<m1@fabrikam.example>"
    assert summary.attachments is not None
    [pdf_part, logo] = summary.attachments
    assert (pdf_part.filename, pdf_part.content_type, pdf_part.size, pdf_part.inline) == (
        "invoice.pdf", "application/pdf", 109, False)
    assert (logo.filename, logo.inline, logo.content_id) == ("logo.png", True, "<logo@x>")
    assert summary.to_json()["from"] == "Jörg <j@fabrikam.example>"


HOSTILE = {
    "empty": b"",
    "no headers": b"\r\njust a body\r\n",
    "nul and bare cr": b"Subject: a\x00b\rc\r\n\r\nbody\x00\r",
    "broken encoded word": b"Subject: =?utf-8?q?broken=ZZ?=\r\nFrom: =?x-unknown?b?!!!?=\r\n\r\nx",
    "8-bit headers": b"Subject: \xff\xfe caf\xe9\r\nFrom: \xc3\x28 <x@y>\r\n\r\nx",
    "no from, huge header": b"Subject: " + b"A" * 10_000 + b"\r\n\r\nx",
    "bad boundary": b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\nx\r\n",
    "unterminated multipart": b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\nContent-Type: text/plain\r\n",
    "bad base64": (b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n"),
    "address list garbage": b"To: <<<@@@>>>, ,,, \"unterminated\r\nCc: :;\r\n\r\nx",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_mail_never_fails_a_summary(name):
    summary = summarize(HOSTILE[name])
    data = summary.to_json()
    for value in data.values():
        assert value is None or isinstance(value, str | list | bool)
        if isinstance(value, str):
            assert len(value) <= 2000


@pytest.mark.parametrize("name", [
    "../../etc/passwd", "..\\..\\boot.ini", "C:\\Windows\\evil.exe", "/abs/path.txt",
    "invoice\u202egpj.exe", "a\x00b.txt", "nul", "CON.txt", "lpt1", "...", "  ", "",
    "\u2400\u2215\uff0f.pdf", "x" * 1000 + ".pdf", "é" * 300 + ".docx", "ok name (1).pdf",
    "zero\u200bwidth.txt", ".hidden",
])
def test_attachment_names_are_safe(name):
    safe = safe_filename(name, number=3, content_type="application/pdf")
    assert safe and safe not in (".", "..")
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in safe)
    assert not any(ord(c) < 32 for c in safe)
    assert len(safe.encode()) <= 200
    assert not safe.startswith(".")
    assert safe.split(".")[0].lower() not in ("con", "prn", "aux", "nul", "lpt1")


def test_safe_names_keep_what_they_can():
    assert safe_filename("../reports/Q3 results.xlsx") == "Q3 results.xlsx"
    assert safe_filename("x" * 1000 + ".pdf").endswith(".pdf")
    assert safe_filename("", number=2, content_type="application/pdf") == "attachment-2.pdf"
    assert safe_filename("invoice\u202egpj.exe") == "invoicegpj.exe"


def test_a_head_only_summary_says_it_is_partial():
    summary = summarize(b"Subject: big\r\nMessage-ID: <big@x>\r\n\r\n" + b"x" * 100, head_only=True)
    assert summary.subject == "big" and summary.partial and summary.attachments is None


def test_attachment_names_from_mail_are_made_safe():
    raw = multipart(('Content-Type: application/octet-stream\r\nContent-Disposition: attachment; '
                     'filename="../../\u202eexe.pdf"', b"data"))
    [part] = summarize(raw).attachments or []
    assert part.filename == "exe.pdf"


@pytest.mark.parametrize("raw", [
    b"Subject: crlf\r\nFrom: a@b\r\n\r\nSubject: in the body\r\n",
    b"Subject: lf\nFrom: a@b\n\nSubject: in the body\n",
    b"Subject: cr\rFrom: a@b\r\rSubject: in the body\r",
    b"Subject: mixed\r\nFrom: a@b\n\r\nSubject: in the body\r\n",
    b"Subject: folded\r\n over two lines\r\nTo: x@y,\r\n\tz@w\r\n\r\nbody",
    b"Subject: no body\r\nFrom: a@b\r\n",
    b"Subject: no separator\r\nnot a header line\r\nFrom: a@b\r\n\r\n",
    b"\r\nSubject: in the body only\r\n",
    b"Subject: ends in CR CR LF\r\r\nFrom: in the body\r\n",
])
def test_only_the_header_section_is_read_and_it_gives_the_headers_the_whole_message_gives(raw):
    # What the header section alone yields must be what parsing every byte yields.
    from email.parser import BytesParser

    from shared.summary import _POLICY, _header, _header_section

    section = _header_section(raw)
    assert raw.startswith(section)
    whole = BytesParser(policy=_POLICY).parsebytes(raw, headersonly=True)
    part = BytesParser(policy=_POLICY).parsebytes(section, headersonly=True)
    assert whole.items() == part.items()
    summary = summarize(raw)
    assert (summary.subject, summary.from_, summary.to) == \
        (_header(whole, "subject"), _header(whole, "from"), _header(whole, "to"))
