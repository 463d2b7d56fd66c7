"""compose() writes MIME itself (maild/outbound/mime.py): it must read back, through the stdlib's strict
parser, exactly as what the stdlib's EmailMessage(policy=SMTP) composed from the same values."""

from __future__ import annotations

import email
import re
from email import policy
from email.header import decode_header
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import pytest

from maild.outbound.compose import compose

BASE: dict[str, Any] = {"sender": "sales@example.test", "sender_name": "Sales", "to": ["anna@customer.example"],
                        "subject": "Hi", "text": "hello", "message_id": "<maild.test0.tok12345@example.test>"}
PDF = bytes(range(256)) * 40


def reference(*, sender: str, sender_name: str, to: list[str], subject: str, text: str, html: str | None = None,
              attachments: Any = (), message_id: str, in_reply_to: str | None = None, references: Any = (),
              reply_to: str | None = None) -> bytes:
    """The former stdlib composition (valid input only)."""
    msg = EmailMessage(policy=policy.SMTP)
    local, domain = sender.split("@")
    msg["From"] = Address(display_name=sender_name, username=local, domain=domain)
    msg["To"] = [Address(username=a.split("@")[0], domain=a.split("@")[1]) for a in to]
    if reply_to:
        msg["Reply-To"] = Address(username=reply_to.split("@")[0], domain=reply_to.split("@")[1])
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=policy.SMTP)


def summary(raw: bytes) -> dict[str, Any]:
    msg = email.message_from_bytes(raw, policy=policy.default)
    out: dict[str, Any] = {"defects": [d for part in msg.walk() for d in part.defects]}
    for name in ("From", "To", "Reply-To"):
        if msg[name] is not None:
            out[name] = [(a.display_name, a.addr_spec) for a in msg[name].addresses]
    for name in ("Subject", "Message-ID", "In-Reply-To"):
        out[name] = str(msg[name]) if msg[name] is not None else None
    out["References"] = str(msg["References"]).split() if msg["References"] else []
    out["structure"] = [part.get_content_type() for part in msg.walk()]
    out["bodies"] = [part.get_content() for part in msg.walk() if not part.is_multipart()]
    out["filenames"] = [part.get_filename() for part in msg.walk() if not part.is_multipart()]
    return out


CASES: list[dict[str, Any]] = [
    {},
    {"html": "<p>hello</p>"},
    {"attachments": [("offer.pdf", "application/pdf", PDF)]},
    {"html": "<p>x</p>", "attachments": [("a.pdf", "application/pdf", PDF), ("b.txt", "text/plain", b"x\r\ny")]},
    {"sender_name": "Jörg Müller", "subject": "Grüße zum Angebot — Nr. 7"},
    {"sender_name": 'ACME, "Inc." (x) \\ y', "subject": "Offer: [1] <2> ; @x"},
    {"sender_name": "Ŝŧřåñğę Ñámé with a rather long company suffix GmbH & Co. KG Niederlassung Süd"},
    {"subject": "x" * 200},
    {"subject": "word " * 60 + "end"},
    {"subject": "Grüße " * 40},
    {"subject": "=?utf-8?q?not_an_encoded_word?= really"},
    {"subject": "  leading and trailing  "},
    {"subject": "tab\there"},
    {"subject": ""},
    {"subject": "日本語の件名とemoji 🎉 mixed with ASCII words to make it long enough to fold twice over"},
    {"to": ["anna@customer.example", "bob@other.example", "carl.o'neil+tag@third.example"] * 4},
    {"reply_to": "sales+maild.test0.tok12345@example.test", "in_reply_to": "<x@customer.example>",
     "references": [f"<ref{i}.{'y' * 30}@customer.example>" for i in range(8)]},
    {"text": "line one\nline two\r\nline three\rfour\n\n", "html": "<p>ü</p>\n" + "<b>" * 400},
    {"text": "Grüße\nÄÖÜ ß € — “quotes”\ttab   \ntrailing space   \n" + "ü" * 300},
    {"text": "x" * 2000 + "\n.leading dot\nFrom the start\n"},
    {"text": "=3D not encoded =\n=?utf-8?b?eA==?=\n--=_maild_boundary-lookalike\n"},
    {"attachments": [("Rechnung Müller & Söhne 2026-11 with a very long name that needs continuations.pdf",
                      "application/pdf", PDF)]},
    {"attachments": [('we"ird\\name.txt', "text/plain", b"data"), ("n.bin", "Application/X-Thing", b"\x00\xff")]},
]


@pytest.mark.parametrize("case", CASES)
def test_reads_back_like_the_stdlib_composition(case: dict[str, Any]) -> None:
    values = {**BASE, **case}
    ours, theirs = summary(compose(**values)), summary(reference(**values))
    assert ours["defects"] == []
    assert ours["Subject"] == values["subject"]  # exactly (the stdlib loses leading blanks, decodes "=?...?=")
    assert ours == {**theirs, "defects": [], "Subject": values["subject"]}


@pytest.mark.parametrize("case", CASES)
def test_wire_format(case: dict[str, Any]) -> None:
    raw = compose(**{**BASE, **case})
    assert all(b < 128 for b in raw)  # 7-bit: no 8BITMIME/SMTPUTF8 needed
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    head, _, _body = raw.partition(b"\r\n\r\n")
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    assert max(len(line) for line in head.split(b"\r\n")) <= 78 or "x" * 200 in str(case)
    assert not any(line.strip() == b"" for line in head.split(b"\r\n"))  # no whitespace-only folded line
    names = [line.split(b":")[0] for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    assert len(names) == len(set(names))  # each header once


def test_idn_domains_are_punycode_and_non_ascii_local_parts_refused() -> None:
    msg = email.message_from_bytes(compose(**{**BASE, "to": ["anna@bücher.example"]}), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.example"
    with pytest.raises(ValueError, match="SMTPUTF8"):
        compose(**{**BASE, "to": ["jörg@customer.example"]})
    with pytest.raises(ValueError, match="Message-ID"):
        compose(**{**BASE, "in_reply_to": "<ä@b.example>"})


@pytest.mark.parametrize("name", ["Ŝŧřåñğę-Ñámé-ŵïţĥ-ñö-śpäçęś-ãţ-ăłl-ŀöñğęř-ţĥåñ-öñę-ŵöřď", "Jörg  Müller ",
                                  "Ünïcödé " * 12])
def test_long_non_ascii_names_decode_per_rfc_2047(name: str) -> None:
    """A decoder joins adjacent encoded words without the whitespace between them (RFC 2047, 6.2)."""
    raw = compose(**{**BASE, "sender_name": name})
    head = raw.partition(b"\r\n\r\n")[0].decode("ascii")
    value = re.search(r"^From: (.*?)\r\n(?! )", head + "\r\nX", re.MULTILINE | re.DOTALL)
    assert value is not None
    phrase = value.group(1).rpartition("<")[0].replace("\r\n", "")
    decoded = "".join(part.decode(charset) if charset else part.decode("ascii") if isinstance(part, bytes) else part
                      for part, charset in decode_header(phrase))
    assert decoded.strip() == name.strip()


def test_boundaries_are_random_and_never_inside_a_part() -> None:
    raw = compose(**{**BASE, "html": "<p>x</p>", "attachments": [("a.pdf", "application/pdf", PDF)]})
    boundaries = re.findall(rb'boundary="([^"]+)"', raw)
    assert len(set(boundaries)) == 2
    again = compose(**{**BASE, "html": "<p>x</p>", "attachments": [("a.pdf", "application/pdf", PDF)]})
    assert set(re.findall(rb'boundary="([^"]+)"', again)).isdisjoint(boundaries)
