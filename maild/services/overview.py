"""The quarantine and the daemon's status for people (sources, lag, errors, leases)."""

from __future__ import annotations

from typing import Any

from maild.clock import as_utc
from maild.ingest import quarantine
from maild.status import collect
from maild.store.db import Database


def quarantined(db: Database, *, include_resolved: bool = False) -> list[dict[str, Any]]:
    return [{"id": q.id, "reason": q.reason, "size": q.size, "source": q.source_name, "folder": q.folder,
             "created_at": (as_utc(q.created_at) or q.created_at).isoformat(), "retries": q.retries,
             "resolved_message_id": q.resolved_message_id}
            for q in quarantine.entries(db, include_resolved=include_resolved)]


def status(db: Database, *, classifying: bool = True) -> dict[str, Any]:
    return collect(db, classifying=classifying)
