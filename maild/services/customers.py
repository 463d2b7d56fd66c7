"""Third parties for people: the list with last contact and open invoices, one customer, its timeline, notes, tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from maild.business import history
from maild.business.notes import add_note as note_in
from maild.business.tasks import create_task
from maild.clock import as_utc, utcnow
from maild.directory import changes, writes
from maild.directory.service import _contact_fields as contact_fields
from maild.directory.service import _thirdparty_fields as thirdparty_fields
from maild.matchers.normalize import name_key
from maild.services import audit, paging
from maild.services.actor import Actor
from maild.store.db import Database
from maild.store.models import Contact, Document, Event, Invoice, MailAddress, MailDomain, Message, ThirdParty

_tp, _ev, _m, _inv = ThirdParty.__table__, Event.__table__, Message.__table__, Invoice.__table__
_con, _doc, _addr, _dom = Contact.__table__, Document.__table__, MailAddress.__table__, MailDomain.__table__


# The timeline's filters: a kind, and the event types it shows.
KINDS: dict[str, tuple[str, ...]] = {
    "mail_in": ("mail.matched", "mail.assigned"),
    "mail_out": ("mail.sent",),
    "opens_clicks": ("mail.opened", "mail.clicked"),
    "filing": ("mail.filed",),
    "rules": ("rule.action", "rule.held_back"),
    # dunning levels are invoice.updated; holds, promises and disputes have their own events
    "invoices": ("invoice.created", "invoice.updated", "invoice.paid", "invoice.held", "invoice.resumed",
                 "invoice.promised", "invoice.disputed", "invoice.hold_escalated"),
    "payments": ("payment.recorded",),
    "meetings": ("meeting.created", "meeting.updated", "meeting.cancelled", "meeting.refused"),
    "tasks": ("task.created", "task.done"),
    "notes": ("note.added",),
    "bounces": ("mail.bounced", "mail.delayed", "mail.complained", "mail.refused", "mail.send_failed"),
}


def list_customers(db: Database, *, query: str = "", cursor: str | None = None,
                   limit: int = 50) -> paging.Page[dict[str, Any]]:
    """Third parties by name (those whose name, external id, owner or tag contains `query`), with last mail in and
    out, open invoices, owner, tags. A constant number of queries, whatever the page size."""
    key = paging.decode(cursor, 2)
    stmt = select(_tp.c.id, _tp.c.name, _tp.c.name_key, _tp.c.kind, _tp.c.external_id, _tp.c.owner, _tp.c.tags)
    words = query.strip()
    if words:
        like = f"%{name_key(words)}%"
        stmt = stmt.where(or_(_tp.c.name_key.like(like), _tp.c.external_id == words, _tp.c.owner == words))
    if key is not None:
        stmt = stmt.where(or_(_tp.c.name_key > key[0], (_tp.c.name_key == key[0]) & (_tp.c.id > key[1])))
    stmt = stmt.order_by(_tp.c.name_key, _tp.c.id).limit(limit + 1)
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
        more = len(rows) > limit
        rows = rows[:limit]
        ids = [r.id for r in rows]
        last_in = dict(conn.execute(
            select(_ev.c.thirdparty_id, func.max(func.coalesce(_m.c.date, _ev.c.occurred_at)))
            .select_from(_ev.outerjoin(_m, _m.c.id == _ev.c.message_id))
            .where(_ev.c.thirdparty_id.in_(ids), _ev.c.type.in_(KINDS["mail_in"]))
            .group_by(_ev.c.thirdparty_id)).all()) if ids else {}
        last_out = dict(conn.execute(
            select(_ev.c.thirdparty_id, func.max(_ev.c.occurred_at))
            .where(_ev.c.thirdparty_id.in_(ids), _ev.c.type == "mail.sent")
            .group_by(_ev.c.thirdparty_id)).all()) if ids else {}
        invoices = {r[0]: (r[1], r[2]) for r in conn.execute(
            select(_inv.c.thirdparty_id, func.count(), func.sum(_inv.c.amount - _inv.c.paid_amount))
            .where(_inv.c.thirdparty_id.in_(ids), _inv.c.status == "open")
            .group_by(_inv.c.thirdparty_id)).all()} if ids else {}
    items = [{"id": r.id, "name": r.name, "kind": r.kind, "external_id": r.external_id, "owner": r.owner,
              "tags": list(r.tags or []), "last_in": _time(last_in.get(r.id)), "last_out": _time(last_out.get(r.id)),
              "open_invoices": invoices.get(r.id, (0, 0))[0], "open_amount": str(invoices.get(r.id, (0, 0))[1] or 0)}
             for r in rows]
    next_cursor = paging.encode([rows[-1].name_key, rows[-1].id]) if more and rows else None
    return paging.Page(items, next_cursor)


def customer(db: Database, thirdparty_id: int) -> dict[str, Any]:
    """Fields, domains, addresses, contacts and documents (LookupError when there is no such third party): the
    shape of maild.directory.service.describe_thirdparty, read with five Core queries (the page's header)."""
    with db.engine.connect() as conn:
        tp = conn.execute(select(_tp).where(_tp.c.id == thirdparty_id)).one_or_none()
        if tp is None:
            raise LookupError(f"no third party with id {thirdparty_id}")
        domains = sorted(conn.execute(select(_dom.c.domain).where(_dom.c.thirdparty_id == thirdparty_id)).scalars())
        addresses = conn.execute(select(_addr.c.address, _addr.c.contact_id)
                                 .where(_addr.c.thirdparty_id == thirdparty_id)).all()
        contacts = conn.execute(select(_con).where(_con.c.thirdparty_id == thirdparty_id)
                                .order_by(_con.c.name_key, _con.c.id)).all()
        documents = conn.execute(select(_doc.c.id, _doc.c.ref, _doc.c.kind).where(_doc.c.thirdparty_id == thirdparty_id)
                                 .order_by(_doc.c.kind, _doc.c.ref)).all()
    by_contact: dict[int | None, list[str]] = {}
    for address, contact_id in addresses:
        by_contact.setdefault(contact_id, []).append(address)
    # The directory's own field views (they read attributes: Core rows serve as well as models).
    return {**thirdparty_fields(tp), "domains": domains, "addresses": sorted(by_contact.get(None, [])),
            "contacts": [contact_fields(c, sorted(by_contact.get(c.id, []))) for c in contacts],
            "documents": [{"id": d.id, "ref": d.ref, "kind": d.kind} for d in documents]}


def timeline(db: Database, thirdparty_id: int, *, kinds: list[str] | None = None, cursor: str | None = None,
             limit: int = 50) -> paging.Page[history.Entry]:
    """The newest events first, of the chosen kinds (KINDS), `limit` at a time; keyset paging on (time, id)."""
    key = paging.decode(cursor, 2)
    before = None
    if key is not None:
        try:
            before = (datetime.fromisoformat(str(key[0])), int(key[1]))
        except (TypeError, ValueError):
            raise paging.BadCursor("invalid cursor") from None
    unknown = [k for k in kinds or [] if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r} (expected one of: {', '.join(KINDS)})")
    types = [t for k in kinds or [] for t in KINDS[k]]
    if kinds and not types:
        types = ["-"]
    entries = history.read(db, thirdparty_id, types=types, limit=limit + 1, before=before)[::-1]
    more = len(entries) > limit
    entries = entries[:limit]
    next_cursor = paging.encode([entries[-1].occurred_at.isoformat(), entries[-1].id]) if more else None
    return paging.Page(entries, next_cursor)


def add_note(db: Database, actor: Actor, thirdparty_id: int, text: str) -> int:
    actor.require("staff")
    with db.engine.begin() as conn:
        event_id = note_in(conn, thirdparty_id=thirdparty_id, text=text, author=actor.name)
        audit.record(conn, actor, "note.add", f"thirdparty:{thirdparty_id}", after={"event_id": event_id,
                                                                                    "text": text})
    return event_id


def add_task(db: Database, actor: Actor, thirdparty_id: int, title: str, due_at: datetime | None = None,
             owner: str | None = None) -> int:
    actor.require("staff")
    with db.engine.begin() as conn:
        if conn.execute(select(_tp.c.id).where(_tp.c.id == thirdparty_id)).first() is None:
            raise LookupError(f"no third party with id {thirdparty_id}")
        task_id = create_task(conn, title=title, thirdparty_id=thirdparty_id, owner=owner or actor.name,
                              due_at=due_at)
        audit.record(conn, actor, "task.add", f"task:{task_id}", after={"thirdparty_id": thirdparty_id,
                                                                        "title": title, "owner": owner or actor.name})
    return task_id


def create_thirdparty(db: Database, actor: Actor, *, name: str, kind: str = "customer",
                      external_id: str | None = None, domains: list[str] | None = None,
                      addresses: list[str] | None = None, owner: str | None = None,
                      tags: list[str] | None = None) -> int:
    actor.require("staff")
    item = changes.thirdparty(external_id=external_id, name=name, kind=kind, tags=tags or [], custom_fields={},
                              owner=owner, language=None, domains=domains or [], addresses=addresses or [])
    with db.engine.begin() as conn:
        if item.external_id is not None and conn.execute(
                select(_tp.c.id).where(_tp.c.external_id == item.external_id)).first() is not None:
            raise ValueError(f"a third party with external id {item.external_id!r} already exists")
        thirdparty_id = writes.upsert_thirdparties(conn, [item])[0][0]
        audit.record(conn, actor, "thirdparty.create", f"thirdparty:{thirdparty_id}",
                     after={"name": name, "kind": kind, "external_id": external_id, "domains": domains or [],
                            "addresses": addresses or [], "owner": owner, "tags": tags or []})
    return thirdparty_id


EDITABLE = ("name", "kind", "owner", "tags", "language")


def update_thirdparty(db: Database, actor: Actor, thirdparty_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Change a third party's name, kind, owner, tags or language (others are refused); audited with before and
    after. A third party is never deleted: its history stays."""
    actor.require("staff")
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise ValueError(f"cannot change {', '.join(unknown)} (only {', '.join(EDITABLE)})")
    with db.engine.begin() as conn:
        row = conn.execute(select(_tp).where(_tp.c.id == thirdparty_id)).one_or_none()
        if row is None:
            raise LookupError(f"no third party with id {thirdparty_id}")
        item = changes.thirdparty(external_id=None, name=values.get("name", row.name), kind=values.get("kind"),
                                  tags=values.get("tags"), custom_fields=None, owner=values.get("owner"),
                                  language=values.get("language"), domains=None, addresses=None)
        columns = {k: v for k, v in item.columns.items() if k in ("name", "name_key") or k in values}
        before = {k: getattr(row, k) for k in columns if k != "name_key"}
        conn.execute(_tp.update().where(_tp.c.id == thirdparty_id).values(**columns, updated_at=utcnow()))
        audit.record(conn, actor, "thirdparty.update", f"thirdparty:{thirdparty_id}", before=before,
                     after={k: v for k, v in columns.items() if k != "name_key"})
    return customer(db, thirdparty_id)


def create_contact(db: Database, actor: Actor, *, thirdparty_id: int, name: str, addresses: list[str] | None = None,
                   role: str | None = None, phones: list[str] | None = None) -> int:
    actor.require("staff")
    item = changes.contact(external_id=None, thirdparty_id=thirdparty_id, name=name, phones=phones or [], role=role,
                           language=None, addresses=addresses or [])
    with db.engine.begin() as conn:
        result = writes.upsert_contacts(conn, [item])[0]
        if isinstance(result, LookupError):
            raise result
        contact_id = result[0]
        audit.record(conn, actor, "contact.create", f"contact:{contact_id}",
                     after={"thirdparty_id": thirdparty_id, "name": name, "addresses": addresses or [],
                            "role": role})
    return contact_id


def _time(value: Any) -> str | None:
    moment = as_utc(value) if isinstance(value, datetime) else None
    if moment is None and isinstance(value, str):  # SQLite's MAX over a COALESCE returns text
        try:
            moment = as_utc(datetime.fromisoformat(value))
        except ValueError:
            return value
    return moment.isoformat() if moment else None
