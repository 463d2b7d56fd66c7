"""The return date an out-of-office text gives ("zurück am 12.12.", "back on December 12"), as an ISO date."""

from __future__ import annotations

import re
from datetime import date, datetime

MONTHS = {
    **dict.fromkeys(("january", "jan", "januar", "jänner", "janvier", "enero", "gennaio", "januari"), 1),
    **dict.fromkeys(("february", "feb", "februar", "février", "fevrier", "febrero", "febbraio", "februari"), 2),
    **dict.fromkeys(("march", "mar", "märz", "maerz", "mars", "marzo", "maart"), 3),
    **dict.fromkeys(("april", "apr", "avril", "abril", "aprile"), 4),
    **dict.fromkeys(("may", "mai", "mayo", "maggio", "mei"), 5),
    **dict.fromkeys(("june", "jun", "juni", "juin", "junio", "giugno"), 6),
    **dict.fromkeys(("july", "jul", "juli", "juillet", "julio", "luglio"), 7),
    **dict.fromkeys(("august", "aug", "août", "aout", "agosto", "augustus"), 8),
    **dict.fromkeys(("september", "sep", "sept", "septembre", "septiembre", "settembre"), 9),
    **dict.fromkeys(("october", "oct", "oktober", "octobre", "octubre", "ottobre"), 10),
    **dict.fromkeys(("november", "nov", "novembre", "noviembre"), 11),
    **dict.fromkeys(("december", "dec", "dezember", "décembre", "decembre", "diciembre", "dicembre"), 12),
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
# Words after which a return date follows, per language.
_LEAD = (r"(?:back (?:in the office )?(?:on|by)|return(?:ing)? (?:to the office )?on|returning|back|until|till|"
         r"zurück (?:am|ab)|ab dem|wieder (?:am|ab|erreichbar ab|im büro am|im büro ab)|"
         r"bis (?:einschließlich |zum |am )?|"
         r"de retour (?:le|à partir du)|jusqu'au|à partir du|"
         r"de regreso el|regreso el|volveré el|hasta el|"
         r"rientro (?:il|in ufficio il)|di ritorno il|fino al|"
         r"terug op|weer aanwezig op|tot en met|t/m|tot)")
_WEEKDAY = r"(?:[A-Za-zäéèû]{2,12},?\s+(?:den\s+|le\s+|el\s+|il\s+)?)?"
_PATTERNS = (
    re.compile(_LEAD + r"\s+" + _WEEKDAY + r"(\d{4})-(\d{1,2})-(\d{1,2})", re.I),  # ISO
    re.compile(_LEAD + r"\s+" + _WEEKDAY + r"(\d{1,2})[./](\d{1,2})\.?(?:[./](\d{2,4}))?", re.I),  # 12.12.(2026)
    re.compile(_LEAD + r"\s+" + _WEEKDAY + rf"(\d{{1,2}})\.?\s*(?:de\s+)?({_MONTH})\.?(?:\s+(?:de\s+)?(\d{{4}}))?",
               re.I),  # 12. Dezember 2026, 12 décembre, 12 de diciembre
    re.compile(_LEAD + r"\s+" + _WEEKDAY + rf"({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?(?:\s+(\d{{4}}))?", re.I),
)


def return_date(text: str, sent: datetime | None) -> str | None:
    """The first return date in `text`; a date without a year is the next such day on or after `sent`."""
    reference = sent.date() if sent else date.today()
    best: tuple[int, date] | None = None
    for index, pattern in enumerate(_PATTERNS):
        found = pattern.search(text)
        if not found:
            continue
        value = _date(index, found.groups(), reference)
        if value is not None and (best is None or found.start() < best[0]):
            best = (found.start(), value)
    return best[1].isoformat() if best else None


def _date(index: int, groups: tuple[str | None, ...], reference: date) -> date | None:
    try:
        if index == 0:
            return date(int(groups[0] or 0), int(groups[1] or 0), int(groups[2] or 0))
        if index == 1:
            day, month, year = int(groups[0] or 0), int(groups[1] or 0), groups[2]
        elif index == 2:
            day, month, year = int(groups[0] or 0), MONTHS[(groups[1] or "").lower()], groups[2]
        else:
            day, month, year = int(groups[1] or 0), MONTHS[(groups[0] or "").lower()], groups[2]
        if year:
            full = int(year) + (2000 if len(year) == 2 else 0)
            return date(full, month, day)
        guess = date(reference.year, month, day)
        return guess if guess >= reference else date(reference.year + 1, month, day)
    except (ValueError, KeyError):
        return None
