"""Detector: other machine-sent mail: the null sender, no-reply addresses, auto-generated notifications."""

from __future__ import annotations

import re

from maild.classify.base import NOTIFICATION, MailView, Settings, Verdict

NAME = "notification"
NO_REPLY = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|noreply|notifications?|notify|alerts?|"
                      r"mailer-daemon|postmaster)(?:[+@]|$)", re.I)


def detect(mail: MailView, settings: Settings) -> Verdict:
    if mail.return_path == "":
        return Verdict(NAME, NOTIFICATION, "null sender (Return-Path: <>)")
    if NO_REPLY.match(mail.from_addr):
        return Verdict(NAME, NOTIFICATION, f"From: {mail.from_addr}")
    return Verdict(NAME)
