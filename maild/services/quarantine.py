"""Quarantine for people: retry an entry (parse and store it again, then match it), audited in the retry's
transaction."""

from __future__ import annotations

from sqlalchemy import Connection

from maild.classify.settings import classify_settings
from maild.config import Config
from maild.ingest import quarantine as q
from maild.ingest.authentication import normalise_ids
from maild.services import audit
from maild.services.actor import Actor
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Quarantine


def retry(db: Database, config: Config, actor: Actor, entry_id: int, max_bytes: int | None = None) -> q.RetryOutcome:
    """Parse and store entry `entry_id` again (with `max_bytes`, default the config's limit): one `quarantine.retry`
    entry with the reason before and the message or the reason after, committed with the retry; an entry resolved
    before changes nothing. Raises LookupError (no such entry), FileNotFoundError (its raw bytes are gone)."""
    actor.require("staff")

    def audited(conn: Connection, before: Quarantine, outcome: q.RetryOutcome) -> None:
        audit.record(conn, actor, "quarantine.retry", f"quarantine:{entry_id}",
                     before={"reason": before.reason, "retries": before.retries},
                     after={"message_id": outcome.message_id, "reason": outcome.reason,
                            "retries": before.retries + 1})

    outcome = q.retry(db, BlobStore(config.blob_dir), entry_id, max_bytes or config.ingest.max_message_bytes,
                      normalise_ids(config.matching.trusted_authserv_ids), classify_settings(config), also=audited)
    if outcome.message_id is not None:
        from maild.matchers.stage import MatchingStage

        MatchingStage(config, db).run([outcome.message_id])
    return outcome
