"""Subdomain matching through the real pipeline (Maildir -> store -> snapshot from the database -> decision)."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import select

from maild.daemon import Daemon
from maild.directory.service import add_thirdparty
from maild.store.db import Database
from maild.store.models import Message, MessageMatch
from tests.helpers import config_at, make_message, write_config


def test_mail_from_a_subdomain_is_matched_by_its_registered_domain(tmp_path: Path, db_url: str) -> None:
    box = mailbox.Maildir(tmp_path / "mail", create=True)
    for sender in ("anna@mail.customer.example", "bob@mx.eu.customer.example", "carl@customer.co.uk",
                   "dan@eu.gmail.com"):
        box.add(make_message(subject=sender, sender=sender))
    config = write_config(tmp_path / "home", db_url, [{"name": "local", "type": "maildir", "path": str(box._path)}])
    config.write_text(config.read_text() + "matching:\n  instance_id: inst01\n  own_domains: [example.test]\n")
    db = Database(config_at(config).database_url)
    db.upgrade()
    ids = {
        "customer": add_thirdparty(db, name="Customer AG", domains=["customer.example"]),
        "eu": add_thirdparty(db, name="Customer EU", domains=["eu.customer.example"]),
        "registry": add_thirdparty(db, name="Wrongly registered", domains=["co.uk", "gmail.com"]),
    }
    assert Daemon(config_at(config)).ingest_once().errors == {}
    m, mm = Message.__table__, MessageMatch.__table__
    with db.engine.connect() as conn:
        decisions = {row.subject: row for row in conn.execute(
            select(m.c.subject, mm.c.status, mm.c.thirdparty_id, mm.c.matcher, mm.c.reason)
            .join(mm, mm.c.message_id == m.c.id))}
    assert (decisions["anna@mail.customer.example"].thirdparty_id, decisions["anna@mail.customer.example"].matcher) \
        == (ids["customer"], "domain")
    assert "under customer.example" in decisions["anna@mail.customer.example"].reason
    assert decisions["bob@mx.eu.customer.example"].thirdparty_id == ids["eu"], "the most specific domain wins"
    assert decisions["carl@customer.co.uk"].status == "unmatched", "co.uk is a public suffix: no one's"
    assert decisions["dan@eu.gmail.com"].status == "unmatched", "free-mail, subdomain or not"
