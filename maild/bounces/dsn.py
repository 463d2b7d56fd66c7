"""RFC 3464 delivery-status reports: the per-recipient fields of a message/delivery-status part."""

from __future__ import annotations

import re
from email.message import Message

from maild.bounces import status as codes
from maild.bounces.model import MAX_RECIPIENTS, FailedRecipient

MAX_STATUS_BYTES = 2_000_000  # a delivery-status part beyond this is read only this far
_TYPED = re.compile(r"^\s*(?:rfc822|smtp|dns|x-[\w.-]+|utf-8)\s*;\s*(.*)$", re.I | re.S)
_ADDRESS = re.compile(r"<?([^\s<>@;,\"]+@[^\s<>;,\"]+?)>?\s*$")


def status_parts(message: Message) -> list[Message]:
    """The message/delivery-status (and message/global-delivery-status) parts of a report."""
    return [part for part in message.walk()
            if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status")]


def recipients(part: Message) -> tuple[list[FailedRecipient], int]:
    """The failed or delayed recipients of one delivery-status part, and how many were left out (over the cap).
    Malformed blocks are skipped; recipients that were delivered are not failures."""
    found: list[FailedRecipient] = []
    dropped = 0
    reporting_mta = None
    for index, fields in enumerate(_blocks(part)):
        if index == 0 and "final-recipient" not in fields and "original-recipient" not in fields:
            reporting_mta = _typed(fields.get("reporting-mta"))
            continue
        recipient = _recipient(fields, reporting_mta)
        if recipient is None:
            continue
        if len(found) >= MAX_RECIPIENTS:
            dropped += 1
            continue
        found.append(recipient)
    return found, dropped


def _recipient(fields: dict[str, str], reporting_mta: str | None) -> FailedRecipient | None:
    address = _address(_typed(fields.get("original-recipient"))) or _address(_typed(fields.get("final-recipient")))
    if address is None:
        return None
    action = (fields.get("action") or "").strip().lower()
    if action.startswith(("delivered", "relayed", "expanded")):
        return None
    diagnostic = _typed(fields.get("diagnostic-code")) or ""
    status = codes.parse_code(fields.get("status")) or codes.parse_code(diagnostic)
    if not action:
        action = "delayed" if status and status.startswith("4") else "failed"
    action = "delayed" if action.startswith("delayed") else "failed"
    hard = action == "failed" and codes.is_hard(status, diagnostic, action)
    return FailedRecipient(address=address, action=action, status=status, diagnostic=_one_line(diagnostic)[:1000],
                           hard=hard, reason=codes.reason(status, diagnostic),
                           remote_mta=_typed(fields.get("remote-mta")) or reporting_mta)


def _blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of the part: the stdlib parses them into messages; a malformed part stays text."""
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = []
        for block in payload:
            if isinstance(block, Message):
                blocks.append({str(k).lower(): _one_line(str(v)) for k, v in block.items()})
        if blocks:
            return blocks
        payload = ""
    text = payload if isinstance(payload, str) else ""
    if not text:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return _parse_text(text[:MAX_STATUS_BYTES])


def _parse_text(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
            continue
        if line[:1] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if colon and re.fullmatch(r"[A-Za-z0-9-]+", name.strip()):
            last = name.strip().lower()
            current[last] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _typed(value: str | None) -> str | None:
    """The value of an `address-type; value` field (rfc822; user@example.com)."""
    if not value:
        return None
    found = _TYPED.match(value)
    return (found.group(1) if found else value).strip() or None


def _address(value: str | None) -> str | None:
    if not value:
        return None
    found = _ADDRESS.search(value.strip())
    if not found:
        return None
    address = found.group(1).strip().strip("<>").lower()
    return address if 3 <= len(address) <= 320 and "@" in address else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
