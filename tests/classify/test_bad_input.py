"""Hostile or broken notices: classification never raises, stays bounded, and says what it could not read."""

from __future__ import annotations

from maild.classify.chain import classify_bytes
from tests.classify.samples import SETTINGS

HEAD = (b"From: MAILER-DAEMON@mx.example\r\nTo: billing@example.com\r\nSubject: Undelivered Mail\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n")


def test_malformed_delivery_status_part_falls_back_to_the_text() -> None:
    raw = HEAD + (b"--B\r\nContent-Type: text/plain\r\n\r\nDelivery to the following recipient failed permanently:"
                  b"\r\n\r\n     lost@customer.example\r\n\r\n550 5.1.1 user unknown\r\n"
                  b"--B\r\nContent-Type: message/delivery-status\r\n\r\n\x00\xff:::garbage\r\nAction\r\n--B--\r\n")
    found = classify_bytes(raw, SETTINGS)
    assert found.kind == "bounce"
    assert [(r.address, r.status, r.hard) for r in found.recipients] == [("lost@customer.example", "5.1.1", True)]


def test_a_report_with_ten_thousand_recipients_is_cut_and_says_so() -> None:
    blocks = b"".join(b"Final-Recipient: rfc822; user%d@big.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" % i
                      for i in range(10_000))
    raw = HEAD + (b"--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--B\r\nContent-Type: message/delivery-status\r\n"
                  b"\r\nReporting-MTA: dns; mx.example\r\n\r\n" + blocks + b"--B--\r\n")
    found = classify_bytes(raw, SETTINGS)
    assert found.kind == "bounce"
    assert len(found.recipients) == 1000
    assert "and 9995 more" in found.reasons[-1]


def test_a_notice_quoting_a_50_mb_original_is_classified() -> None:
    original = b"From: billing@example.com\r\nMessage-ID: <maild.test01.BigOrig000000001@example.com>\r\n\r\n" + \
        b"x" * 76 + b"\r\n"
    raw = HEAD + (b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
                  b"Final-Recipient: rfc822; big@customer.example\r\nAction: failed\r\nStatus: 5.3.4\r\n\r\n"
                  b"--B\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"y" * 76 * 0 +
                  (b"z" * 998 + b"\r\n") * 50_000 + b"--B--\r\n")
    assert len(raw) > 50_000_000
    found = classify_bytes(raw, SETTINGS)
    assert found.kind == "bounce"
    assert found.recipients[0].address == "big@customer.example"
    assert found.recipients[0].reason == "message too large"
    assert found.tokens == ["BigOrig000000001"]


def test_garbage_is_classified_without_raising() -> None:
    for raw in (b"", b"\x00\xff" * 1000, b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n",
                b"From: \xff\xfe@\r\nSubject: =?utf-8?B?////?=\r\nContent-Type: multipart/report; report-type="
                b"delivery-status; boundary=X\r\n\r\n--X\r\nContent-Type: message/delivery-status\r\n\r\n"
                b"Final-Recipient: ;\r\nAction: failed\r\n--X--"):
        found = classify_bytes(raw, SETTINGS)
        assert found.kind in ("human", "bounce", "notification", "unknown")
        assert found.reasons


def test_a_detector_error_is_kind_unknown_with_the_error_as_evidence(monkeypatch) -> None:
    from maild.classify import chain

    def broken(mail, settings):
        raise RuntimeError("detector bug")

    monkeypatch.setitem(chain.DETECTORS, "dsn", broken)
    found = classify_bytes(HEAD + b"--B--\r\n", SETTINGS)
    assert found.kind == "unknown"
    assert found.reasons == ["error: RuntimeError: detector bug"]
