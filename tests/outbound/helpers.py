"""Shared builders for the outbound tests."""

from __future__ import annotations

from maild.outbound import outbox
from maild.outbound.compose import compose
from maild.store.blobs import BlobStore
from maild.store.db import Database


def make_raw(key: str, to: str = "anna@customer.example") -> bytes:
    return compose(sender="sales@example.test", sender_name="Sales", to=[to], subject=f"offer {key}",
                   text=f"hello {key}", message_id=f"<maild.test0.{key}@example.test>")


def queue(db: Database, blobs: BlobStore, key: str, to: str = "anna@customer.example",
          thirdparty_id: int | None = None) -> int:
    raw = make_raw(key, to)
    outbox_id, _ = outbox.enqueue(db, blobs, key=key, raw=raw, sender="sales@example.test", recipients=[to],
                                  subject=f"offer {key}", header_message_id=f"<maild.test0.{key}@example.test>",
                                  thirdparty_id=thirdparty_id)
    return outbox_id
