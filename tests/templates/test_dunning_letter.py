"""The reminder letter PDF read back with pypdf: its text per language, and where the address stands (the DIN 5008
form B address window)."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pypdf import PdfReader

from maild.templates.pdf import dunning_pdf
from maild.templates.salutation import addressee, greeting
from maild.templates.sample import sample_context

MM = 25.4 / 72  # one PDF point in mm
GRETA = {"name": "Greta Nord", "salutation": "Frau", "title": "Dr.", "first_name": "Greta", "last_name": "Nord"}


def letter(language: str, contact: dict[str, Any] | None = GRETA, level: int = 2, **invoice: Any) -> bytes:
    context = sample_context(language)
    data = {**context["invoice"], "amount_paid": Decimal("300.00"), "late_fees": Decimal("5.00"),
            "amount_due": Decimal("1528.68"), **invoice}
    thirdparty = {**context["thirdparty"], "name": "Nordlicht Handel GmbH", "street": "Hafenstraße 12",
                  "zip": "20457", "town": "Hamburg", "country": "Deutschland"}
    return dunning_pdf(data, context["company"], thirdparty, level, language, contact=contact,
                       reminder_date=date(2026, 12, 1), pay_by=date(2026, 12, 11))


def placed_text(pdf: bytes) -> list[tuple[str, float, float]]:
    """(text, x mm from the left, y mm from the top) of each text run, on page 1."""
    out: list[tuple[str, float, float]] = []
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    height = float(page.mediabox.height)

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        if text.strip():
            x, y = tm[4] * cm[0] + cm[4], tm[5] * cm[3] + cm[5]
            out.append((text.strip(), x * MM, (height - y) * MM))
    page.extract_text(visitor_text=visit)
    return out


def test_german_letter_says_everything_and_the_address_is_in_the_window() -> None:
    pdf = letter("de")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    for expected in ("2. Mahnung FA2611-0007", "Sehr geehrte Frau Dr. Nord,", "Datum", "01.12.2026",
                     "Rechnungsdatum", "03.11.2026", "Fällig am", "17.11.2026", "Mahnstufe",
                     "Rechnungsbetrag", "1.823,68", "Bezahlt", "-300,00", "Offener Betrag", "1.523,68",
                     "Mahngebühren", "5,00", "Zu zahlender Betrag", "1.528,68",
                     "bis zum 11.12.2026", "IBAN DE89 3704 0044 0532 0130 00", "BIC COBADEFFXXX",
                     "Mit freundlichen Grüßen", "Nordlicht Software GmbH"):
        assert expected in text, expected
    placed = {line: (x, y) for line, x, y in placed_text(pdf)}
    window = ["Nordlicht Handel GmbH", "Frau Dr. Greta Nord", "Hafenstraße 12", "20457 Hamburg"]
    for line in window:  # the recipient's lines: inside the field, below its 17.7 mm return-address zone
        x, y = placed[line]
        assert 20 <= x <= 22 and 45 + 17.7 <= y <= 90, (line, x, y)
    assert [placed[line][1] for line in window] == sorted(placed[line][1] for line in window)
    assert "DEUTSCHLAND" not in text  # our own country is not written
    sender = next((x, y) for line, x, y in placed_text(pdf) if line.startswith("Nordlicht Software GmbH, Große"))
    assert 20 <= sender[0] <= 22 and 45 <= sender[1] < 45 + 17.7  # the return address line
    subject = placed["2. Mahnung FA2611-0007"]
    assert subject[1] > 90  # below the address field


def test_english_letter_a_foreign_address_and_the_fallback_greeting() -> None:
    contact = {"name": "Urs Berg", "street": "Postfach 44", "zip": "8021", "town": "Zürich", "country": "Schweiz"}
    text = PdfReader(io.BytesIO(letter("en", contact, level=3))).pages[0].extract_text()
    for expected in ("Final reminder FA2611-0007", "Dear Urs Berg,", "Amount due now", "€1,528.68",
                     "Late fees", "by Dec 11, 2026", "Postfach 44", "8021 Zürich", "SCHWEIZ"):
        assert expected in text, expected
    text = PdfReader(io.BytesIO(letter("de", None, level=1))).pages[0].extract_text()
    assert "Zahlungserinnerung FA2611-0007" in text and "Sehr geehrte Damen und Herren," in text


@pytest.mark.parametrize(("contact", "language", "greets", "line"), [
    (GRETA, "de", "Sehr geehrte Frau Dr. Nord,", "Frau Dr. Greta Nord"),
    (GRETA, "en", "Dear Ms Dr. Nord,", "Ms Dr. Greta Nord"),
    ({"salutation": "Herr", "last_name": "Berg", "first_name": "Urs"}, "de-CH", "Sehr geehrter Herr Berg,",
     "Herr Urs Berg"),
    ({"salutation": "Mr", "last_name": "Smith"}, "fr", "Dear Mr Smith,", "Mr Smith"),
    ({"name": "Kim Lee"}, "de", "Guten Tag Kim Lee,", "Kim Lee"),
    ({"salutation": "Frau"}, "de", "Sehr geehrte Damen und Herren,", ""),
    (None, "en", "Dear Sir or Madam,", ""),
])
def test_greeting_and_addressee(contact: dict[str, Any] | None, language: str, greets: str, line: str) -> None:
    assert greeting(contact, language) == greets
    assert addressee(contact, language) == line
