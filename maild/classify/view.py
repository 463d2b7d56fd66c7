"""A parsed message -> `MailView`: the headers, addresses and readable text detectors look at, read once."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from functools import cached_property

from maild.classify.base import MailView

MAX_TEXT = 100_000  # characters of readable text kept for the detectors
MAX_PARTS = 200  # parts looked at for text
_TAGS = re.compile(r"<[^>]{0,2000}>")
ENVELOPE_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "x-rcpt-to")


def parse(raw: bytes) -> Message:
    """The stdlib's lenient parse (compat32 never raises for bad structure; it records defects)."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


class View:
    """`MailView` of one parsed message: each part is read when a detector first asks (most human mail needs
    only a few headers)."""

    def __init__(self, message: Message) -> None:
        self.message = message
        headers: dict[str, list[str]] = {}
        for name, value in message.items():
            headers.setdefault(str(name).lower(), []).append(str(value))
        self.headers = headers
        self.content_type = message.get_content_type()
        self.report_type = str(message.get_param("report-type", "") or "").lower() \
            if self.content_type == "multipart/report" else ""

    def header(self, name: str) -> str:
        values = self.headers.get(name)
        return _decoded(values[0]) if values else ""

    @cached_property
    def _from(self) -> tuple[str, str]:
        name, address = parseaddr(self.header("from"))
        return name.strip(), address.strip().lower()

    @property
    def from_addr(self) -> str:
        return self._from[1]

    @property
    def from_name(self) -> str:
        return self._from[0]

    @cached_property
    def subject(self) -> str:
        return self.header("subject")

    @cached_property
    def return_path(self) -> str | None:
        values = self.headers.get("return-path")
        return parseaddr(values[-1])[1].strip().lower() if values else None

    @cached_property
    def envelope_to(self) -> tuple[str, ...]:
        envelope: list[str] = []
        for name in ENVELOPE_HEADERS:
            for _, address in getaddresses([_decoded(v) for v in self.headers.get(name, [])]):
                if address and address.strip() not in envelope:
                    envelope.append(address.strip())  # case kept: a VERP token is case-sensitive
        return tuple(envelope)

    @cached_property
    def text(self) -> str:
        return readable_text(self.message)

    @cached_property
    def date(self) -> datetime | None:
        return _date(self.header("date"))


def view(message: Message) -> MailView:
    return View(message)


def readable_text(message: Message) -> str:
    """The text a person would read: text/plain parts outside attached messages (else HTML without tags)."""
    plain: list[str] = []
    html: list[str] = []
    size = 0
    for count, part in enumerate(_parts(message)):
        if count >= MAX_PARTS or size >= MAX_TEXT:
            break
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or part.get_filename():
            continue
        text = _payload_text(part)
        size += len(text)
        (plain if ctype == "text/plain" else html).append(text)
    if plain:
        return "\n".join(plain)[:MAX_TEXT]
    return _TAGS.sub(" ", "\n".join(html))[:MAX_TEXT]


def _parts(message: Message) -> list[Message]:
    """Leaf parts in order, not descending into attached messages (message/rfc822: the returned original)."""
    out: list[Message] = []
    stack = [message]
    while stack and len(out) < MAX_PARTS:
        part = stack.pop(0)
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers", "message/global"):
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack[0:0] = [p for p in payload if isinstance(p, Message)]
        else:
            out.append(part)
    return out


def _payload_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: the text as it stands
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw[:MAX_TEXT] if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[: MAX_TEXT * 4].decode(charset, "replace")
    except (LookupError, TypeError):
        return payload[: MAX_TEXT * 4].decode("latin-1")


def _decoded(value: object) -> str:
    text = str(value)
    if "=?" not in text and text.isascii():
        return " ".join(text.split())[:2000]
    if any("\udc80" <= char <= "\udcff" for char in text):  # raw 8-bit header bytes (compat32 keeps them escaped)
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    with contextlib.suppress(Exception):  # an undecodable encoded-word stays as it came
        text = str(make_header(decode_header(text)))
    return " ".join(text.split())[:2000]


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
