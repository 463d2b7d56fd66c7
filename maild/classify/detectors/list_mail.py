"""Detector: list and bulk mail (List-Id, List-Unsubscribe, Precedence: list|bulk)."""

from __future__ import annotations

from maild.classify.base import LIST, MailView, Settings, Verdict

NAME = "list"


def detect(mail: MailView, settings: Settings) -> Verdict:
    for name in ("list-id", "list-unsubscribe"):
        if name in mail.headers:
            return Verdict(NAME, LIST, f"{name}: {mail.header(name)[:100]}")
    precedence = mail.header("precedence").strip().lower()
    if precedence in ("list", "bulk"):
        return Verdict(NAME, LIST, f"Precedence: {precedence}")
    return Verdict(NAME)
