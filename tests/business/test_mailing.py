"""The shipped templates render with real records: the invoice, the contact's names, the customer's address."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
import yaml

from maild.business import invoices, meetings
from maild.business.people import split_name
from maild.config import Config
from maild.directory import service
from maild.outbound import mailing
from maild.store.db import Database
from tests.helpers import config_at

SAMPLES = Path(mailing.__file__).resolve().parents[1] / "samples" / "templates"


def _text(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def _config(tmp_path: Path, db: Database) -> Config:
    path = tmp_path / "maild.yaml"
    path.write_text(yaml.safe_dump({
        "database": {"url": db.url}, "storage": {"blob_dir": "blobs"}, "tracking": {"enabled": False},
        "outbound": {"templates_dir": str(SAMPLES), "sender": "lena@nordlicht.example", "sender_name": "Lena",
                     "company": {"name": "Nordlicht GmbH", "iban": "DE89 3704 0044 0532 0130 00"}}}))
    return config_at(path)


@pytest.fixture
def customer_with_invoice(db: Database) -> tuple[int, int]:
    tp = service.add_thirdparty(db, name="Müller & Söhne KG", external_id="C-1", language="de",
                                custom_fields={"Street": "Königstraße 12", "zip": "70173", "City": "Stuttgart"},
                                addresses=["info@mueller.example"])
    contact = service.add_contact(db, thirdparty_id=tp, name="Jürgen Weiß", role="Einkauf",
                                  addresses=["j.weiss@mueller.example", "jw@mueller.example"])
    invoices.upsert_invoice(db, ref="FA-7", thirdparty_id=tp, issued_on="2026-11-03", due_on="2026-11-17",
                            lines=[{"description": "Wartung", "quantity": "2", "unit_price": "100", "vat_rate": "19"}])
    invoices.record_payment(db, "FA-7", amount="38", paid_on="2026-11-05", reference="B-1")
    return tp, contact


def test_recipient_views(db: Database, customer_with_invoice: tuple[int, int]) -> None:
    _tp, contact = customer_with_invoice
    recipient = mailing.resolve_recipient(db, "C-1")
    assert recipient.contact is not None and recipient.thirdparty is not None
    assert {k: recipient.contact[k] for k in ("id", "first_name", "last_name", "title", "email")} == {
        "id": contact, "first_name": "Jürgen", "last_name": "Weiß", "title": "", "email": "j.weiss@mueller.example"}
    assert {k: recipient.thirdparty.get(k) for k in ("street", "zip", "town", "country", "email")} == {
        "street": "Königstraße 12", "zip": "70173", "town": "Stuttgart", "country": None,
        "email": "info@mueller.example"}
    assert split_name("Weiß, Jürgen") == ("Jürgen", "Weiß") and split_name("Cher") == ("Cher", "Cher")
    assert split_name("  ") == ("", "")


def test_dunning_reminder_with_a_real_invoice(tmp_path: Path, db: Database,
                                              customer_with_invoice: tuple[int, int]) -> None:
    config = _config(tmp_path, db)
    mail = mailing.prepare(config, db, template="dunning-reminder", to="C-1", invoice_ref="FA-7")
    assert mail.subject == "Zahlungserinnerung: Rechnung FA-7 vom 03.11.2026"
    assert mail.attachments == ["FA-7.pdf"]
    body = _text(mail.raw)
    assert body.startswith("Hallo Jürgen Weiß,\n\n")
    assert "über 200,00\xa0€ war am 17. November 2026 fällig" in body  # 238.00 - 38.00 paid
    assert "IBAN DE89 3704 0044 0532 0130 00\n" in body and "http" not in body


def test_invoice_of_another_party_and_unknown_invoices_are_refused(tmp_path: Path, db: Database,
                                                                   customer_with_invoice: tuple[int, int]) -> None:
    config = _config(tmp_path, db)
    other = service.add_thirdparty(db, name="Other", external_id="C-2")
    service.add_contact(db, thirdparty_id=other, name="Olga", addresses=["olga@other.example"])
    with pytest.raises(ValueError, match="belongs to another third party"):
        mailing.prepare(config, db, template="invoice", to="C-2", invoice_ref="FA-7")
    with pytest.raises(ValueError, match="no invoice FA-404"):
        mailing.prepare(config, db, template="invoice", to="C-1", invoice_ref="FA-404")
    # a document reference (for matching) has no amounts: no PDF saying "total 0.00" goes out
    tp_id = customer_with_invoice[0]
    service.add_document(db, ref="FA-DOC-1", thirdparty_id=tp_id)
    with pytest.raises(ValueError, match="FA-DOC-1 is only a document reference, without invoice data"):
        mailing.prepare(config, db, template="invoice", to="C-1", invoice_ref="FA-DOC-1")


def test_followup_to_an_unknown_address_with_a_real_meeting(tmp_path: Path, db: Database) -> None:
    config = _config(tmp_path, db)
    meeting_id = meetings.add_meeting(
        db, meetings.OwnMail(), subject="Rollout", start_at=meetings.datetime.fromisoformat("2026-11-19T13:00+00:00"),
        end_at=meetings.datetime.fromisoformat("2026-11-19T14:00+00:00"), next_steps=["Send the offer"])
    with db.engine.connect() as conn:
        meeting = meetings.meeting_context(conn, meeting_id, "Europe/Berlin")
    mail = mailing.prepare(config, db, template="followup", to="someone@unknown.example",
                           extra={"meeting": meeting})
    assert mail.subject == "Following up on our meeting: Rollout"
    text = _text(mail.raw)
    assert text.startswith("Hello,\n\nthank you for taking the time to meet on November 19, 2026")
    assert "Send the offer" in text
