"""Realistic sample data for every documented placeholder (used by `maild templates check|render` and tests)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

PLACEHOLDERS = ("company", "thirdparty", "contact", "invoice", "meeting", "sender", "links", "language")


def sample_context(language: str = "en") -> dict[str, Any]:
    """A fresh context (safe to modify) with every documented placeholder; umlauts and `&` included on purpose."""
    german = language.split("-")[0].split("_")[0] == "de"
    lines = [
        {"description": "Wartungsvertrag Q4 (Zürich)" if german else "Maintenance contract Q4 (Zürich)",
         "quantity": Decimal("1"), "unit": "pcs", "unit_price": Decimal("1200.00"), "vat_rate": Decimal("19")},
        {"description": "Vor-Ort-Einsatz, Stunden" if german else "On-site work, hours",
         "quantity": Decimal("3.5"), "unit": "h", "unit_price": Decimal("95.00"), "vat_rate": Decimal("19")},
    ]
    for line in lines:
        line["total"] = (line["quantity"] * line["unit_price"]).quantize(Decimal("0.01"))
    net = sum((line["total"] for line in lines), Decimal("0.00"))
    vat = (net * Decimal("0.19")).quantize(Decimal("0.01"))
    return {
        "language": language,
        "company": {
            "name": "Nordlicht Software GmbH",
            "street": "Große Elbstraße 145",
            "zip": "22767",
            "town": "Hamburg",
            "country": "Germany" if not german else "Deutschland",
            "email": "billing@nordlicht.example",
            "phone": "+49 40 1234567",
            "website": "https://nordlicht.example",
            "vat_id": "DE123456789",
            "iban": "DE89 3704 0044 0532 0130 00",
            "bic": "COBADEFFXXX",
            "bank": "Commerzbank Hamburg",
        },
        "thirdparty": {
            "name": "Müller & Söhne Maschinenbau KG",
            "external_id": "C-1042",
            "kind": "customer",
            "language": language,
            "street": "Königstraße 12",
            "zip": "70173",
            "town": "Stuttgart",
            "country": "Deutschland" if german else "Germany",
            "email": "info@mueller-soehne.example",
        },
        "contact": {
            "first_name": "Jürgen",
            "last_name": "Weiß",
            "name": "Jürgen Weiß",
            "title": "Herr" if german else "Mr",
            "email": "j.weiss@mueller-soehne.example",
            "phone": "+49 711 987654",
            "role": "Einkauf" if german else "Purchasing",
        },
        "invoice": {
            "ref": "FA2611-0007",
            "date": date(2026, 11, 3),
            "due_date": date(2026, 11, 17),
            "currency": "EUR",
            "lines": lines,
            "total_net": net,
            "total_vat": vat,
            "total": net + vat,
            "amount_paid": Decimal("0.00"),
            "amount_due": net + vat,
        },
        "meeting": {
            "date": date(2026, 11, 19),
            "subject": "Rollout der Version 4.2" if german else "Rollout of version 4.2",
            "location": "Stuttgart",
            "attendees": ["Jürgen Weiß", "Lena Hoffmann"],
            "next_steps": (["Testzugang einrichten", "Angebot für Schulung senden"] if german
                           else ["Set up a test account", "Send a proposal for the training"]),
        },
        "sender": {
            "name": "Lena Hoffmann",
            "email": "lena.hoffmann@nordlicht.example",
            "role": "Kundenbetreuung" if german else "Account manager",
            "phone": "+49 40 1234567-12",
        },
        "links": {
            "portal": "https://portal.nordlicht.example/c/C-1042",
            "invoice": "https://portal.nordlicht.example/c/C-1042/invoices/FA2611-0007.pdf",
            "booking": "https://nordlicht.example/book?with=lena.hoffmann",
        },
    }
