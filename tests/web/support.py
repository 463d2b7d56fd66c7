"""A web app over a real database with three users, and a client that logs in like a browser."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.testclient import TestClient

from maild.config import Config
from maild.services import tokens, users
from maild.services.actor import Actor
from maild.store.db import Database
from maild.web.app import create_app
from tests.helpers import config_at, write_config

PASSWORDS = {"ada": "admin password 1", "sam": "staff password 1", "vic": "viewer password 1"}
ROLES = {"ada": "admin", "sam": "staff", "vic": "viewer"}
ROOT = Actor("setup", "admin", "cli")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Site:
    config: Config
    db: Database
    app: Starlette
    home: Path

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://maild.test", follow_redirects=False)

    def logged_in(self, name: str) -> tuple[TestClient, str]:
        """A client with a session of user `name`, and the session's CSRF token."""
        client = self.client()
        login_form = client.get("/login")
        token = CSRF.search(login_form.text)
        assert token, login_form.text
        answer = client.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": token.group(1)})
        assert answer.status_code == 303, answer.text
        page = client.get("/customers")
        assert page.status_code == 200, page.text
        found = CSRF.search(page.text)
        assert found
        return client, found.group(1)

    def token(self, name: str) -> dict[str, str]:
        _id, value = tokens.create(self.db, ROOT, name, "tests")
        return {"Authorization": f"Bearer {value}"}


def make_site(tmp_path: Path, db: Database, **web: Any) -> Site:
    config_file = write_config(tmp_path, db.url, [])
    config = config_at(config_file)
    config = config.model_copy(update={"web": config.web.model_copy(update={"listen_port": 0, **web})})
    for name, password in PASSWORDS.items():
        users.add_user(db, ROOT, name, password, ROLES[name])
    return Site(config, db, create_app(config, db), tmp_path)


def follow(client: TestClient, response: httpx.Response) -> httpx.Response:
    while response.status_code in (302, 303):
        response = client.get(response.headers["location"])
    return response


HOSTILE_HTML = """<html><head>
<link rel="stylesheet" href="{canary}/style.css">
<script>window.top.document.title = "PWNED"; fetch("{canary}/fetch");</script>
<script src="{canary}/script.js"></script>
<style>@import url("{canary}/import.css"); body {{ background: url("{canary}/bg.png"); }}</style>
</head><body onload="window.top.location = '{canary}/onload'">
<h1 id="greeting">Hello from a customer</h1>
<img src="{canary}/tracker.gif" alt="tracker">
<img src="x" onerror="fetch('{canary}/onerror')">
<iframe src="{canary}/frame"></iframe>
<a id="js" href="javascript:window.top.document.title='PWNED'">click me</a>
<form action="{canary}/form"><input name="q"></form>
<video poster="{canary}/poster.jpg"></video>
<object data="{canary}/object"></object>
<svg><image href="{canary}/svg.png"/></svg>
</body></html>"""


def html_message(subject: str, html: str, sender: str = "anna@mueller.example") -> bytes:
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    msg = EmailMessage()
    msg["From"] = f"Anna Becker <{sender}>"
    msg["To"] = "sales@ourco.example"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 21, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="mueller.example")
    msg.set_content("The text part of the hostile mail.")
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


@dataclass
class Seeded:
    customer_id: int
    hostile_id: int
    triage_id: int
    failed_outbox_id: int
    maildir: Path


def seed(site: Site, *, canary: str = "http://127.0.0.1:9") -> Seeded:
    """A customer with a contact and mail (one hostile HTML mail), a mail from an unknown sender waiting in triage,
    and a failed outbox row: all recorded by the real paths (Maildir ingest, matching, the outbox)."""
    import mailbox

    from sqlalchemy import select

    from maild.daemon import Daemon
    from maild.directory import service
    from maild.outbound import outbox as ob
    from maild.store.blobs import BlobStore
    from maild.store.models import Message
    from tests.helpers import make_message

    box_path = site.home / "mail"
    box = mailbox.Maildir(str(box_path), create=True)
    config = site.config.model_copy(update={"sources": [
        _maildir_source(str(box_path))]})
    site.config = config
    customer = service.add_thirdparty(site.db, name="Müller Bau GmbH", external_id="C-1")
    service.add_contact(site.db, thirdparty_id=customer, name="Anna Becker", addresses=["anna@mueller.example"])
    for n in range(3):
        box.add(make_message(subject=f"Angebot Dachsanierung {n}", body=f"Wir brauchen ein Angebot {n} für das Dach.",
                             sender="anna@mueller.example"))
    box.add(html_message("Hostile newsletter", HOSTILE_HTML.format(canary=canary)))
    box.add(make_message(subject="Frage zur Lieferung", body="Wann kommt die Lieferung der Ziegel?",
                         sender="karl@unknown-roofing.example"))
    report = Daemon(config, site.db).ingest_once()
    assert not report.errors, report.errors
    with site.db.engine.connect() as conn:
        ids = dict(conn.execute(select(Message.__table__.c.subject, Message.__table__.c.id)).all())
    outbox_id, _ = ob.enqueue(site.db, BlobStore(config.blob_dir), key="k-failed", raw=b"Subject: Mahnung\r\n\r\nx",
                              sender="billing@ourco.example", recipients=["anna@mueller.example"], subject="Mahnung",
                              header_message_id="<m1@ourco.example>", thirdparty_id=customer)
    [claimed] = ob.claim(site.db, "test-owner", 1, 60)
    assert ob.mark_failed(site.db, claimed.id or 0, "550 mailbox unavailable", "550 5.1.1 no such user",
                          owner="test-owner")
    return Seeded(customer, ids["Hostile newsletter"], ids["Frage zur Lieferung"], outbox_id, box_path)


def _maildir_source(path: str) -> Any:
    from maild.config import MaildirSourceConfig

    return MaildirSourceConfig(name="local", type="maildir", path=path)
