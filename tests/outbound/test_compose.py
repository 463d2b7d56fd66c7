from __future__ import annotations

import email
from email import policy

import pytest

from maild.outbound.compose import compose

BASE = {"sender": "sales@example.test", "sender_name": "Sales", "to": ["anna@customer.example"], "subject": "Hi",
        "text": "hello", "message_id": "<maild.test0.tok12345@example.test>"}


def test_builds_a_multipart_message_with_encoded_headers() -> None:
    raw = compose(**{**BASE, "sender_name": "Jörg Müller", "subject": "Grüße zum Angebot — Nr. 7"},
                  html="<p>hello</p>", attachments=[("offer.pdf", "application/pdf", b"%PDF-1.4")],
                  in_reply_to="<x@customer.example>", references=["<a@b.example>", "<x@customer.example>"],
                  reply_to="sales+maild.test0.tok12345@example.test")
    assert b"\r\n" in raw and all(b < 128 for b in raw)  # CRLF, and 7-bit headers (encoded words)
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Grüße zum Angebot — Nr. 7"
    assert msg["From"].addresses[0].display_name == "Jörg Müller"
    assert msg["Message-ID"] == "<maild.test0.tok12345@example.test>"
    assert msg["In-Reply-To"] == "<x@customer.example>"
    assert msg["References"].split() == ["<a@b.example>", "<x@customer.example>"]
    assert msg["Reply-To"].addresses[0].addr_spec == "sales+maild.test0.tok12345@example.test"
    assert msg.get_body(("plain",)).get_content().strip() == "hello"
    assert msg.get_body(("html",)).get_content().strip() == "<p>hello</p>"
    (attachment,) = msg.iter_attachments()
    assert attachment.get_filename() == "offer.pdf" and attachment.get_content() == b"%PDF-1.4"


@pytest.mark.parametrize("field,value", [
    ("sender_name", "ACME GmbH\r\nBcc: victim@x"),
    ("sender_name", "ACME\nBcc: victim@x"),
    ("subject", "Offer\r\nBcc: victim@x"),
    ("subject", "Offer\rX-Evil: 1"),
    ("to", ["anna@customer.example\r\nBcc: victim@x"]),
    ("sender", "sales@example.test\nBcc: victim@x"),
    ("reply_to", "r@example.test\r\nBcc: victim@x"),
    ("message_id", "<a@b>\r\nBcc: victim@x"),
    ("references", ["<a@b>\r\nBcc: victim@x"]),
])
def test_header_injection_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        compose(**{**BASE, field: value})


@pytest.mark.parametrize("address", ["not-an-address", "a@b@c", "a@b.example, victim@x.example", "@x", "a b@c.d"])
def test_invalid_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        compose(**{**BASE, "to": [address]})


def test_a_third_party_name_with_newlines_cannot_add_a_recipient() -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        compose(**{**BASE, "sender_name": "Evil Corp\r\nBcc: victim@x"})
