"""Detector: mail to our VERP return path (`bounces+maild.<instance>.<token>@...`): a notice about that mail."""

from __future__ import annotations

from maild.classify.base import BOUNCE, MailView, Settings, Verdict
from maild.classify.detectors.auto_reply import auto_reply_signs
from maild.classify.detectors.notice import ROBOT_SENDER
from maild.classify.view import ENVELOPE_HEADERS
from maild.outbound.verp import token_of

NAME = "verp"


def addressed_token(mail: MailView, settings: Settings) -> tuple[str, str] | None:
    """(VERP address, token) when the mail was sent to one of our VERP addresses."""
    if not settings.return_path:
        return None
    if not any("+maild." in value for name in ENVELOPE_HEADERS for value in mail.headers.get(name, ())):
        return None  # the cheap look first: most mail is not addressed to a VERP address
    for address in mail.envelope_to:
        token = token_of(address, settings.return_path, settings.instance_id)
        if token is not None:
            return address, token
    return None


def detect(mail: MailView, settings: Settings) -> Verdict:
    found = addressed_token(mail, settings)
    if found is not None:
        address, token = found
        robot = mail.return_path == "" or ROBOT_SENDER.match(mail.from_addr)
        if auto_reply_signs(mail) and not robot:
            return Verdict(NAME, verp_token=token, evidence=f"to {address}: an auto-reply, not a delivery failure")
        return Verdict(NAME, BOUNCE, f"sent to our VERP address {address}", verp_token=token)
    return Verdict(NAME)
