"""The Sent folder (SPECIAL-USE \\Sent): copying sent mail into it and finding copies there."""

from __future__ import annotations

from collections.abc import Sequence

from imapclient import IMAPClient
from imapclient.imapclient import SEEN, SENT

from maild.imap.folders import find_special_folder


def sent_folder(client: IMAPClient) -> str:
    """The account's Sent folder; LookupError when it has none."""
    folder = find_special_folder(client, SENT)
    if folder is None:
        raise LookupError("the IMAP account has no folder with SPECIAL-USE \\Sent")
    return folder


def sent_folder_append(client: IMAPClient, raw: bytes) -> str:
    """APPEND `raw` (flagged \\Seen) to the folder with SPECIAL-USE \\Sent; returns that folder's name."""
    folder = sent_folder(client)
    client.append(folder, raw, flags=[SEEN])
    return folder


def copies_in_sent(client: IMAPClient, message_ids: Sequence[str]) -> dict[str, bool]:
    """For each Message-ID, whether a mail with it stands in the Sent folder (one SEARCH each)."""
    client.select_folder(sent_folder(client), readonly=True)
    return {mid: bool(client.search(["HEADER", "Message-ID", mid])) for mid in message_ids}
