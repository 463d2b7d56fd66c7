"""VERP: the envelope sender `bounces+maild.<instance>.<token>@example.com` ties a notice to the mail it is about."""

from __future__ import annotations

import re

from maild.tracking.ids import TRACKING


def envelope_sender(return_path: str | None, instance: str, token: str | None, fallback: str) -> str:
    """The MAIL FROM for one outbox row: its VERP address with `outbound.return_path` set, else `fallback`."""
    if not return_path or not token:
        return fallback
    local, _, domain = return_path.partition("@")
    return f"{local.split('+', 1)[0]}+maild.{instance}.{token}@{domain}"


def token_of(address: str, return_path: str, instance: str) -> str | None:
    """The token of a VERP address of ours (same local part and domain as `return_path`), else None."""
    local, _, domain = address.strip().lower().partition("@")
    base_local, _, base_domain = return_path.strip().lower().partition("@")
    base_local = base_local.split("+", 1)[0]
    if domain != base_domain or not local.startswith(base_local + "+"):
        return None
    tag = address.strip().partition("@")[0][len(base_local) + 1:]
    found = re.fullmatch(TRACKING.pattern, tag)
    return found.group(2) if found and found.group(1) == instance else None
