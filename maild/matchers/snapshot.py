"""Load the part of the directory a batch of messages can match against: one query per table.

Matchers then run on dictionaries, so a batch costs the same few indexed look-ups whether the
directory holds a thousand third parties or a million.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from maild.matchers.base import MailFacts, Settings, Snapshot
from maild.matchers.normalize import domain_and_parents, domain_of, is_free_mail, name_key
from maild.store.models import Contact, Document, MailAddress, MailDomain, Message, MessageMatch, ThirdParty, TrackingId

CHUNK = 500
DECIDED = ("matched", "assigned")


def load(conn: Connection, batch: Sequence[MailFacts], settings: Settings, with_names: bool) -> Snapshot:
    snap = Snapshot()
    thread_refs = {ref for f in batch for ref in f.thread_refs}
    tokens = {t for f in batch for t in f.tokens}
    addresses = {a for f in batch for a, _, _ in f.roles}
    domains = {registered for d in (domain_of(a) for a in addresses)
               if d and not is_free_mail(d, settings.free_mail_domains) for registered in domain_and_parents(d)}
    refs = {r for f in batch for r, _, _ in f.doc_refs}
    names = {k for k in (name_key(f.from_name) for f in batch) if k} if with_names else set()

    m, mm = Message.__table__, MessageMatch.__table__
    for row in _rows(conn, select(m.c.header_message_id, mm.c.thirdparty_id, mm.c.contact_id)
                     .join(mm, mm.c.message_id == m.c.id)
                     .where(mm.c.status.in_(DECIDED), mm.c.thirdparty_id.is_not(None)), m.c.header_message_id,
                     thread_refs):
        snap.filed_threads[row[0]] = (row[1], row[2])
    t = TrackingId.__table__
    for row in _rows(conn, select(t.c.token, t.c.thirdparty_id, t.c.contact_id), t.c.token, tokens):
        snap.tracking[row[0]] = (row[1], row[2])
    a = MailAddress.__table__
    for row in _rows(conn, select(a.c.address, a.c.thirdparty_id, a.c.contact_id), a.c.address, addresses):
        snap.addresses.setdefault(row[0], []).append((row[1], row[2]))
    d = MailDomain.__table__
    for row in _rows(conn, select(d.c.domain, d.c.thirdparty_id), d.c.domain, domains):
        snap.domains.setdefault(row[0], []).append(row[1])
    doc = Document.__table__
    for row in _rows(conn, select(doc.c.ref, doc.c.kind, doc.c.thirdparty_id), doc.c.ref, refs):
        snap.documents.setdefault(row[0], []).append((row[1], row[2]))
    c, tp = Contact.__table__, ThirdParty.__table__
    for row in _rows(conn, select(c.c.name_key, c.c.thirdparty_id, c.c.id), c.c.name_key, names):
        snap.names.setdefault(row[0], []).append((row[1], row[2]))
    for row in _rows(conn, select(tp.c.name_key, tp.c.id), tp.c.name_key, names):
        snap.names.setdefault(row[0], []).append((row[1], None))

    mentioned = {tp_id for v in snap.filed_threads.values() for tp_id in v[:1]}
    mentioned |= {v[0] for v in snap.tracking.values() if v[0] is not None}
    mentioned |= {tp_id for owners in snap.addresses.values() for tp_id, _ in owners}
    mentioned |= {tp_id for owners in snap.domains.values() for tp_id in owners}
    mentioned |= {tp_id for owners in snap.documents.values() for _, tp_id in owners}
    mentioned |= {tp_id for owners in snap.names.values() for tp_id, _ in owners}
    for row in _rows(conn, select(tp.c.id, tp.c.name), tp.c.id, mentioned):
        snap.thirdparty_names[row[0]] = row[1]
    return snap


def _rows(conn: Connection, query: Any, column: Any, values: Iterable[Any]) -> Iterable[Any]:
    values = list(values)
    for start in range(0, len(values), CHUNK):
        yield from conn.execute(query.where(column.in_(values[start:start + CHUNK])))
