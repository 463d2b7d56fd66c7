"""The per-account IMAP connection limit: which folders keep a connection of their own and which share one.

Providers cap the connections one account may hold (Gmail 15; Dovecot's default `mail_max_userip_connections`
is 10 per user and address). An account's folders each get their own IDLE connection while they fit under the
source's `max_connections`; beyond it the first `max_connections - 1` keep theirs and the rest are polled in turn
over ONE shared connection (maild/ingest/sources/imap_shared.py).
"""

from __future__ import annotations

POLLED = " (polled)"  # the end of a polled folder's worker name (health, `maild status`)


def split_folders(folders: list[str], max_connections: int) -> tuple[list[str], list[str]]:
    """(folders with their own IDLE connection, folders polled over the shared one), each in config order."""
    if len(folders) <= max_connections:
        return list(folders), []
    own = max(0, max_connections - 1)
    return list(folders[:own]), list(folders[own:])


def worker_name(label: str, *, polled: bool) -> str:
    """The health board's name of a folder's ingest worker (`label` is `source/folder`)."""
    return f"ingest {label}{POLLED if polled else ''}"


def shared_connection_name(source: str) -> str:
    """The health board's name of an account's shared polling connection."""
    return f"ingest {source} (shared connection)"


def connection_of(label: str, worker_names: set[str]) -> str | None:
    """How running daemons reach a folder, from their workers' names: "idle" (its own connection), "polled"
    (the account's shared connection), or None when no running daemon reported it."""
    if worker_name(label, polled=True) in worker_names:
        return "polled"
    if worker_name(label, polled=False) in worker_names:
        return "idle"
    return None
