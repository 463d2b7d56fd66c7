"""Run by test_crash.py in a subprocess: queue a batch of 50 (idempotently), then send everything due.

usage: python -m tests.outbound.crash_sender DB_URL BLOB_DIR SMTP_PORT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from maild.config import SmtpTransportConfig
from maild.ingest.context import new_owner_id
from maild.outbound import outbox
from maild.outbound.sender import OutboxSender
from maild.outbound.smtp import SmtpTransport
from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.outbound.helpers import queue

BATCH = 50


async def main(db_url: str, blob_dir: str, port: int) -> None:
    db = Database(db_url)
    blobs = BlobStore(Path(blob_dir))
    for i in range(BATCH):
        queue(db, blobs, f"crash-{i:02d}", to=f"p{i}@customer{i % 3}.example")
    print("queued", flush=True)
    outbox.recover_stale(db)  # a claim of a killed sender on this host is taken back at once
    cfg = SmtpTransportConfig(type="smtp", host="127.0.0.1", port=port, security="plain", timeout=10,
                              max_connections=2)
    sender = OutboxSender(db, blobs, SmtpTransport(cfg, None), new_owner_id(), concurrency=2)
    try:
        while sum((await sender.send_due(5)).values()):
            pass
    finally:
        await sender.transport.close()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
