"""Full-text search over mail (subject, body, addresses): SQLite FTS5, PostgreSQL tsvector with a GIN index.

Every searched word is matched as the start of a word ("Rech" finds "Rechnung"), all words must occur.

Newest first, `limit` at a time: the full-text index yields message ids in descending order and the query stops
after limit + 1 hits (no count of all hits: the page says "more" when there is one more). Filters (third party,
date range, direction, has attachment) are checked on those rows; excerpts are made for the shown rows only.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import column, exists, func, not_, or_, select, table, text

from maild.clock import as_utc
from maild.services import paging
from maild.store.db import Database
from maild.store.models import Attachment, Message, MessageMatch, ThirdParty

_m, _a, _mm, _tp = Message.__table__, Attachment.__table__, MessageMatch.__table__, ThirdParty.__table__

# The same expression as the GIN index of migration 0007_web (PostgreSQL uses the index only for it).
PG_DOCUMENT = ("to_tsvector('simple'::regconfig, coalesce(subject, '') || ' ' || coalesce(from_name, '') || ' ' || "
               "coalesce(from_addr, '') || ' ' || coalesce(to_addrs::text, '') || ' ' || coalesce(cc_addrs::text, '') "
               "|| ' ' || left(coalesce(text_body, ''), 200000))")
# The words split by the same parser as the documents (an address stays one word), each lexeme then a quoted
# prefix ('rech':* & 'karl@example.com':*): the user's text never reaches tsquery syntax.
PG_PREFIX_QUERY = (r"to_tsquery('simple'::regconfig, (SELECT coalesce(string_agg("
                   r"'''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':*', ' & '), '') "
                   r"FROM unnest(to_tsvector('simple'::regconfig, :q))))")
EXCERPT_SOURCE = 20000  # characters of the body read for an excerpt
MAX_WORDS = 20
_SPACE = re.compile(r"\s+")
_FTS = table("messages_fts", column("rowid"))


@dataclass(frozen=True)
class Filters:
    thirdparty_id: int | None = None
    since: date | None = None
    until: date | None = None  # inclusive
    direction: str | None = None  # in | out (out: from one of matching.own_domains / own_addresses)
    has_attachment: bool | None = None


@dataclass(frozen=True)
class Hit:
    id: int
    subject: str
    from_addr: str | None
    date: str | None
    thirdparty_id: int | None
    thirdparty: str | None
    excerpt_html: str  # escaped, the searched words in <mark>


def words_of(query: str) -> list[str]:
    """The searched words: whitespace-separated, each with at least one letter or digit."""
    return [w for w in query.split() if any(ch.isalnum() for ch in w)][:MAX_WORDS]


def search(db: Database, query: str, *, filters: Filters | None = None, cursor: str | None = None, limit: int = 50,
           own_domains: tuple[str, ...] = (), own_addresses: tuple[str, ...] = ()) -> paging.Page[Hit]:
    words = words_of(query)
    if not words:
        return paging.Page([], None)
    key = paging.decode(cursor, 1)
    filters = filters or Filters()
    conditions = _conditions(filters, own_domains, own_addresses)
    if db.is_sqlite:
        fts_text = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
        fts = _FTS
        id_col: Any = fts.c.rowid
        hits = select(id_col.label("id")).where(text("messages_fts MATCH :fts").bindparams(fts=fts_text))
        hits = hits.select_from(fts.join(_m, _m.c.id == id_col)) if conditions else hits.select_from(fts)
    else:
        id_col = _m.c.id
        hits = select(id_col.label("id")).where(text(f"{PG_DOCUMENT} @@ {PG_PREFIX_QUERY}")
                                                .bindparams(q=" ".join(words)))
    if key is not None:
        hits = hits.where(id_col < int(key[0]))
    if conditions:
        hits = hits.where(*conditions)
    page_ids = hits.order_by(id_col.desc()).limit(limit + 1).subquery("hits")
    stmt = (select(_m.c.id, _m.c.subject, _m.c.from_addr, _m.c.date,
                   func.substr(_m.c.text_body, 1, EXCERPT_SOURCE).label("body"), _mm.c.thirdparty_id, _tp.c.name)
            .select_from(page_ids.join(_m, _m.c.id == page_ids.c.id)
                         .outerjoin(_mm, _mm.c.message_id == _m.c.id).outerjoin(_tp, _tp.c.id == _mm.c.thirdparty_id))
            .order_by(_m.c.id.desc()))
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [Hit(r.id, r.subject or "", r.from_addr, _iso(r.date), r.thirdparty_id, r.name, excerpt(r.body, words))
             for r in rows]
    return paging.Page(items, paging.encode([rows[-1].id]) if more and rows else None)


def _conditions(f: Filters, own_domains: tuple[str, ...], own_addresses: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    if f.thirdparty_id is not None:
        out.append(exists().where(_mm.c.message_id == _m.c.id, _mm.c.thirdparty_id == f.thirdparty_id))
    if f.since is not None:
        out.append(_m.c.date >= datetime.combine(f.since, time(0)).astimezone())
    if f.until is not None:
        out.append(_m.c.date < datetime.combine(f.until + timedelta(days=1), time(0)).astimezone())
    if f.direction in ("in", "out"):
        ours = or_(*[_m.c.from_addr.like(f"%@{d.lower()}") for d in own_domains],
                   *[_m.c.from_addr == a.lower() for a in own_addresses]) \
            if own_domains or own_addresses else None
        if f.direction == "out":
            out.append(ours if ours is not None else text("1 = 0"))
        elif ours is not None:
            out.append(or_(_m.c.from_addr.is_(None), not_(ours)))
    if f.has_attachment is not None:
        has = exists().where(_a.c.message_id == _m.c.id)
        out.append(has if f.has_attachment else not_(has))
    return out


def excerpt(body: str | None, words: list[str], width: int = 240) -> str:
    """Escaped text around the first searched word in `body`, the words marked; the start when none is found.
    Only the window around the hit is cleaned and escaped (a body can be long; a page shows 50 excerpts)."""
    body = body or ""
    terms = [t for t in (w.strip(".,;:!?\"'()<>") for w in words) if t]
    lowered = body.lower()
    found = [p for p in (lowered.find(t.lower()) for t in terms) if p >= 0]
    start = max(0, min(found) - width // 3) if found else 0
    piece = _SPACE.sub(" ", body[start:start + width + 200]).strip()[:width]
    escaped = html.escape(piece)
    if terms:
        pattern = re.compile("|".join(re.escape(html.escape(t)) for t in sorted(terms, key=len, reverse=True)),
                             re.IGNORECASE)
        escaped = pattern.sub(lambda m: f"<mark>{m.group(0)}</mark>", escaped)
    return ("…" if start else "") + escaped + ("…" if start + width < len(body) else "")


def _iso(value: Any) -> str | None:
    moment = as_utc(value)
    return moment.isoformat() if moment else None
