"""What the shipped packs rely on: `wrote_to` counts what a person of us sent (not a rule's reminders), a mail about a
meeting is signed by the meeting's owner, a notice knows whether its mail is filed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from maild.rules.actions import signer
from maild.rules.context import OwnMail, wrote_to
from maild.rules.engine import RulesEngine
from maild.store.blobs import BlobStore
from maild.store.db import Database
from tests.outbound.helpers import queue
from tests.rules.test_engine_support import customer, invoice, make_config, on_sweep, rule, rules, send

D = timedelta(days=1)


def test_wrote_to_leaves_out_what_a_rule_sent(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    invoice(db, tp, "FA-1", date(2026, 11, 3))
    engine = RulesEngine(config, db, rules(rule("remind", on_sweep("invoice", "due_on", 7 * D), [send()])),
                         clock=lambda: datetime(2026, 11, 12, 9, tzinfo=UTC))
    assert engine.sweep() == 1  # a reminder to anna@mueller.example, by a rule
    own = OwnMail.from_config(config)
    with db.engine.connect() as conn:
        assert not wrote_to(conn, own, "anna@mueller.example", None)
    queue(db, BlobStore(config.blob_dir), "by-hand-1", to="anna@mueller.example")  # `maild send` by a person
    with db.engine.connect() as conn:
        assert wrote_to(conn, own, "anna@mueller.example", None)
        assert not wrote_to(conn, own, "other@mueller.example", None)


def test_signer_of_a_meeting_owner(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    assert signer("lena.berg@ourco.example", config) == {"name": "Lena Berg", "email": "lena.berg@ourco.example",
                                                         "address": "lena.berg@ourco.example"}
    assert signer("Lena Hoffmann <lena@ourco.example>", config)["name"] == "Lena Hoffmann"
    assert signer("Lena Hoffmann", config) == {"name": "Lena Hoffmann", "email": "billing@ourco.example",
                                               "address": "billing@ourco.example"}


def test_the_owner_notice_does_not_claim_a_filing_that_is_off(db: Database, tmp_path: Path) -> None:
    import email
    import email.policy
    import shutil

    from maild.rules.model import SendAction
    from tests.rules.test_engine_support import add_event, expr, inbound_mail, on_event, outbox_rows

    config = make_config(tmp_path, db, outbound={"company": {"name": "Ourco GmbH"}})
    shutil.copytree(Path(__file__).parents[2] / "maild" / "samples" / "templates" / "new-thread",
                    tmp_path / "templates" / "new-thread")
    tp, _ = customer(db)
    message = inbound_mail(db, tp, "anna@mueller.example", datetime(2026, 11, 12, 8, tzinfo=UTC), subject="Angebot")
    engine = RulesEngine(config, db, rules(rule("notify", on_event("mail.matched"), [
        ("send", SendAction(template="new-thread", to=expr("owner")))])),
        clock=lambda: datetime(2026, 11, 12, 9, tzinfo=UTC))
    add_event(db, "mail.matched", tp, message)
    assert engine.process_events() == 1
    row, = outbox_rows(db)
    notice = email.message_from_bytes(BlobStore(config.blob_dir).get(row.raw_sha256), policy=email.policy.default)
    text = notice.get_body(("plain",)).get_content()
    assert "it is not filed into a folder on the mail server" in text and "being filed" not in text
