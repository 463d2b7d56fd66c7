"""One-page invoice and dunning PDFs with fpdf2's core fonts (no font files to ship).

Core fonts are WinAnsi (cp1252) encoded: umlauts, ß and € print as they are; any other character is
replaced by a close ASCII form or '?', so no customer name can make a PDF fail. The creation date is the
invoice date, so the same data gives the same bytes.

Layout is drawn with fpdf2's low-level operations (`text`, `line`, `rect`) placed where `cell()` would put
them: `cell()` and `multi_cell()` run fpdf2's general text shaping and line breaking, about ten times the
cost, for single-line labels whose width we know. Text that does not fit on one line still goes through
`multi_cell()`; a row that would cross the bottom margin starts a new page, as `cell()` does.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel import Locale
from fpdf import FPDF

from maild.templates.render import format_day, format_money, to_date, to_decimal
from maild.templates.salutation import addressee, greeting

ENCODING = "cp1252"
_REPLACE = {"\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2011": "-", "\u2212": "-", "\u00ad": "",
            "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "\u0131": "i", "Ħ": "H", "ħ": "h", "ŀ": "l", "Ŀ": "L"}

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice", "invoice_no": "Invoice no.", "date": "Date", "due": "Due date",
        "customer_no": "Customer no.", "pos": "#", "description": "Description", "qty": "Qty",
        "unit_price": "Unit price", "amount": "Amount", "net": "Net total", "vat": "VAT", "total": "Total",
        "paid": "Paid", "due_amount": "Amount due", "vat_id": "VAT ID", "bank": "Bank details",
        "pay_by": "Please transfer {amount} by {due} quoting the invoice number {ref}.",
        "reminder_1": "Payment reminder", "reminder_2": "Second payment reminder", "reminder_3": "Final reminder",
        "dunning_intro": "According to our records, invoice {ref} of {date} for {amount}, due on {due}, "
                         "has not been paid yet.",
        "dunning_1": "This may simply have been overlooked. If you have already paid, please disregard this "
                     "reminder.",
        "dunning_2": "We have not yet received your payment despite our reminder.",
        "dunning_3": "Despite our previous reminders the amount is still outstanding. Unless we receive "
                     "payment by the date below, we will have to take further steps.",
        "regards": "Kind regards",
        "letter_date": "Date", "invoice_date": "Invoice date", "level": "Reminder level",
        "invoice_amount": "Invoice amount", "open_amount": "Open amount", "fees": "Late fees",
        "total_due": "Amount due now",
        "pay_until": "Please transfer {amount} by {date} to the account below, quoting the invoice number {ref}.",
    },
    "de": {
        "invoice": "Rechnung", "invoice_no": "Rechnungsnr.", "date": "Datum", "due": "Fällig am",
        "customer_no": "Kundennr.", "pos": "Pos.", "description": "Beschreibung", "qty": "Menge",
        "unit_price": "Einzelpreis", "amount": "Betrag", "net": "Nettobetrag", "vat": "USt.", "total": "Gesamt",
        "paid": "Bezahlt", "due_amount": "Offener Betrag", "vat_id": "USt-IdNr.", "bank": "Bankverbindung",
        "pay_by": "Bitte überweisen Sie {amount} bis zum {due} unter Angabe der Rechnungsnummer {ref}.",
        "reminder_1": "Zahlungserinnerung", "reminder_2": "2. Mahnung", "reminder_3": "Letzte Mahnung",
        "dunning_intro": "Nach unseren Unterlagen ist die Rechnung {ref} vom {date} über {amount}, "
                         "fällig am {due}, noch nicht beglichen.",
        "dunning_1": "Sicher handelt es sich um ein Versehen. Falls Sie bereits bezahlt haben, betrachten Sie "
                     "dieses Schreiben bitte als gegenstandslos.",
        "dunning_2": "Trotz unserer Erinnerung ist Ihre Zahlung noch nicht eingegangen.",
        "dunning_3": "Trotz unserer Mahnungen ist der Betrag weiterhin offen. Geht die Zahlung nicht "
                     "bis zum unten genannten Datum ein, sehen wir uns zu weiteren Schritten gezwungen.",
        "regards": "Mit freundlichen Grüßen",
        "letter_date": "Datum", "invoice_date": "Rechnungsdatum", "level": "Mahnstufe",
        "invoice_amount": "Rechnungsbetrag", "open_amount": "Offener Betrag", "fees": "Mahngebühren",
        "total_due": "Zu zahlender Betrag",
        "pay_until": "Bitte überweisen Sie {amount} bis zum {date} auf das unten genannte Konto unter Angabe der "
                     "Rechnungsnummer {ref}.",
    },
}


def pdf_text(value: Any) -> str:
    """`value` as text the core fonts can print (cp1252); anything else becomes ASCII or '?'."""
    text = str(value)
    if text.isascii():
        return text  # cp1252 agrees with ASCII, and no key of _REPLACE is ASCII
    try:
        text.encode(ENCODING)
    except UnicodeEncodeError:
        pass
    else:
        if "\u00ad" not in text:  # the one key of _REPLACE that cp1252 can encode
            return text
    out = []
    for ch in text:
        ch = _REPLACE.get(ch, ch)
        try:
            ch.encode(ENCODING)
        except UnicodeEncodeError:
            ascii_form = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            ch = ascii_form or "?"
        out.append(ch)
    return "".join(out)


def invoice_pdf(invoice: dict[str, Any], company: dict[str, Any], thirdparty: dict[str, Any], language: str,
                compress: bool = True) -> bytes:
    """A one-page invoice: header, addresses, ref/date/due date, line items, totals."""
    doc = _Doc(invoice, company, thirdparty, language, compress)
    doc.letterhead(doc.t("invoice"))
    doc.line_items()
    doc.totals()
    doc.paragraph(doc.t("pay_by").format(amount=doc.money(doc.amount_due()), due=doc.day(invoice.get("due_date")),
                                          ref=invoice.get("ref", "")))
    doc.bank_details()
    return doc.output()


def dunning_pdf(invoice: dict[str, Any], company: dict[str, Any], thirdparty: dict[str, Any], level: int,
                language: str, compress: bool = True, *, contact: dict[str, Any] | None = None,
                reminder_date: date | None = None, pay_by: date | None = None) -> bytes:
    """A one-page reminder letter (DIN 5008, form B) for `invoice`: level 1 is a friendly reminder, 3 and above
    the last one. The recipient (the contact, when given, at their postal address or their company's) stands in
    the address window; the letter names the reminder date (default: today), the invoice's date, number and
    original due date, the amounts (invoice, paid, open, late fees, due now), the new payment date `pay_by`
    (default: 10 days after the reminder date) and the bank details of `company`."""
    if level < 1:
        raise ValueError(f"dunning level must be 1 or more, not {level}")
    step = min(level, 3)
    written = reminder_date or date.today()
    pay_until = pay_by or written + timedelta(days=10)
    doc = _Doc(invoice, company, thirdparty, language, compress)
    doc.letter_head()
    doc.address_window(contact)
    doc.info_block([(doc.t("letter_date"), doc.day(written)), (doc.t("invoice_no"), invoice.get("ref", "")),
                    (doc.t("invoice_date"), doc.day(invoice.get("date"))),
                    (doc.t("due"), doc.day(invoice.get("due_date"))),
                    *([(doc.t("customer_no"), thirdparty["external_id"])] if thirdparty.get("external_id") else []),
                    (doc.t("level"), str(level))])
    doc.fold_marks()
    pdf = doc.pdf
    pdf.set_xy(pdf.l_margin, SUBJECT_TOP)
    pdf.set_font("helvetica", "B", 12)
    doc.text(0, 7, f"{doc.t(f'reminder_{step}')} {invoice.get('ref', '')}", newline=True)
    pdf.ln(5)
    doc.paragraph(greeting(contact, language))
    doc.paragraph(doc.t("dunning_intro").format(
        ref=invoice.get("ref", ""), date=doc.day(invoice.get("date")), amount=doc.money(doc.open_amount()),
        due=doc.day(invoice.get("due_date"))))
    doc.paragraph(doc.t(f"dunning_{step}"))
    doc.dunning_totals()
    doc.paragraph(doc.t("pay_until").format(amount=doc.money(doc.amount_due()), date=doc.day(pay_until),
                                             ref=invoice.get("ref", "")))
    doc.bank_details()
    pdf.ln(3)
    doc.paragraph(f"{doc.t('regards')}\n{company.get('name', '')}")
    return doc.output()


# DIN 5008 form B (mm from the top-left corner of an A4 sheet): the address field is 85 x 45 at (20, 45), its
# first 17.7 mm for the return address and notes, the recipient's (up to 6) lines below; the information block
# at x 125 from y 50; the subject line below both; fold marks at 105 and 210, the punch mark at 148.5.
WINDOW_LEFT, WINDOW_TOP, WINDOW_WIDTH, WINDOW_HEIGHT = 20.0, 45.0, 85.0, 45.0
RETURN_ZONE = 17.7
INFO_LEFT, INFO_TOP = 125.0, 50.0
SUBJECT_TOP = 98.5
FOLD_MARKS = (105.0, 148.5, 210.0)


class _Doc:
    def __init__(self, invoice: dict[str, Any], company: dict[str, Any], thirdparty: dict[str, Any],
                 language: str, compress: bool) -> None:
        self.invoice, self.company, self.thirdparty = invoice, company, thirdparty
        base = (language or "en").replace("-", "_").split("_")[0]
        self.language = language
        self.labels = LABELS.get(base, LABELS["en"])
        self.locale = _locale(language)
        self.currency = str(invoice.get("currency") or "EUR")
        pdf = FPDF(format="A4")
        pdf.core_fonts_encoding = ENCODING  # core fonts are WinAnsi: € and umlauts print
        pdf.set_compression(compress)
        pdf.set_auto_page_break(auto=True, margin=15)
        pdf.set_margins(20, 15, 20)
        issued = invoice.get("date")
        created = to_date(issued) if issued else date(2000, 1, 1)
        pdf.set_creation_date(datetime.combine(created, time(0, 0), tzinfo=UTC))
        pdf.set_title(pdf_text(f"{self.labels['invoice']} {invoice.get('ref', '')}"))
        pdf.set_author(pdf_text(company.get("name", "")))
        pdf.set_creator("maild")
        pdf.set_producer("maild")
        pdf.add_page()
        self.pdf = pdf

    def t(self, key: str) -> str:
        return self.labels.get(key, LABELS["en"][key])

    def money(self, amount: Any) -> str:
        return format_money(amount, self.currency, self.locale)

    def day(self, value: Any) -> str:
        return format_day(value, "medium", self.locale) if value else "-"

    def text(self, w: float, h: float, value: Any, *, align: str = "L", border: str = "", fill: bool = False,
             newline: bool = False) -> None:
        """What `pdf.cell(w, h, value, border, align, fill)` draws, for one line of text, without its shaping.

        w=0 reaches the right margin; `border` is "", "T" or "B"; `newline` moves to the left margin of
        the next row (cell's new_x="LMARGIN", new_y="NEXT"), else the position moves right by w.
        """
        pdf = self.pdf
        x, y = pdf.x, pdf.y
        if y + h > pdf.page_break_trigger and pdf.auto_page_break:
            pdf.add_page()
            x, y = x, pdf.y
        if w == 0:
            w = pdf.w - pdf.r_margin - x
        if fill:
            pdf.rect(x, y, w, h, style="F")
        if border == "T":
            pdf.line(x, y, x + w, y)
        elif border == "B":
            pdf.line(x, y + h, x + w, y + h)
        value = pdf_text(value)
        if value:
            dx = w - pdf.c_margin - self.width(value) if align == "R" else pdf.c_margin
            pdf.text(x + dx, y + 0.5 * h + 0.3 * pdf.font_size, value)
        if newline:
            pdf.set_xy(pdf.l_margin, y + h)
        else:
            pdf.set_xy(x + w, y)

    def width(self, value: str) -> float:
        """pdf.get_string_width(value) for a core font (no stretching or spacing), from its width table."""
        pdf = self.pdf
        widths = pdf.current_font.cw  # indexed like fpdf2's normalize_text: cp1252 bytes read as latin-1
        text = value if value.isascii() else value.encode(ENCODING).decode("latin-1")
        return sum(widths[ch] for ch in text) * pdf.font_size_pt / 1000 / pdf.k

    def fits(self, value: str) -> bool:
        """One line of `value` fits between the margins (what multi_cell would not have to break)."""
        pdf = self.pdf
        room = pdf.w - pdf.r_margin - pdf.l_margin - 2 * pdf.c_margin
        return "\n" not in value and self.width(value) <= room

    def line_total(self, line: dict[str, Any]) -> Decimal:
        if line.get("total") is not None:
            return to_decimal(line["total"])
        return to_decimal(line.get("quantity", 1)) * to_decimal(line.get("unit_price", 0))

    def net(self) -> Decimal:
        if self.invoice.get("total_net") is not None:
            return to_decimal(self.invoice["total_net"])
        return sum((self.line_total(line) for line in self.invoice.get("lines") or []), Decimal(0))

    def vat(self) -> Decimal:
        if self.invoice.get("total_vat") is not None:
            return to_decimal(self.invoice["total_vat"])
        vat = Decimal(0)
        for line in self.invoice.get("lines") or []:
            rate = to_decimal(line.get("vat_rate", self.invoice.get("vat_rate", 0)))
            vat += self.line_total(line) * rate / 100
        return vat.quantize(Decimal("0.01"))

    def total(self) -> Decimal:
        if self.invoice.get("total") is not None:
            return to_decimal(self.invoice["total"])
        return self.net() + self.vat()

    def amount_due(self) -> Decimal:
        if self.invoice.get("amount_due") is not None:
            return to_decimal(self.invoice["amount_due"])
        return self.total() - to_decimal(self.invoice.get("amount_paid") or 0)

    def letterhead(self, title: str) -> None:
        pdf, company, tp = self.pdf, self.company, self.thirdparty
        pdf.set_font("helvetica", "B", 16)
        self.text(0, 8, company.get("name", ""), newline=True)
        pdf.set_font("helvetica", "", 9)
        sender = " - ".join(str(p) for p in (company.get("name"), company.get("street"),
                                              _town(company), company.get("country")) if p)
        self.text(0, 5, sender, newline=True)
        contact = "  ".join(str(p) for p in (company.get("phone"), company.get("email"), company.get("website")) if p)
        self.text(0, 5, contact, newline=True)
        pdf.ln(10)
        top = pdf.get_y()
        pdf.set_font("helvetica", "", 11)
        for part in (tp.get("name"), tp.get("street"), _town(tp), tp.get("country")):
            if part:
                self.text(95, 6, part, newline=True)
        bottom = pdf.get_y()
        pdf.set_xy(125, top)
        pdf.set_font("helvetica", "", 10)
        facts = [(self.t("invoice_no"), self.invoice.get("ref", "")),
                 (self.t("date"), self.day(self.invoice.get("date"))),
                 (self.t("due"), self.day(self.invoice.get("due_date")))]
        if tp.get("external_id"):
            facts.append((self.t("customer_no"), tp["external_id"]))
        for label, value in facts:
            pdf.set_x(125)
            self.text(30, 6, label)
            self.text(0, 6, value, align="R", newline=True)
        pdf.set_y(max(bottom, pdf.get_y()) + 10)
        pdf.set_font("helvetica", "B", 14)
        self.text(0, 9, f"{title} {self.invoice.get('ref', '')}", newline=True)
        pdf.ln(3)

    def letter_head(self) -> None:
        """The company's name and contact lines at the top, above the address field."""
        pdf, company = self.pdf, self.company
        pdf.set_xy(pdf.l_margin, 15)
        pdf.set_font("helvetica", "B", 16)
        self.text(0, 8, company.get("name", ""), newline=True)
        pdf.set_font("helvetica", "", 9)
        contact = "  ".join(str(p) for p in (company.get("phone"), company.get("email"), company.get("website")) if p)
        self.text(0, 5, contact, newline=True)

    def address_window(self, contact: dict[str, Any] | None) -> None:
        """The return address (one small line) and the recipient's lines inside the DIN 5008 form B field:
        company, contact person, street, zip and town, and the country in capitals when it is not ours. A contact
        with a postal address of their own is written to there."""
        pdf, company, tp = self.pdf, self.company, self.thirdparty
        place = contact if contact and (contact.get("street") or contact.get("town")) else tp
        pdf.set_font("helvetica", "", 7)
        pdf.set_xy(WINDOW_LEFT, WINDOW_TOP + 5)
        sender = ", ".join(str(p) for p in (company.get("name"), company.get("street"), _town(company)) if p)
        self.text(WINDOW_WIDTH, 4, _fit(pdf, sender, WINDOW_WIDTH - 2))
        lines = [tp.get("name"), addressee(contact, self.language), place.get("street"), _town(place)]
        country = str(place.get("country") or "").strip()
        if country and country.casefold() != str(company.get("country") or "").strip().casefold():
            lines.append(country.upper())
        pdf.set_font("helvetica", "", 10)
        y = WINDOW_TOP + RETURN_ZONE
        for line in [line for line in lines if line][:6]:
            pdf.set_xy(WINDOW_LEFT, y)
            self.text(WINDOW_WIDTH, 4.5, _fit(pdf, str(line), WINDOW_WIDTH - 2))
            y += 4.5

    def info_block(self, facts: list[tuple[str, str]]) -> None:
        pdf = self.pdf
        pdf.set_font("helvetica", "", 9)
        y = INFO_TOP
        for label, value in facts:
            pdf.set_xy(INFO_LEFT, y)
            self.text(32, 5, label)
            self.text(0, 5, value, align="R")
            y += 5

    def fold_marks(self) -> None:
        pdf = self.pdf
        pdf.set_line_width(0.2)
        for y in FOLD_MARKS:
            pdf.line(4, y, 8 if y != 148.5 else 10, y)

    def open_amount(self) -> Decimal:
        return self.total() - to_decimal(self.invoice.get("amount_paid") or 0)

    def dunning_totals(self) -> None:
        """Invoice amount, paid, open amount, late fees and the amount due now."""
        pdf = self.pdf
        paid = to_decimal(self.invoice.get("amount_paid") or 0)
        fees = to_decimal(self.invoice.get("late_fees") or 0)
        rows = [(self.t("invoice_amount"), self.total())]
        if paid:
            rows += [(self.t("paid"), -paid), (self.t("open_amount"), self.open_amount())]
        rows += [(self.t("fees"), fees), (self.t("total_due"), self.amount_due())]
        for i, (label, amount) in enumerate(rows):
            last = i == len(rows) - 1
            pdf.set_font("helvetica", "B" if last else "", 10)
            pdf.set_x(90)
            self.text(50, 6, label, border="T" if last else "")
            self.text(30, 6, self.money(amount), align="R", border="T" if last else "", newline=True)
        pdf.ln(4)

    def line_items(self) -> None:
        """The table of lines; nothing for an invoice known by its amount alone (no table of no lines)."""
        if not self.invoice.get("lines"):
            return
        pdf = self.pdf
        widths = (12, 80, 18, 30, 30)
        heads = (self.t("pos"), self.t("description"), self.t("qty"), self.t("unit_price"), self.t("amount"))
        aligns = ("L", "L", "R", "R", "R")
        pdf.set_font("helvetica", "B", 10)
        pdf.set_fill_color(230, 230, 230)
        for w, head, align in zip(widths, heads, aligns, strict=True):
            self.text(w, 7, head, border="B", align=align, fill=True)
        pdf.ln(7)
        pdf.set_font("helvetica", "", 10)
        for number, line in enumerate(self.invoice.get("lines") or [], start=1):
            quantity = to_decimal(line.get("quantity", 1))
            qty = f"{quantity.normalize():f}" if quantity == quantity.to_integral() else str(quantity)
            cells = (str(number), _fit(pdf, str(line.get("description", "")), widths[1] - 2), qty,
                     self.money(line.get("unit_price", 0)), self.money(self.line_total(line)))
            for w, cell, align in zip(widths, cells, aligns, strict=True):
                self.text(w, 7, cell, align=align)
            pdf.ln(7)
        self.text(sum(widths), 0, "", border="T", newline=True)
        pdf.ln(2)

    def totals(self) -> None:
        pdf = self.pdf
        rows = [(self.t("total"), self.total())]
        if self.invoice.get("lines"):  # without lines the net/VAT split is unknown: no "VAT 0.00"
            rows = [(self.t("net"), self.net()), (self.t("vat"), self.vat()), *rows]
        paid = to_decimal(self.invoice.get("amount_paid") or 0)
        if paid:
            rows += [(self.t("paid"), -paid), (self.t("due_amount"), self.amount_due())]
        for i, (label, amount) in enumerate(rows):
            last = i == len(rows) - 1
            pdf.set_font("helvetica", "B" if last else "", 10)
            pdf.set_x(100)
            self.text(40, 7, label, border="T" if last else "")
            self.text(30, 7, self.money(amount), align="R", border="T" if last else "", newline=True)
        pdf.ln(6)

    def paragraph(self, value: str) -> None:
        self.pdf.set_font("helvetica", "", 10)
        self.lines(5, pdf_text(value))
        self.pdf.ln(3)

    def lines(self, h: float, value: str) -> None:
        """multi_cell(0, h, value): each line that fits drawn directly, longer ones broken by fpdf2."""
        for line in value.split("\n"):
            if self.fits(line):
                self.text(0, h, line, newline=True)
            else:
                self.pdf.multi_cell(0, h, line, new_x="LMARGIN", new_y="NEXT")

    def bank_details(self) -> None:
        c = self.company
        parts = [p for p in (c.get("bank"), c.get("iban") and f"IBAN {c['iban']}", c.get("bic") and f"BIC {c['bic']}")
                 if p]
        if c.get("vat_id"):
            parts.append(f"{self.t('vat_id')} {c['vat_id']}")
        if parts:
            self.pdf.set_font("helvetica", "", 9)
            self.lines(5, pdf_text(f"{self.t('bank')}: " + " - ".join(parts)))

    def output(self) -> bytes:
        return bytes(self.pdf.output())


@lru_cache(maxsize=64)
def _locale(language: str | None) -> Locale:
    try:
        return Locale.parse((language or "en").replace("-", "_"))
    except (ValueError, TypeError):
        return Locale.parse("en")


def _town(party: dict[str, Any]) -> str:
    return " ".join(str(p) for p in (party.get("zip"), party.get("town")) if p)


def _fit(pdf: FPDF, value: str, width: float) -> str:
    """Shorten a description to one table cell, with an ellipsis."""
    value = pdf_text(value)
    if pdf.get_string_width(value) <= width:
        return value
    while value and pdf.get_string_width(value + "...") > width:
        value = value[:-1]
    return value + "..."
