"""Detector: a delivery-failure notice in a server's own format (not RFC 3464): Exchange, Gmail, qmail, Exim..."""

from __future__ import annotations

import re

from maild.bounces import status as codes
from maild.bounces import text as notice_text
from maild.classify.base import BOUNCE, MailView, Settings, Verdict

NAME = "notice"
ROBOT_SENDER = re.compile(r"^(?:mailer-daemon|mail-daemon|maildaemon|postmaster|mail delivery (?:sub)?system|"
                          r"mdaemon|mailer|mmdf|smtp|daemon|microsoftexchange[0-9a-f]*|nobody)(?:@|$)", re.I)
REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|antw|sv|vs|r|rif|ref|wg|fw|fwd|tr)\s*:", re.I)
SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status notification|failure|failed|has failed|problem|notification)|"
    r"mail delivery failed|returned mail|return(?:ed|ing) (?:to sender|message)|failure notice|"
    r"could not send message|message not delivered|non[- ]?delivery|nondeliverable|delivery report|"
    r"mail system error|warning: could not send|unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|"
    r"unzustellbare|non remis|échec de (?:la )?remise|non distribuable|no se puede entregar|"
    r"no entregado|mancato recapito|non recapitabile|onbestelbaar|niet afgeleverd|delayed mail|"
    r"message delayed|delivery delayed|warning: message .* delayed|mail delivery problem|"
    r"delivery notification|delivery warning",
    re.I)


def detect(mail: MailView, settings: Settings) -> Verdict:
    robot = bool(ROBOT_SENDER.match(mail.from_addr) or ROBOT_SENDER.match(mail.from_name))
    subject = SUBJECT.search(mail.subject)
    if not robot and not subject:
        return Verdict(NAME)
    # A bounce-like subject alone is how people write about parcels, too: without other signs of a machine,
    # only flufl.bounce's stricter detectors may name recipients.
    machine = robot or (not REPLY_PREFIX.match(mail.subject) and _machine_signs(mail))
    own = frozenset(a.lower() for a in mail.envelope_to)
    recipients = notice_text.failed_recipients(mail.message, mail.text, own, own_patterns=machine)
    signs = [f"From: {mail.from_addr}" if robot else "", f"Subject: {mail.subject[:80]}" if subject else ""]
    signs_text = "; ".join(s for s in signs if s)
    if recipients:
        summary = ", ".join(f"{r.address} {r.action} {r.status or ''}".strip() for r in recipients[:5])
        return Verdict(NAME, BOUNCE, f"{signs_text}: {summary}", tuple(recipients))
    if robot and subject:
        return Verdict(NAME, BOUNCE, f"{signs_text}: no recipient named in the notice")
    return Verdict(NAME)


def _machine_signs(mail: MailView) -> bool:
    """Signs that a machine wrote it: the null sender, Auto-Submitted, or an SMTP status in the text."""
    if mail.return_path == "" or mail.header("auto-submitted").lower().startswith("auto"):
        return True
    return bool(codes.ENHANCED.search(mail.text[:20000]) or re.search(r"^\s*5\d\d[ -]", mail.text[:20000], re.M))
