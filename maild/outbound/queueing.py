"""Queueing prepared mail: outbox rows, tracking ids and tracked links in one transaction, once per key.

`mailing` (one mail) and `batch` (many) both queue through here; this module knows neither of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from maild.config import Config
from maild.outbound import outbox
from maild.outbound.prepared import PreparedMail
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import TrackingId
from maild.tracking.links import store_links

Queued = tuple[PreparedMail, str, str]  # (mail, idempotency key, template)


def queue(config: Config, db: Database, mail: PreparedMail, *, key: str, template: str,
          also: outbox.Also | None = None) -> tuple[int, bool]:
    """Record the tracking id (so replies thread back to the third party) and enqueue, once per key."""
    return queue_many(config, db, [(mail, key, template)], also)[0]


def queue_many(config: Config, db: Database, items: Sequence[Queued],
               also: outbox.Also | None = None) -> list[tuple[int, bool]]:
    """`queue` for many mails: (outbox id, created) per item, in order; each key queued at most once.
    `also(conn, results)` runs in the same transaction (an audit entry)."""
    entries = [outbox.Entry(key=key, raw=mail.raw, sender=config.outbound.sender, recipients=[mail.recipient.address],
                            subject=mail.subject, header_message_id=mail.message_id,
                            thirdparty_id=(mail.recipient.thirdparty or {}).get("id"),
                            contact_id=(mail.recipient.contact or {}).get("id"), template=template,
                            tracking_token=mail.token, durable=mail.durable)
               for mail, key, template in items]

    def belongings(conn: Connection, results: list[tuple[int, bool]]) -> None:
        created = [(mail, entry) for (mail, _, _), entry, (_, new) in zip(items, entries, results, strict=True) if new]
        if created:
            conn.execute(db.insert_ignore(TrackingId.__table__),
                         [{"token": mail.token, "thirdparty_id": entry.thirdparty_id, "contact_id": entry.contact_id}
                          for mail, entry in created])
            store_links(db, [(mail.token, mail.links) for mail, _ in created if mail.links], conn)
        if also is not None:
            also(conn, results)

    return outbox.enqueue_many(db, BlobStore(config.blob_dir), entries, belongings)
