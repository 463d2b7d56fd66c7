"""Invoice and dunning PDFs: valid, one page, the reference and umlauts in the text as stored."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from maild.templates.pdf import dunning_pdf, invoice_pdf, pdf_text
from maild.templates.sample import sample_context


def parties(language: str = "de"):
    context = sample_context(language)
    return context["invoice"], context["company"], context["thirdparty"]


def pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", pdf))


@pytest.mark.parametrize("language", ["de", "en"])
def test_invoice_pdf(language: str) -> None:
    invoice, company, thirdparty = parties(language)
    pdf = invoice_pdf(invoice, company, thirdparty, language, compress=False)
    assert pdf.startswith(b"%PDF")
    assert pages(pdf) == 1
    assert b"(FA2611-0007)" in pdf
    assert "Müller & Söhne Maschinenbau KG".encode("cp1252") in pdf  # umlauts as WinAnsi bytes
    total = "1.823,68\xa0€" if language == "de" else "€1,823.68"
    assert total.encode("cp1252") in pdf
    assert ("Rechnung" if language == "de" else "Invoice").encode() in pdf


@pytest.mark.parametrize(("level", "title"), [(1, "Zahlungserinnerung"), (2, "2. Mahnung"), (3, "Letzte Mahnung"),
                                              (7, "Letzte Mahnung")])
def test_dunning_pdf_levels(level: int, title: str) -> None:
    invoice, company, thirdparty = parties("de")
    pdf = dunning_pdf(invoice, company, thirdparty, level, "de", compress=False)
    assert pdf.startswith(b"%PDF")
    assert pages(pdf) == 1
    assert f"({title} FA2611-0007)".encode("cp1252") in pdf
    assert "Grüßen".encode("cp1252") in pdf


def test_dunning_level_must_be_positive() -> None:
    with pytest.raises(ValueError, match="level"):
        dunning_pdf(*parties(), level=0, language="de")


def test_compressed_by_default_and_deterministic() -> None:
    first = invoice_pdf(*parties(), "de")
    assert first.startswith(b"%PDF")
    assert b"/FlateDecode" in first
    assert first == invoice_pdf(*parties(), "de")


def test_characters_outside_the_core_fonts_never_crash() -> None:
    invoice, company, thirdparty = parties("de")
    thirdparty = {**thirdparty, "name": "Łódź Ężyk 株式会社 — “Quotes” 🙂"}
    invoice = {**invoice, "currency": "PLN", "lines": [{"description": "Č" * 200, "quantity": 2, "unit_price": "9.5"}],
               "total_net": None, "total_vat": None, "total": None, "amount_due": None, "vat_rate": 23}
    pdf = invoice_pdf(invoice, company, thirdparty, "pl", compress=False)
    assert pdf.startswith(b"%PDF") and pages(pdf) == 1
    assert "Lódz Ezyk ???? \u2014 \u201cQuotes\u201d ?".encode("cp1252") in pdf
    assert b"...)" in pdf  # the long description was cut to its cell
    assert pdf_text("Straße € \u2013 x\u202f1") == "Straße € \u2013 x 1"


def test_totals_computed_from_lines_when_missing() -> None:
    invoice = {"ref": "FA2612-0001", "date": "2026-12-01", "due_date": "2026-12-15", "currency": "EUR",
               "lines": [{"description": "Beratung", "quantity": Decimal("2"), "unit_price": Decimal("100"),
                          "vat_rate": 19}]}
    pdf = invoice_pdf(invoice, {"name": "A"}, {"name": "B"}, "de", compress=False)
    for amount in ("200,00\xa0€", "38,00\xa0€", "238,00\xa0€"):
        assert amount.encode("cp1252") in pdf
    assert b"(01.12.2026)" in pdf


@pytest.mark.parametrize("style", ["", "B"])
def test_width_table_matches_fpdf2(style: str) -> None:
    """Right-aligned cells are placed with _Doc.width; it must agree with fpdf2's own measure."""
    from maild.templates.pdf import _Doc

    doc = _Doc({"ref": "X"}, {}, {}, "de", compress=False)
    doc.pdf.set_font("helvetica", style, 11)
    for text in ("FA2611-0007", "1.823,68\xa0€", "Müller & Söhne", "ßüÄ \u2013 \u201cx\u201d", ""):
        value = pdf_text(text)
        assert doc.width(value) == pytest.approx(doc.pdf.get_string_width(value))


def test_an_invoice_known_by_its_amount_alone_shows_no_table_and_no_vat_split() -> None:
    invoice = {"ref": "FA2612-0002", "date": "2026-12-01", "due_date": "2026-12-15", "currency": "EUR",
               "lines": [], "total_net": Decimal("500.00"), "total_vat": Decimal("0.00"), "total": Decimal("500.00"),
               "amount_due": Decimal("500.00")}
    pdf = invoice_pdf(invoice, {"name": "A"}, {"name": "B"}, "de", compress=False)
    assert b"(Gesamt)" in pdf and "500,00\xa0€".encode("cp1252") in pdf
    for absent in (b"(USt.)", b"(Nettobetrag)", b"(Beschreibung)", "(0,00\xa0€)".encode("cp1252")):
        assert absent not in pdf
    with_lines = invoice_pdf(*parties("de"), "de", compress=False)
    assert b"(USt.)" in with_lines and b"(Beschreibung)" in with_lines
