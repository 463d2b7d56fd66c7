"""Raw bytes -> `ParsedMail`: mail-parser first, the stdlib's lenient compat32 parser where it fails.

Runs in worker processes: it also writes the raw message and its attachments to the blob store, so
the process that commits only handles small records. Never raises for bad mail; it returns a
`Rejected` with the reason instead, and the pipeline quarantines it.
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message as StdMessage
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any

import mailparser

from maild.classify.base import Settings as ClassifySettings
from maild.classify.chain import classify as classify_message
from maild.ingest.authentication import NONE, verdict
from maild.store.blobs import BlobStore, StorageError, sha256_hex

logging.getLogger("mailparser").setLevel(logging.CRITICAL)

MAX_HEADER_ID = 900  # longer ids are truncated: they are indexed, and btree keys have a size limit


@dataclass(frozen=True)
class ParsedAttachment:
    position: int
    filename: str | None
    content_type: str
    content_id: str | None
    size: int
    sha256: str


@dataclass(frozen=True)
class ParsedMail:
    raw_sha256: str
    size: int
    header_message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str | None
    from_name: str | None
    from_addr: str | None
    to_addrs: list[list[str]]
    cc_addrs: list[list[str]]
    reply_to: list[list[str]]
    date: datetime | None
    text_body: str
    html_body: str
    parser: str
    defects: list[str]
    attachments: list[ParsedAttachment] = field(default_factory=list)
    auth: str | None = None  # pass | fail | none from our trusted server's Authentication-Results; None: not read
    auth_reason: str | None = None
    kind: str | None = None  # human | bounce | auto_reply | ... (maild/classify); None: not classified
    machine: dict[str, Any] | None = None  # the classification's reasons, recipients, tokens


@dataclass(frozen=True)
class Rejected:
    raw_sha256: str
    size: int
    reason: str


def parse_and_store(raw: bytes, blob_dir: str, max_bytes: int,
                    trusted_authserv_ids: frozenset[str] = frozenset(),
                    classify: ClassifySettings | None = None) -> ParsedMail | Rejected:
    """Keep the raw bytes whatever happens, then parse. Safe to call in a worker process. With trusted
    authserv-ids, the mail's Authentication-Results are read too (`auth`, `auth_reason`); with `classify`
    settings, its kind (human, bounce, auto_reply...: `kind`, `machine`).

    A blob store that cannot be written raises StorageError: that is the machine's problem, not the mail's.
    """
    blobs = BlobStore(Path(blob_dir))
    if not raw:
        return Rejected(sha256_hex(raw), 0, "empty message (zero bytes)")
    digest = blobs.put(raw)
    if len(raw) > max_bytes:
        return oversized(digest, len(raw), max_bytes)
    errors: list[str] = []
    for parser in (_with_mailparser, _with_stdlib):
        try:
            parsed, message = parser(raw, digest, blobs, errors)
        except StorageError:
            raise  # a full or read-only disk: the batch is not committed, the folder retries it
        except Exception as exc:  # any parser bug is a property of this mail, not of the daemon
            errors.append(f"{parser.__name__.removeprefix('_with_')}: {type(exc).__name__}: {exc}")
            continue
        if classify is not None:
            found = classify_message(message, raw, classify)  # never raises: an error is kind "unknown"
            parsed = replace(parsed, kind=found.kind, machine=found.stored())
        return _authenticated(parsed, raw, trusted_authserv_ids) if trusted_authserv_ids else parsed
    return Rejected(digest, len(raw), "unparseable: " + "; ".join(errors))


def oversized(digest: str, size: int, max_bytes: int) -> Rejected:
    """The quarantine entry of a message over the limit (its raw bytes are in the blob store, unparsed)."""
    return Rejected(digest, size, f"message is {size} bytes, over ingest.max_message_bytes ({max_bytes})")


def _with_mailparser(raw: bytes, digest: str, blobs: BlobStore, errors: list[str]) -> tuple[ParsedMail, StdMessage]:
    mail = mailparser.parse_from_bytes(raw)
    attachments = []
    for position, att in enumerate(mail.attachments):
        payload = att.get("payload") or ""
        if att.get("binary"):
            data = base64.b64decode(payload)
        else:
            data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else bytes(payload)
        attachments.append(
            ParsedAttachment(
                position=position,
                filename=_clean(att.get("filename")),
                content_type=_clean(att.get("mail_content_type")) or "application/octet-stream",
                content_id=_clean(att.get("content-id")),
                size=len(data),
                sha256=blobs.put(data),
            )
        )
    attachments += _inline_calendars(mail.message, len(attachments), blobs)
    defects = sorted({str(d) for d in mail.defects_categories})
    sender = mail.from_[0] if mail.from_ else ("", "")
    date = mail.date.replace(tzinfo=UTC) if isinstance(mail.date, datetime) and mail.date.tzinfo is None else mail.date
    return ParsedMail(
        raw_sha256=digest,
        size=len(raw),
        header_message_id=_msgid(mail.message_id),
        in_reply_to=_msgid(mail.in_reply_to),
        references=_id_list(mail.references),
        subject=_clean(mail.subject),
        from_name=_clean(sender[0]),
        from_addr=_addr(sender[1]),
        to_addrs=_pairs(mail.to),
        cc_addrs=_pairs(mail.cc),
        reply_to=_pairs(mail.reply_to),
        date=date if isinstance(date, datetime) else None,
        text_body=_clean("\n".join(mail.text_plain)) or "",
        html_body=_clean("\n".join(mail.text_html)) or "",
        parser="mail-parser",
        defects=defects,
        attachments=attachments,
    ), mail.message


def _authenticated(parsed: ParsedMail, raw: bytes, trusted: frozenset[str]) -> ParsedMail:
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        found = verdict([(str(k), str(v)) for k, v in headers.items()], trusted, parsed.from_addr)
    except Exception as exc:  # the header block was parsed once already: this is a mail's oddity, not ours
        return replace(parsed, auth=NONE, auth_reason=f"Authentication-Results unreadable: {type(exc).__name__}")
    return replace(parsed, auth=found.status, auth_reason=found.reason)


def _inline_calendars(message: StdMessage, first_position: int, blobs: BlobStore) -> list[ParsedAttachment]:
    """Inline text/calendar parts (Outlook's invitations), which mail-parser drops: kept as attachments so
    meetings can be read from them; parts with a filename or Content-ID are already among the attachments."""
    found = []
    for part in message.walk():
        if part.get_content_type() != "text/calendar" or part.get_filename() or part.get("Content-ID") \
                or part.get_content_disposition() == "attachment":
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        found.append(ParsedAttachment(position=first_position + len(found), filename=None,
                                      content_type="text/calendar", content_id=None, size=len(data),
                                      sha256=blobs.put(data)))
    return found


def _with_stdlib(raw: bytes, digest: str, blobs: BlobStore, errors: list[str]) -> tuple[ParsedMail, StdMessage]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[ParsedAttachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        ctype = part.get_content_type()
        filename = part.get_filename()
        if filename is None and ctype in ("text/plain", "text/html"):
            text = payload.decode(_charset(part), "replace")
            (texts if ctype == "text/plain" else htmls).append(text)
        else:
            attachments.append(
                ParsedAttachment(
                    position=len(attachments),
                    filename=_clean(_decoded(filename)) if filename else None,
                    content_type=ctype,
                    content_id=_clean(part.get("Content-ID")),
                    size=len(payload),
                    sha256=blobs.put(payload),
                )
            )
    name, addr = parseaddr(_decoded(msg.get("From", "")))
    defects = sorted({type(d).__name__ for part in msg.walk() for d in part.defects} | {"ParsedByFallback"})
    return ParsedMail(
        raw_sha256=digest,
        size=len(raw),
        header_message_id=_msgid(msg.get("Message-ID")),
        in_reply_to=_msgid(msg.get("In-Reply-To")),
        references=_id_list(msg.get("References")),
        subject=_clean(_decoded(msg.get("Subject"))),
        from_name=_clean(name),
        from_addr=_addr(addr),
        to_addrs=_pairs(getaddresses([_decoded(v) for v in msg.get_all("To", [])])),
        cc_addrs=_pairs(getaddresses([_decoded(v) for v in msg.get_all("Cc", [])])),
        reply_to=_pairs(getaddresses([_decoded(v) for v in msg.get_all("Reply-To", [])])),
        date=_date(msg.get("Date")),
        text_body=_clean("\n".join(texts)) or "",
        html_body=_clean("\n".join(htmls)) or "",
        parser="fallback",
        defects=[*defects, *errors],
        attachments=attachments,
    ), msg


def _charset(part: StdMessage) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "latin-1"
    return charset


def _decoded(value: Any) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:
        return str(value)


def _date(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _clean(value: Any) -> str | None:
    """Text safe for any database: str, no NUL (PostgreSQL refuses it), no lone surrogates."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


def _msgid(value: Any) -> str | None:
    text = _clean(value)
    text = text.strip() if text else None
    return text[:MAX_HEADER_ID] if text else None


def _id_list(value: Any) -> list[str]:
    text = _clean(value) or ""
    return [token for token in text.replace(",", " ").split() if token][:500]


def _addr(value: Any) -> str | None:
    text = _clean(value)
    return text.strip().lower()[:500] if text and text.strip() else None


def _pairs(values: Any) -> list[list[str]]:
    pairs = []
    for item in values or []:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            pairs.append([_clean(item[0]) or "", _addr(item[1]) or ""])
    return pairs
