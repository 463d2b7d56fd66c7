"""Outage benchmark (issue 11 items 3 and 22): how soon `maild run` resumes after its servers come back.

Runs the daemon in this process (default ingest settings: reconnect_max_delay 8 s) against a private Dovecot and
a fresh PostgreSQL database, sending to an aiosmtpd sink, then:
  (a) IMAP outage: Dovecot stopped for --down seconds; a message appended once it is back; seconds from
      Dovecot's return to the message being stored;
  (b) database outage: the database refuses connections for --down seconds (the shared server keeps running);
      a message appended meanwhile; seconds from the database's return to the message being stored, and to
      a mail queued at that moment being sent.
Before issue 11: 13.3 s after 30 s of IMAP outage, 24 s after 30 s of database outage, and sending never.
The last line printed is JSON.

    .venv/bin/python bench/outage.py [--down 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maild.config import load_config  # noqa: E402
from maild.daemon import Daemon  # noqa: E402
from maild.outbound import outbox  # noqa: E402
from maild.store.blobs import BlobStore  # noqa: E402
from maild.store.models import Message  # noqa: E402
from tests.helpers import make_message  # noqa: E402
from tests.outbound.conftest import SinkHandler, free_port  # noqa: E402
from tests.outbound.helpers import make_raw  # noqa: E402
from tests.support.dovecot import Dovecot  # noqa: E402
from tests.support.pg_outage import allow_connections, refuse_connections  # noqa: E402

PG_ADMIN = os.environ.get("MAILD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _until(predicate, timeout: float = 300.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `predicate()` holds (polled every 50 ms)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"gave up after {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=30.0, help="seconds each outage lasts")
    args = parser.parse_args()
    name = f"maild_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    pg_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    sink = SinkHandler()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    with tempfile.TemporaryDirectory() as tmp:
        server = Dovecot(Path(tmp) / "dovecot")
        server.start()
        user, password = next(iter(server.users.items()))
        os.environ["MAILD_BENCH_IMAP_PASSWORD"] = password
        home = Path(tmp) / "home"
        (home / "rules").mkdir(parents=True)
        (home / "maild.yaml").write_text(yaml.safe_dump({
            "database": {"url": pg_url}, "storage": {"blob_dir": "blobs"},
            "sources": [{"name": "bench", "type": "imap", "host": server.host, "port": server.port,
                         "security": "plain", "username": user, "password_env": "MAILD_BENCH_IMAP_PASSWORD",
                         "timeout": 10}],
            "outbound": {"transport": {"type": "smtp", "host": "127.0.0.1", "port": controller.port,
                                       "security": "plain", "timeout": 5}},
            "tracking": {"enabled": False}, "web": {"enabled": False}}))
        config = load_config(home / "maild.yaml", environ={"MAILD_BENCH_IMAP_PASSWORD": password})
        daemon = Daemon(config)
        thread = threading.Thread(target=daemon.run, daemon=True)

        def stored() -> int:
            with daemon.db.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(Message.__table__)).scalar_one())

        results: dict[str, float] = {"down_s": args.down}
        try:
            server.append_many(user, "INBOX", [make_message(subject="first")])
            daemon.db.upgrade()
            thread.start()
            _until(lambda: stored() == 1)

            server.stop()
            time.sleep(args.down)  # the outage itself (what is measured is the way back)
            server.start()
            back = time.monotonic()
            server.append_many(user, "INBOX", [make_message(subject="after the IMAP outage")])
            _until(lambda: stored() == 2)
            results["imap_resume_s"] = round(time.monotonic() - back, 2)

            refuse_connections(pg_url)
            server.append_many(user, "INBOX", [make_message(subject="during the database outage")])
            time.sleep(args.down)
            allow_connections(pg_url)
            back = time.monotonic()
            outbox.enqueue(daemon.db, BlobStore(config.blob_dir), key="bench", raw=make_raw("bench"),
                           sender="sales@example.test", recipients=["anna@customer.example"], subject="offer bench",
                           header_message_id="<maild.test0.bench@example.test>")
            _until(lambda: stored() == 3)
            results["db_ingest_resume_s"] = round(time.monotonic() - back, 2)
            _until(lambda: len(sink.received) == 1)
            results["db_send_resume_s"] = round(time.monotonic() - back, 2)
        finally:
            allow_connections(pg_url)
            daemon.stop.set()
            thread.join(60)
            server.close()
            controller.stop()
            daemon.db.dispose()
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(results))


if __name__ == "__main__":
    main()
