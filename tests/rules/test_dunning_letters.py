"""`send.attach: [dunning_pdf]` in a rule: the reminder letter of the right level, to the contact at the postal
address, in the recipient's language, through the outbox."""

from __future__ import annotations

import email
import email.policy
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pypdf import PdfReader
from sqlalchemy import update

from maild.rules.engine import RulesEngine
from maild.rules.model import SendAction
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Contact, ThirdParty
from tests.rules.test_engine_support import (
    customer,
    expr,
    invoice,
    make_config,
    on_sweep,
    outbox_rows,
    rule,
    rules,
    set_,
)

D = timedelta(days=1)


def letters(config_home: Path, db: Database) -> list[tuple[str, str]]:
    """(file name, text) of each PDF in the queued mail."""
    blobs = BlobStore(config_home / "blobs")
    out = []
    for row in outbox_rows(db):
        message = email.message_from_bytes(blobs.get(row.raw_sha256), policy=email.policy.default)
        for part in message.walk():
            if part.get_filename():
                text = PdfReader(io.BytesIO(part.get_content())).pages[0].extract_text()
                out.append((part.get_filename(), text))
    return out


def test_a_rule_attaches_the_reminder_letter_of_its_level(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db, dunning={"payment_days": 14},
                         outbound={"company": {"name": "Nordlicht Software GmbH", "iban": "DE89 3704 0044 0532 0130 00",
                                               "country": "Deutschland"}})
    tp, contact = customer(db)
    with db.engine.begin() as conn:
        conn.execute(update(ThirdParty.__table__).where(ThirdParty.__table__.c.id == tp).values(
            language="de", street="Hafenstraße 12", zip="20457", town="Hamburg"))
        conn.execute(update(Contact.__table__).where(Contact.__table__.c.id == contact).values(
            salutation="Frau", title="Dr.", first_name="Anna", last_name="Becker", language="de"))
    invoice(db, tp, "FA2611-0105", date(2026, 11, 3), amount="1190.00", dunning_level=1, late_fees="5.00")
    ruleset = rules(
        rule("level-2", on_sweep("invoice", "due_on", 21 * D), [
            ("send", SendAction(template="reminder", to=expr("contact"), attach=("dunning_pdf",))),
            set_(invoice__dunning_level="2")]),
        rule("level-3", on_sweep("invoice", "due_on", 35 * D), [
            ("send", SendAction(template="reminder", to=expr("contact"), attach=("dunning_pdf:3", "invoice_pdf")))],
             conditions=("invoice.dunning_level == 2",)))
    engine = RulesEngine(config, db, ruleset, clock=lambda: datetime(2026, 11, 30, 9, tzinfo=UTC))
    assert engine.sweep() == 2
    (name, text), = letters(tmp_path, db)
    assert name == "Mahnung-2-FA2611-0105.pdf"
    for expected in ("2. Mahnung FA2611-0105", "Sehr geehrte Frau Dr. Becker,", "Frau Dr. Anna Becker",
                     "Hafenstraße 12", "20457 Hamburg", "30.11.2026", "bis zum 14.12.2026", "Mahngebühren",
                     "1.195,00", "IBAN DE89 3704 0044 0532 0130 00"):
        assert expected in text, expected
    engine = RulesEngine(config, db, ruleset, clock=lambda: datetime(2026, 12, 9, 9, tzinfo=UTC))
    assert engine.sweep() == 1
    names = [name for name, _ in letters(tmp_path, db)]
    assert names == ["Mahnung-2-FA2611-0105.pdf", "FA2611-0105.pdf", "Mahnung-3-FA2611-0105.pdf"]
    assert "Letzte Mahnung FA2611-0105" in letters(tmp_path, db)[2][1]



def test_maild_send_attaches_a_reminder_letter_by_hand(db: Database, tmp_path: Path) -> None:
    from tests.helpers import invoke

    make_config(tmp_path, db, outbound={"company": {"name": "Nordlicht Software GmbH"}})
    tp, _ = customer(db)
    invoice(db, tp, "FA2611-0105", date(2026, 11, 3), amount="1190.00")
    config_file = tmp_path / "maild.yaml"
    out = invoke(config_file, "send", "reminder", "--to", "anna@mueller.example", "--invoice", "FA2611-0105",
                 "--letter", "2", "--dry-run").stdout
    message = email.message_from_string(out, policy=email.policy.default)
    assert [p.get_filename() for p in message.walk() if p.get_filename()] == ["Reminder-2-FA2611-0105.pdf"]
    refused = invoke(config_file, "send", "reminder", "--to", "anna@mueller.example", "--letter", "2", check=False)
    assert refused.returncode == 2 and "--letter needs --invoice REF" in refused.stderr
