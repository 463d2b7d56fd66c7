"""Whether a mail's copy is in the Sent folder of `outbound.sent_folder_source` (searched by its Message-ID):
what helps a person decide about an ambiguous send."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maild.config import Config, ImapSourceConfig
from maild.imap.sent import copies_in_sent


@dataclass(frozen=True)
class SentCopies:
    found: dict[str, bool]  # Message-ID -> a copy is in the Sent folder
    unknown: str | None = None  # why nothing could be looked up (then `found` is empty)

    def describe(self, message_id: str) -> str:
        if message_id in self.found:
            return "found in the Sent folder" if self.found[message_id] else "not in the Sent folder"
        return f"unknown ({self.unknown or 'not looked up'})"


def look_up(config: Config, message_ids: Sequence[str]) -> SentCopies:
    """One IMAP login, one SEARCH per Message-ID; an IMAP problem is reported in `unknown`, never raised."""
    name = config.outbound.sent_folder_source
    if not name:
        return SentCopies({}, "no outbound.sent_folder_source configured")
    source = next((s for s in config.sources if s.name == name), None)
    if not isinstance(source, ImapSourceConfig):
        return SentCopies({}, f"outbound.sent_folder_source: no IMAP source named {name!r}")
    if not message_ids:
        return SentCopies({})
    from maild.imap.connection import connect, quietly_logout

    try:
        client = connect(source, Path(config.base_dir))
    except Exception as exc:  # any failure to reach the server is "unknown", said with its reason
        return SentCopies({}, f"cannot log in to {source.host}: {exc}")
    try:
        found = copies_in_sent(client, message_ids)
    except Exception as exc:
        return SentCopies({}, f"IMAP error: {exc}")
    finally:
        quietly_logout(client)
    return SentCopies(found)
