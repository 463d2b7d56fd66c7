"""Build an outbound message with the stdlib, refusing anything that could inject headers.

Every header value that comes from data (subject, display names, addresses, ids) is checked for CR/LF
first: a third party named "ACME\\r\\nBcc: victim@x" raises ValueError instead of adding a recipient.
The validated values are then encoded into bytes by maild/outbound/mime.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr

from maild.clock import utcnow
from maild.outbound import mime

_FORBIDDEN = ("\r", "\n", "\x00")


def _clean(field: str, value: str) -> str:
    if any(ch in value for ch in _FORBIDDEN):
        raise ValueError(f"{field} must not contain CR, LF or NUL: {value!r}")
    return value


def parse_address(field: str, value: str, name: str = "") -> Address:
    """One mailbox, validated: exactly `local@domain`, no CR/LF, no display-name tricks."""
    _clean(field, value)
    _clean(field + " name", name)
    shown, addr = parseaddr(value)
    if not addr or (addr != value.strip() and not shown):
        raise ValueError(f"{field}: not a single mail address: {value!r}")
    if addr.count("@") != 1:
        raise ValueError(f"{field}: not a mail address: {value!r}")
    local, domain = addr.split("@")
    if not local or not domain or any(ch.isspace() for ch in addr) or any(ch in addr for ch in "<>,;\"()"):
        raise ValueError(f"{field}: not a mail address: {value!r}")
    try:
        return Address(display_name=name or shown, username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{field}: not a mail address: {value!r}: {exc}") from None


def _msgid(field: str, value: str) -> str:
    _clean(field, value)
    value = value.strip()
    if not (value.startswith("<") and value.endswith(">") and "@" in value) or any(c.isspace() for c in value) \
            or not value.isascii() or len(value) > 900:
        raise ValueError(f"{field}: not a Message-ID (<local@domain>): {value!r}")
    return value


def _mailbox(address: Address) -> list[str]:
    return mime.mailbox_pieces(address.display_name, mime.addr_spec(address.username, address.domain))


def compose(*, sender: str, sender_name: str, to: list[str], subject: str, text: str, html: str | None = None,
            attachments: Iterable[tuple[str, str, bytes]] = (), message_id: str, in_reply_to: str | None = None,
            references: Sequence[str] = (), reply_to: str | None = None, auto_submitted: bool = False) -> bytes:
    """The message's bytes (CRLF line ends, ready for SMTP DATA). Raises ValueError on unsafe input.
    `auto_submitted`: mail a rule sends: RFC 3834's `Auto-Submitted: auto-generated`, and the header that asks
    Exchange / Outlook not to answer it with an out-of-office (no mail loops)."""
    if not to:
        raise ValueError("at least one recipient is needed")
    headers = [mime.address_header("From", [_mailbox(parse_address("sender", sender, sender_name))]),
               mime.address_header("To", [_mailbox(parse_address("to", addr)) for addr in to])]
    if reply_to:
        headers.append(mime.address_header("Reply-To", [_mailbox(parse_address("reply_to", reply_to))]))
    headers.append(mime.unstructured("Subject", _clean("subject", subject)))
    headers.append(f"Date: {format_datetime(utcnow())}\r\n")
    headers.append(f"Message-ID: {_msgid('message_id', message_id)}\r\n")
    if in_reply_to:
        headers.append(f"In-Reply-To: {_msgid('in_reply_to', in_reply_to)}\r\n")
    refs = [_msgid("references", ref) for ref in references]
    if refs:
        headers.append(mime.fold("References", refs))
    if auto_submitted:
        headers.append("Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n")
    headers.append("MIME-Version: 1.0\r\n")
    body: bytes | tuple[str, bytes] = mime.text_part("plain", text)
    if html is not None:
        body = mime.multipart("alternative", [body, mime.text_part("html", html)])
    parts = [mime.entity(body)]
    for filename, content_type, data in attachments:
        _clean("attachment filename", filename)
        parts.append(mime.attachment_part(filename, _clean("attachment content type", content_type), data))
    if len(parts) > 1:
        body = mime.multipart("mixed", parts)
    return "".join(headers).encode("ascii") + mime.entity(body)
