"""How a letter addresses a contact: the line in the address window and the greeting ("Sehr geehrte Frau Dr. Nord,").

From the contact's `salutation` (Frau/Herr, Ms/Mr, ...), `title` (Dr.) and `last_name`; the fallbacks, in order:
a contact with no known salutation but a name is greeted by full name ("Guten Tag Greta Nord," / "Dear Greta
Nord,"); no contact, or no name: "Sehr geehrte Damen und Herren," / "Dear Sir or Madam,". Other languages use
the English forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FEMALE = frozenset({"frau", "ms", "ms.", "mrs", "mrs.", "miss", "madame", "mme", "mme.", "signora", "sra."})
MALE = frozenset({"herr", "mr", "mr.", "monsieur", "m.", "signore", "sr."})
_FORMS = {
    "de": {"f": "Frau", "m": "Herr", "greet_f": "Sehr geehrte Frau {name},", "greet_m": "Sehr geehrter Herr {name},",
           "greet_name": "Guten Tag {name},", "greet_none": "Sehr geehrte Damen und Herren,"},
    "en": {"f": "Ms", "m": "Mr", "greet_f": "Dear Ms {name},", "greet_m": "Dear Mr {name},",
           "greet_name": "Dear {name},", "greet_none": "Dear Sir or Madam,"},
}


def _forms(language: str | None) -> dict[str, str]:
    base = (language or "en").replace("_", "-").split("-")[0].lower()
    return _FORMS.get(base, _FORMS["en"])


def _sex(contact: Mapping[str, Any]) -> str | None:
    word = str(contact.get("salutation") or "").strip().casefold()
    return "f" if word in FEMALE else "m" if word in MALE else None


def _parts(*values: Any) -> str:
    return " ".join(str(v).strip() for v in values if v and str(v).strip())


def greeting(contact: Mapping[str, Any] | None, language: str | None) -> str:
    """`Sehr geehrte Frau Dr. Nord,` / `Dear Ms Dr. Nord,`; see the module's fallbacks."""
    forms = _forms(language)
    if not contact:
        return forms["greet_none"]
    sex = _sex(contact)
    last = str(contact.get("last_name") or "").strip()
    if sex is not None and last:
        return forms[f"greet_{sex}"].format(name=_parts(contact.get("title"), last))
    full = _parts(contact.get("title"), contact.get("first_name"), contact.get("last_name")) \
        or str(contact.get("name") or "").strip()
    return forms["greet_name"].format(name=full) if full else forms["greet_none"]


def addressee(contact: Mapping[str, Any] | None, language: str | None) -> str:
    """The contact's line in the address window: `Frau Dr. Greta Nord` (or their name alone)."""
    if not contact:
        return ""
    sex = _sex(contact)
    prefix = _forms(language)[sex] if sex is not None else ""
    names = _parts(contact.get("first_name"), contact.get("last_name")) or str(contact.get("name") or "").strip()
    return _parts(prefix, contact.get("title"), names) if names else ""
