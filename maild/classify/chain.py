"""Run the detectors in order; the first that names a kind decides, and every verdict is kept as a reason.

Bounce detectors come before the auto-reply one: many real delivery-failure notices carry
`Auto-Submitted: auto-replied`. Classification never raises: a mail it cannot read is kind "unknown" with
the error as its reason (its raw bytes are kept like any other's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from email.message import Message

from maild.classify import view as views
from maild.classify.base import (
    AUTO_REPLY,
    BOUNCE,
    FEEDBACK,
    HUMAN,
    UNKNOWN,
    Classification,
    Detector,
    Settings,
    Verdict,
)
from maild.classify.detectors import auto_reply, dsn, feedback, list_mail, notice, notification, verp

log = logging.getLogger("maild.classify")

DETECTORS: dict[str, Detector] = {
    "dsn": dsn.detect,
    "feedback": feedback.detect,
    "notice": notice.detect,
    "verp": verp.detect,
    "auto_reply": auto_reply.detect,
    "list": list_mail.detect,
    "notification": notification.detect,
}
ORDER: tuple[str, ...] = tuple(DETECTORS)
TOKEN_SCAN_BYTES = 4_000_000  # our tracking ids are looked for in this much of the raw mail (the returned original)


def classify_bytes(raw: bytes, settings: Settings) -> Classification:
    try:
        message = views.parse(raw)
    except Exception as exc:  # the stdlib's lenient parser should not raise; if it does, it is this mail's oddity
        return Classification(UNKNOWN, [f"error: {type(exc).__name__}: {exc}"[:500]])
    return classify(message, raw, settings)


def classify(message: Message, raw: bytes, settings: Settings, order: Sequence[str] = ORDER) -> Classification:
    """The kind of one parsed mail, with every verdict that had something to say."""
    try:
        mail = views.view(message)
        reasons: list[str] = []
        addressed = verp.addressed_token(mail, settings)
        verp_token = addressed[1] if addressed else None
        for name in order:
            verdict: Verdict = DETECTORS[name](mail, settings)
            if verdict.kind is None:
                if verdict.evidence:
                    reasons.append(f"{verdict.detector}: {verdict.evidence}")
                continue
            reasons.append(f"{verdict.detector}: {verdict.evidence}")
            tokens = our_tokens(raw, settings.instance_id) if verdict.kind in (BOUNCE, FEEDBACK, AUTO_REPLY) else []
            return Classification(verdict.kind, reasons, list(verdict.recipients), verdict.return_date, tokens,
                                  verp_token)
        return Classification(HUMAN, reasons or ["no detector found machine mail"], [], None, [], verp_token)
    except Exception as exc:  # a detector's bug on odd input: recorded, never a crash of ingest
        log.warning("classification failed: %s: %s", type(exc).__name__, exc)
        return Classification(UNKNOWN, [f"error: {type(exc).__name__}: {exc}"[:500]])


def our_tokens(raw: bytes, instance: str) -> list[str]:
    """Our tracking tokens (maild.<instance>.<token>) anywhere in the mail: a returned original's Message-ID."""
    if not instance:
        return []
    pattern = re.compile(rb"maild\." + re.escape(instance.encode()) + rb"\.([A-Za-z0-9_-]{8,40})")
    found: list[str] = []
    for match in pattern.finditer(raw, 0, TOKEN_SCAN_BYTES):
        token = match.group(1).decode("ascii")
        if token not in found:
            found.append(token)
        if len(found) >= 20:
            break
    return found
