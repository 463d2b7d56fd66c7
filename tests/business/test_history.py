"""`maild timeline`: one third party's history, oldest first, one readable line per interaction, recorded by the
real paths (Maildir ingest and matching, invoices and payments, meetings, tasks, notes, the outbox)."""

from __future__ import annotations

import json
import mailbox
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import select

from maild.business import invoices, meetings
from maild.business.history import describe
from maild.business.notes import add_note
from maild.business.tasks import create_task
from maild.business.timeline import append_event
from maild.daemon import Daemon
from maild.directory import service
from maild.own_mail import OwnMail
from maild.store.db import Database
from maild.store.models import OutboxMessage
from tests.helpers import config_at, invoke, make_message, write_config


def test_timeline_of_a_customer(tmp_path: Path, db_url: str) -> None:
    box = mailbox.Maildir(str(tmp_path / "mail"), create=True)
    config_path = write_config(tmp_path / "home", db_url, [{"name": "local", "type": "maildir",
                                                            "path": str(tmp_path / "mail")}])
    data = yaml.safe_load(config_path.read_text())
    data["rules"] = {"timezone": "Europe/Berlin"}
    data["outbound"] = {"sender": "billing@ourco.example", "transport": {"type": "file", "directory": "sent"}}
    config_path.write_text(yaml.safe_dump(data))
    config = config_at(config_path)
    db = Database(config.database_url)
    db.upgrade()
    tp = service.add_thirdparty(db, name="Müller Bau GmbH", external_id="C-1")
    service.add_contact(db, thirdparty_id=tp, name="Anna Becker", addresses=["anna@mueller.example"])
    other = service.add_thirdparty(db, name="Someone Else", addresses=["x@else.example"])
    box.add(make_message(subject="Angebot Dachsanierung", sender="anna@mueller.example"))
    box.add(make_message(subject="not theirs", sender="x@else.example"))
    assert not Daemon(config, db).ingest_once().errors
    invoices.upsert_invoice(db, ref="FA-7", thirdparty_id=tp, issued_on="2026-11-02", due_on="2026-11-16",
                            amount="250.00")
    invoices.record_payment(db, "FA-7", amount="250", paid_on="2026-11-20", reference="BANK-1")
    meetings.add_meeting(db, OwnMail.from_config(config), subject="Baustellentermin", thirdparty_id=tp,
                         start_at=datetime(2026, 11, 24, 9, tzinfo=UTC), end_at=datetime(2026, 11, 24, 10, tzinfo=UTC))
    with db.engine.begin() as conn:
        create_task(conn, title="Nachkalkulation", thirdparty_id=tp, owner="lena@ourco.example")
        add_note(conn, thirdparty_id=tp, text="Prefers calls after 3 pm", author="lena")
    template = tmp_path / "home" / "templates" / "thanks"
    template.mkdir(parents=True)
    (template / "subject.txt").write_text("Danke, {{ contact.name }}\n")
    (template / "body.txt").write_text("Danke.\n")
    invoke(config_path, "send", "thanks", "--to", "anna@mueller.example", "--key", "t-1")
    with db.engine.begin() as conn:  # as the tracking endpoint records them
        outbox_id = conn.execute(select(OutboxMessage.__table__.c.id)).scalar_one()
        append_event(conn, "mail.opened", thirdparty_id=tp, data={"outbox_id": outbox_id, "machine": None})
        append_event(conn, "mail.clicked", thirdparty_id=tp, data={"outbox_id": outbox_id, "url": "https://x.example/",
                                                                   "machine": "scanner:bot"})

    lines = invoke(config_path, "timeline", "C-1").stdout.splitlines()
    assert lines[0] == f"#{tp} Müller Bau GmbH: 11 event(s), oldest first"
    # the mail shows at its own date (2026-11-20 10:00 UTC), in the rules' time zone; the rest at when it happened
    assert lines[1] == ("2026-11-20 11:00  mail in   \"Angebot Dachsanierung\" from anna@mueller.example "
                        "[address: sender anna@mueller.example is a contact of Müller Bau GmbH]")
    assert [line[18:] for line in lines[2:]] == [
        "invoice   FA-7 250.00 EUR, due 2026-11-16",
        "payment   250.00 EUR for FA-7 on 2026-11-20 (BANK-1)",
        "invoice   FA-7: open -> paid (fully paid)",
        "invoice   FA-7 paid",
        'meeting   "Baustellentermin" 2026-11-24 10:00 - 11:00',
        'task      "Nachkalkulation" for lena@ourco.example',
        "note      Prefers calls after 3 pm (lena)",
        'mail out  "Danke, Anna Becker" to anna@mueller.example',
        'opened    "Danke, Anna Becker"',
        'clicked   https://x.example/ in "Danke, Anna Becker" (likely a machine: proxy or link scanner)',
    ]
    assert "not theirs" not in "\n".join(lines)

    only = invoke(config_path, "timeline", "Müller Bau GmbH", "--type", "payment", "--type", "mail.sent").stdout
    assert [line[18:28] for line in only.splitlines()[1:]] == ["payment   ", "mail out  "]
    newest = json.loads(invoke(config_path, "timeline", str(tp), "--limit", "3", "--json").stdout)
    assert [e["type"] for e in newest] == ["mail.sent", "mail.opened", "mail.clicked"]
    assert newest[0]["data"]["to"] == ["anna@mueller.example"] and newest[2]["data"]["url"] == "https://x.example/"
    assert "no events match" in invoke(config_path, "timeline", "C-1", "--since", "2099-01-01").stdout
    assert [line[18:] for line in invoke(config_path, "timeline", str(other)).stdout.splitlines()[1:]] == [
        'mail in   "not theirs" from x@else.example [address: sender x@else.example is an address of Someone Else]']
    unknown = invoke(config_path, "timeline", "nobody", check=False)
    assert unknown.returncode == 1 and "nobody" in unknown.stderr
    shown = invoke(config_path, "thirdparty", "show", "C-1").stdout
    assert 'mail out  "Danke, Anna Becker"' in shown and f"maild timeline {tp}" in shown


def test_an_event_of_an_unknown_shape_shows_its_data() -> None:
    assert describe("mail.sent", {"subject": "x", "to": ["a@b"]}) == 'mail out  "x" to a@b'
    assert describe("invoice.created", {"amount": "1"}) == 'invoice.created {"amount": "1"}'  # no ref: raw data
    assert describe("custom.thing", {"b": 1}) == 'custom.thing {"b": 1}'
