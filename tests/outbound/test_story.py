"""A send's story: failed and refused sends on the third party's timeline, mail to a known domain on its
timeline, every attempt kept across `outbox retry`, and what `outbox list/show` say about an ambiguous send."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from click.testing import CliRunner
from sqlalchemy import update

from maild.business import history
from maild.cli.context import AppContext
from maild.cli.outbox import outbox as outbox_group
from maild.clock import utcnow
from maild.directory.service import add_contact, add_thirdparty
from maild.outbound import attempts, outbox
from maild.outbound.recipients import resolve_recipient
from maild.outbound.sender import OutboxSender
from maild.services import outbox as outbox_service
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import OutboxMessage
from tests.conftest import Mailbox
from tests.outbound.conftest import Sink
from tests.outbound.helpers import make_raw, queue

T = OutboxMessage.__table__


def send_due(db: Database, blobs: BlobStore, sink: Sink, max_attempts: int = 8) -> dict[str, int]:
    sender = OutboxSender(db, blobs, sink.transport(), "story", max_attempts=max_attempts)

    async def go() -> dict[str, int]:
        try:
            return await sender.send_due(100)
        finally:
            await sender.transport.close()

    return asyncio.run(go())


def due_now(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(T).where(T.c.status == "retry").values(next_attempt_at=utcnow()))


def cli(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(outbox_group, list(args), obj=AppContext(str(config), False))
    return result.exit_code, result.output


def write_config(tmp_path: Path, db: Database, **extra: object) -> Path:
    config = tmp_path / "maild.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": db.url}, "storage": {"blob_dir": "blobs"}, **extra}))
    return config


def test_refused_and_failed_sends_are_on_the_third_partys_timeline(db: Database, blobs: BlobStore,
                                                                   smtp_sink: Sink) -> None:
    acme = add_thirdparty(db, name="ACME", domains=["acme.example"])
    refused = queue(db, blobs, "refused", to="anna@acme.example", thirdparty_id=acme)
    smtp_sink.handler.rcpt_reply = "550 5.1.1 no such user"
    assert send_due(db, blobs, smtp_sink)["failed"] == 1
    smtp_sink.handler.rcpt_reply = None
    smtp_sink.handler.data_reply = "451 4.3.0 try again"
    given_up = queue(db, blobs, "given-up", to="bob@acme.example", thirdparty_id=acme)
    assert send_due(db, blobs, smtp_sink, max_attempts=2)["retry"] == 1
    due_now(db)
    assert send_due(db, blobs, smtp_sink, max_attempts=2)["failed"] == 1

    entries = {entry.data.get("outbox_id"): entry for entry in history.read(db, acme)}
    assert entries[refused].type == "mail.refused"
    assert entries[refused].text == 'refused   "offer refused" to anna@acme.example: 550 5.1.1 no such user'
    assert entries[given_up].type == "mail.send_failed" and entries[given_up].data["outcome"] == "failed"
    assert "gave up after 2 attempts" in entries[given_up].text and "451 4.3.0 try again" in entries[given_up].text


def test_mail_to_an_unknown_address_at_a_known_domain_is_on_that_third_partys_timeline(
        db: Database, blobs: BlobStore, smtp_sink: Sink) -> None:
    acme = add_thirdparty(db, name="ACME", domains=["acme.example"])
    add_contact(db, thirdparty_id=acme, name="Anna", addresses=["anna@acme.example"])
    both = add_thirdparty(db, name="Shared One", domains=["shared.example"])
    add_thirdparty(db, name="Shared Two", domains=["shared.example"])

    for address, expected in (("new.person@acme.example", acme), ("x@eu.mail.acme.example", acme),
                              ("someone@shared.example", None), ("someone@gmail.com", None)):
        recipient = resolve_recipient(db, address)
        assert (recipient.thirdparty or {}).get("id") == expected, address
        assert recipient.contact is None
    assert both  # a domain of two third parties decides neither

    recipient = resolve_recipient(db, "new.person@acme.example")
    queue(db, blobs, "to-domain", to=recipient.address, thirdparty_id=recipient.thirdparty["id"])
    assert send_due(db, blobs, smtp_sink)["sent"] == 1
    (entry,) = history.read(db, acme, types=["mail"])
    assert entry.text == 'mail out  "offer to-domain" to new.person@acme.example'


def test_retry_keeps_the_earlier_attempts_and_show_tells_the_story(db: Database, blobs: BlobStore,
                                                                   smtp_sink: Sink, tmp_path: Path) -> None:
    config = write_config(tmp_path, db)
    row_id = queue(db, blobs, "story")
    smtp_sink.handler.data_reply = "451 4.7.1 greylisted"
    assert send_due(db, blobs, smtp_sink)["retry"] == 1
    smtp_sink.handler.data_reply = "554 5.7.1 looks like spam"
    due_now(db)
    assert send_due(db, blobs, smtp_sink)["failed"] == 1
    code, out = cli(config, "retry", str(row_id))
    assert code == 0, out
    smtp_sink.handler.data_reply = None
    assert send_due(db, blobs, smtp_sink)["sent"] == 1

    story = attempts.story(db, row_id)
    assert [(a.outcome, a.reply_code) for a in story] == [("retry", 451), ("refused", 554), ("requeued", None),
                                                          ("sent", 250)]
    assert story[0].reply == "451 4.7.1 greylisted" and story[0].data_started_at is not None
    assert f":{smtp_sink.port}" in story[0].connection
    code, out = cli(config, "show", str(row_id))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"outbox {row_id}: sent"
    story_at = lines.index("delivery story:")
    assert [line.split()[3] for line in lines[story_at + 1:]] == ["retry", "refused", "requeued", "sent"]
    assert "451 4.7.1 greylisted" in lines[story_at + 1] and "DATA began" in lines[story_at + 1]
    assert "554 5.7.1 looks like spam" in lines[story_at + 2]
    assert cli(config, "show", "999999") == (1, "Error: no outbox row 999999 (see `maild outbox list`)\n")


def append_sent(mailbox: Mailbox, raw: bytes) -> None:
    with mailbox.server.client(mailbox.user, mailbox.password) as imap:
        imap.append("Sent", raw)


def test_an_ambiguous_send_shows_when_data_began_whether_a_sent_copy_exists_and_how_to_decide(
        db: Database, blobs: BlobStore, tmp_path: Path, mailbox: Mailbox) -> None:
    config = write_config(tmp_path, db, sources=[mailbox.source("mbox")],
                          outbound={"sent_folder_source": "mbox"})
    arrived, lost = queue(db, blobs, "arrived"), queue(db, blobs, "lost")
    outbox.claim(db, "gone-host:1:x", 10, 60)
    outbox.mark_data_started(db, arrived, "gone-host:1:x", "10.0.0.1:40001 -> smtp.example:587")
    outbox.mark_data_started(db, lost, "gone-host:1:x", "10.0.0.1:40002 -> smtp.example:587")
    with db.engine.begin() as conn:  # the daemon died: its claims expire
        conn.execute(update(T).values(claimed_until=utcnow()))
    assert outbox.recover_stale(db) == {"sent": 0, "retry": 0, "ambiguous": 2}
    append_sent(mailbox, make_raw("arrived"))  # e.g. the server itself keeps a copy of what it accepted
    page = outbox_service.listing(db, status="ambiguous")  # the web app's list filters by the new status too
    assert sorted(item["id"] for item in page.items) == [arrived, lost]

    code, out = cli(config, "list", "--status", "ambiguous")
    assert code == 0, out
    first, second, hint = out.splitlines()
    assert "on 10.0.0.1:40001 -> smtp.example:587" in first and "Sent copy: found in the Sent folder" in first
    assert "DATA began 20" in first and "Sent copy: not in the Sent folder" in second
    assert f"retry {arrived} {lost}" in hint and f"mark-sent {arrived} {lost}" in hint
    code, out = cli(config, "show", str(lost))
    assert code == 0 and "Sent copy: not in the Sent folder" in out and f"`maild outbox retry {lost}`" in out

    assert cli(config, "mark-sent", str(arrived))[0] == 0
    assert cli(config, "mark-sent", str(arrived))[0] == 1  # no longer ambiguous
    assert cli(config, "retry", str(lost))[0] == 0
    assert outbox.get(db, arrived).status == "sent" and outbox.get(db, lost).status == "queued"
    assert [a.outcome for a in attempts.story(db, arrived)] == ["ambiguous", "sent"]
    assert [a.outcome for a in attempts.story(db, lost)] == ["ambiguous", "requeued"]
