"""A template with a PDF goes out once over real SMTP, lands in Sent, is opened and clicked, and the
customer's answer threads back to the right third party: all on one timeline."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import httpx
import yaml
from sqlalchemy import select

from maild.business.invoices import upsert_invoice
from maild.cli.setup import initialise
from maild.daemon import Daemon
from maild.directory.service import add_contact, add_thirdparty
from maild.store.db import Database
from maild.store.models import Event, MessageMatch
from maild.tracking.app import create_app
from maild.tracking.server import TrackingServer
from maild.tracking.signing import load_secret
from tests.conftest import Mailbox
from tests.helpers import config_at, invoke
from tests.outbound.conftest import Sink


def test_send_track_and_thread_back(tmp_path: Path, smtp_sink: Sink, mailbox: Mailbox) -> None:
    config_file = initialise(tmp_path / "home", samples=False)  # its own directory, not the demo
    data = yaml.safe_load(config_file.read_text())
    data["sources"] = [mailbox.source(name="sales")]
    data["matching"].update({"instance_id": "inst01", "own_domains": ["example.com"]})
    data["outbound"].update({"sender": "sales@example.com", "reply_to_plus": True, "sent_folder_source": "sales",
                             "transport": {"type": "smtp", "host": smtp_sink.host, "port": smtp_sink.port,
                                           "security": "plain", "timeout": 5}})
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    config = config_at(config_file)
    db = Database(config.database_url)
    tp = add_thirdparty(db, name="Müller Bau GmbH", language="de")
    add_contact(db, thirdparty_id=tp, name="Anna Becker", addresses=["anna@mueller.example"])
    upsert_invoice(db, ref="FA2611-0007", thirdparty_id=tp, issued_on="2026-11-01", due_on="2026-11-15",
                   amount="250.00")
    template = tmp_path / "home" / "templates" / "hello"
    template.mkdir()
    (template / "subject.txt").write_text("Ihre Rechnung {{ invoice.ref }}\n")
    (template / "body.txt").write_text("Hallo {{ contact.name }},\nanbei {{ invoice.ref }}.\n")
    (template / "body.html").write_text('<p>Hallo {{ contact.name }}, <a href="https://portal.example/i">Portal</a></p>')

    sent = invoke(config_file, "send", "hello", "--to", "Müller Bau GmbH", "--invoice", "FA2611-0007", "--key", "k-1",
                 env={"MAILD_TEST_IMAP_PASSWORD": mailbox.password})
    assert "sent 250" in sent.stdout
    again = invoke(config_file, "send", "hello", "--to", "Müller Bau GmbH", "--invoice", "FA2611-0007",
                  "--key", "k-1", env={"MAILD_TEST_IMAP_PASSWORD": mailbox.password})
    assert "not sent again" in again.stdout
    assert len(smtp_sink.handler.received) == 1, "one key, one mail"
    delivered = email.message_from_bytes(smtp_sink.handler.received[0].data, policy=email.policy.default)
    assert delivered["Subject"] == "Ihre Rechnung FA2611-0007"
    assert [p.get_filename() for p in delivered.walk() if p.get_filename()] == ["FA2611-0007.pdf"]
    assert delivered["Reply-To"].startswith("sales+maild.inst01.")
    _, sent_uids = mailbox.uids("Sent")
    assert len(sent_uids) == 1, "a copy in the Sent folder"

    html = next(p for p in delivered.walk() if p.get_content_type() == "text/html").get_content()
    click_url = re.search(r'href="([^"]+/c/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    pixel_url = re.search(r'src="([^"]+/o/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    server = TrackingServer(create_app(db, load_secret(config.tracking, config.base_dir), config.tracking),
                            "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        path = click_url.split("/c/", 1)[1]
        wait = 60.0  # generous: the machine may be loaded
        click = httpx.get(f"{base}/c/{path}", headers={"User-Agent": "Mozilla/5.0 (X11; Linux) Firefox/140"},
                          timeout=wait)
        assert (click.status_code, click.headers["location"]) == (302, "https://portal.example/i")
        assert httpx.get(f"{base}/o/{pixel_url.split('/o/', 1)[1]}", timeout=wait).status_code == 200
        assert httpx.get(f"{base}/c/{path[:-2]}xx", timeout=wait).status_code == 404, "altered token"
    finally:
        server.stop()

    answer = EmailMessage()
    answer["From"] = "Anna <anna.private@gmail.com>"  # a free-mail address: only the thread can place it
    answer["To"] = delivered["Reply-To"]
    answer["Subject"] = "Re: " + delivered["Subject"]
    answer["In-Reply-To"] = delivered["Message-ID"]
    answer["Message-ID"] = "<answer-1@gmail.example>"
    answer.set_content("Danke, wird überwiesen.")
    mailbox.append([answer.as_bytes()])
    Daemon(config).ingest_once()

    with db.engine.connect() as conn:
        decision = conn.execute(select(MessageMatch.__table__)).one()
        timeline = conn.execute(select(Event.__table__.c.type).where(Event.__table__.c.thirdparty_id == tp)
                                .order_by(Event.__table__.c.id)).scalars().all()
    assert (decision.status, decision.thirdparty_id, decision.matcher) == ("matched", tp, "thread")
    assert timeline == ["invoice.created", "mail.sent", "mail.clicked", "mail.opened", "mail.matched"]


def test_tracking_can_be_off_per_template(tmp_path: Path) -> None:
    config_file = initialise(tmp_path / "home", samples=False)  # its own directory, not the demo
    db = Database(config_at(config_file).database_url)
    add_contact(db, thirdparty_id=add_thirdparty(db, name="ACME"), name="John", addresses=["john@acme.example"])
    for name, options in (("tracked", None), ("private", "tracking: false\n")):
        folder = tmp_path / "home" / "templates" / name
        folder.mkdir()
        (folder / "subject.txt").write_text("Hi\n")
        (folder / "body.txt").write_text("Hi {{ contact.name }}\n")
        (folder / "body.html").write_text('<p>Hi <a href="https://acme.example/x">x</a></p>')
        if options:
            (folder / "options.yaml").write_text(options)
    tracked = invoke(config_file, "send", "tracked", "--to", "ACME", "--dry-run").stdout
    private = invoke(config_file, "send", "private", "--to", "ACME", "--dry-run").stdout
    assert "/o/o." in tracked and "/c/c." in tracked
    assert "/o/" not in private and "https://acme.example/x" in private
