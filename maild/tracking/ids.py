"""maild's own tracking ids: `maild.<instance>.<token>` inside Message-IDs and plus-addresses.

Replies carry our Message-ID in In-Reply-To/References, or write to `sales+maild.<instance>.<token>@...`;
either way the token leads back to the third party. Tokens of other maild instances are ignored.
"""

from __future__ import annotations

import re
import secrets

TRACKING = re.compile(r"maild\.([a-z0-9]{4,16})\.([A-Za-z0-9_-]{8,40})")


def new_token() -> str:
    return secrets.token_urlsafe(12)


def message_id(instance: str, token: str, domain: str) -> str:
    return f"<maild.{instance}.{token}@{domain}>"


def plus_address(address: str, instance: str, token: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local.split('+', 1)[0]}+maild.{instance}.{token}@{domain}"


def tokens_in(texts: list[str], instance: str) -> list[str]:
    """Our instance's tokens found in the given header values, first occurrence first."""
    found: list[str] = []
    for text in texts:
        for match in TRACKING.finditer(text or ""):
            if match.group(1) == instance and match.group(2) not in found:
                found.append(match.group(2))
    return found
