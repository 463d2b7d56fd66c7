"""Reading a third party's timeline: its events, oldest first, each as one line a person can read.

Every interaction maild sees or does is an event (`maild.business.timeline.append_event` and the ingest,
matching, filing, outbox and tracking writers): mail in and out, opens and clicks, filing, invoices and
payments, meetings, tasks, notes and what the rules did. `describe` turns one into text; unknown types
show their data as it is, so nothing recorded is hidden.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select

from maild.clock import as_utc
from maild.store.db import Database
from maild.store.models import Event, Message, OutboxMessage, TrackingHits

_ev, _m, _ob, _hits = Event.__table__, Message.__table__, OutboxMessage.__table__, TrackingHits.__table__


@dataclass(frozen=True)
class Entry:
    id: int
    type: str
    occurred_at: datetime
    message_id: int | None
    data: dict[str, Any]
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "occurred_at": self.occurred_at.isoformat(),
                "message_id": self.message_id, "text": self.text, "data": self.data}


# Mail decided for the third party shows at the mail's own date, not when maild matched it: a mailbox with years
# of history, ingested today, reads as those years.
MAIL_EVENTS = ("mail.matched", "mail.assigned")


def read(db: Database, thirdparty_id: int, *, since: datetime | None = None, types: Iterable[str] = (),
         limit: int = 50, before: tuple[datetime, int] | None = None, zone: str = "UTC") -> list[Entry]:
    """The newest `limit` events of the third party (since `since`; of these types, where `mail` means every
    `mail.*`; shown before the entry at `before` = (its time, its id), for paging), oldest first; meeting times
    in the text in `zone` (the rules' time zone)."""
    at = _ev.c.shown_at  # the mail's own date for MAIL_EVENTS, else occurred_at (set by the database on insert)
    # Only the columns used: each timestamp is parsed per row on SQLite, and a page has 50 rows.
    query = (select(_ev.c.id, _ev.c.type, _ev.c.message_id, _ev.c.data, _m.c.from_addr, _m.c.auth,
                    _m.c.auth_reason, at.label("at"))
             .select_from(_ev.outerjoin(_m, _m.c.id == _ev.c.message_id))
             .where(_ev.c.thirdparty_id == thirdparty_id))
    if since is not None:
        query = query.where(at >= since)
    if before is not None:
        query = query.where(or_(at < before[0], and_(at == before[0], _ev.c.id < before[1])))
    wanted = [t.strip() for t in types if t.strip()]
    if wanted:
        query = query.where(or_(*[_ev.c.type == t if "." in t else _ev.c.type.startswith(f"{t}.") for t in wanted]))
    with db.engine.connect() as conn:
        rows = conn.execute(query.order_by(at.desc(), _ev.c.id.desc()).limit(limit)).all()
        # Always these two queries (also for none): a page costs the same number of statements whatever it shows.
        outbox_ids = {(r.data or {}).get("outbox_id") for r in rows if r.type in ("mail.opened", "mail.clicked")}
        subjects = dict(conn.execute(select(_ob.c.id, _ob.c.subject).where(
            _ob.c.id.in_(sorted(i for i in outbox_ids if isinstance(i, int))))).all())
        tracked = [r.id for r in rows if r.type in ("mail.opened", "mail.clicked")]
        repeats = {event_id: (hits, last_at) for event_id, hits, last_at in conn.execute(
            select(_hits.c.event_id, _hits.c.hits, _hits.c.last_at).where(_hits.c.event_id.in_(tracked)))}
    entries = []
    for row in reversed(rows):
        data = dict(row.data or {})
        shown = {**data, "from": row.from_addr} if row.from_addr and "from" not in data else data
        if row.auth == "fail" and row.type in MAIL_EVENTS:  # from the message: also events written before it
            shown = {**shown, "auth": "fail", "auth_reason": row.auth_reason}
        if row.type in ("mail.opened", "mail.clicked"):
            shown = {**shown, "subject": subjects.get(data.get("outbox_id"))}
            if row.id in repeats:  # one client's repeats within tracking.repeat_window, counted on this event
                hits, last_at = repeats[row.id]
                data.update(hits=hits, last_hit_at=(as_utc(last_at) or last_at).isoformat())
                shown = {**shown, "hits": hits, "last_hit_at": data["last_hit_at"]}
        entries.append(Entry(row.id, row.type, as_utc(row.at) or row.at, row.message_id, data,
                             describe(row.type, shown, zone)))
    return entries


def describe(event_type: str, data: Mapping[str, Any], zone: str = "UTC") -> str:
    """One line for an event: what happened, to what, and why when it says; meeting times in `zone`."""
    if event_type.startswith("meeting.") and zone != "UTC":
        data = {**data, **{key: _local(data[key], zone) for key in ("start_at", "end_at") if data.get(key)}}
    text = _DESCRIBE.get(event_type)
    if text is None:
        return f"{event_type} {json.dumps(dict(data), ensure_ascii=False, default=str, sort_keys=True)}"
    try:
        return text(data)
    except (KeyError, TypeError, ValueError):  # an older event written with other fields
        return f"{event_type} {json.dumps(dict(data), ensure_ascii=False, default=str, sort_keys=True)}"


def _q(value: Any) -> str:
    return f'"{value}"' if value else '""'


def _local(value: Any, zone: str) -> Any:
    """An ISO instant (`2026-11-24T13:00:00+00:00`) as local time in `zone`; anything else unchanged."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return moment.astimezone(ZoneInfo(zone)).isoformat()


def _when(value: Any) -> str:
    return str(value or "").replace("T", " ")[:16]


def _machine(data: Mapping[str, Any]) -> str:
    repeats = f" ({data['hits']} times by this client, last {_when(data.get('last_hit_at'))})" \
        if (data.get("hits") or 1) > 1 else ""
    return repeats + (" (likely a machine: proxy or link scanner)" if data.get("machine") else "")


def _mail_in(data: Mapping[str, Any]) -> str:
    sender = f" from {data['from']}" if data.get("from") else ""
    how = f" [{data.get('matcher')}: {data.get('reason')}]" if data.get("matcher") else ""
    return f"mail in   {_q(data.get('subject'))}{sender}{how}{_unauthenticated(data)}"


def _unauthenticated(data: Mapping[str, Any]) -> str:
    if data.get("auth") != "fail":
        return ""
    return f" UNAUTHENTICATED ({data.get('auth_reason') or 'dmarc=fail'}): rules only file it"


def _refused(data: Mapping[str, Any]) -> str:
    more = f" (and {data['count'] - 1} more)" if data.get("count", 1) > 1 else ""
    return f"meeting   invitation from {data.get('sender')} refused: {data.get('reason')}{more}"


def _send_failed(data: Mapping[str, Any]) -> str:
    to = f"{_q(data.get('subject'))} to {', '.join(data.get('to') or [])}"
    if data.get("outcome") == "ambiguous":
        return (f"mail out? {to}: interrupted after DATA began at {_when(data.get('data_started_at'))}, may have "
                f"arrived (see `maild outbox show {data.get('outbox_id')}`)")
    return f"not sent  {to}: {data.get('reason')}"


def _filed(data: Mapping[str, Any]) -> str:
    keywords = f" +{' +'.join(data['keywords'])}" if data.get("keywords") else ""
    where = f"{data.get('action', 'move')} to {data.get('folder')}" if data.get("folder") else "keywords"
    return f"filed     {where}{keywords}" + (" (already gone from the server)" if data.get("already_gone") else "")


def _invoice_updated(data: Mapping[str, Any]) -> str:
    if "status" in data:
        why = f" ({data['reason']})" if data.get("reason") else ""
        return f"invoice   {data['ref']}: {data.get('previous_status')} -> {data['status']}{why}"
    changes = ", ".join(f"{k} {v}" for k, v in sorted((data.get("changes") or {}).items()))
    return f"invoice   {data['ref']} changed: {changes}"


def _meeting(verb: str) -> Callable[[Mapping[str, Any]], str]:
    def text(data: Mapping[str, Any]) -> str:
        omitted = f" ({data['attendees_omitted']} attendees over the limit not recorded)" \
            if data.get("attendees_omitted") else ""
        return f"meeting   {_q(data.get('subject'))} {_when(data.get('start_at'))} - {_when(data.get('end_at'))[11:]}" \
               + (f" {verb}" if verb else "") + omitted
    return text


def _task(data: Mapping[str, Any]) -> str:
    owner = f" for {data['owner']}" if data.get("owner") else ""
    rule = f" (rule {data['rule']})" if data.get("rule") else ""
    return f"{data.get('kind') or 'task':<9} {_q(data.get('title'))}{owner}{rule}"


def _notice(what: str, data: Mapping[str, Any]) -> str:
    """A delivery-failure notice or complaint about our mail (maild/bounces/record.py)."""
    mail = f" {_q(data.get('subject'))}" if data.get("subject") else ""
    hard = "" if data.get("action") != "failed" else (" hard" if data.get("hard") else " soft")
    status = f" {data['status']}" if data.get("status") else ""
    state = f"; address {data['address_state']}" if data.get("address_state") else ""
    counted = "" if data.get("counted", True) else "; not counted: we never sent to this address"
    return f"{what:<9}{mail} to {data.get('address')}:{hard}{status} {data.get('reason') or ''}{state}{counted}"


_DESCRIBE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "mail.matched": _mail_in,
    "mail.assigned": lambda d: f"mail in   {_q(d.get('subject'))}" + (f" from {d['from']}" if d.get("from") else "")
    + " (assigned by hand)" + _unauthenticated(d),
    "mail.sent": lambda d: f"mail out  {_q(d.get('subject'))} to {', '.join(d.get('to') or [])}"
    + (" (marked sent by a person)" if d.get("marked_by") else ""),
    "mail.refused": lambda d: f"refused   {_q(d.get('subject'))} to {', '.join(d.get('to') or [])}: {d.get('reply')}",
    "mail.send_failed": _send_failed,
    "mail.opened": lambda d: f"opened    {_q(d.get('subject'))}{_machine(d)}",
    "mail.clicked": lambda d: f"clicked   {d.get('url')} in {_q(d.get('subject'))}{_machine(d)}",
    "mail.filed": _filed,
    "mail.bounced": lambda d: _notice("BOUNCED", d),
    "mail.delayed": lambda d: _notice("delayed", d),
    "mail.complained": lambda d: _notice("COMPLAINT", d),
    "address.cleared": lambda d: f"address   {d['address']} receives mail again (it wrote to us; was {d.get('was')})",
    "rule.held_back": lambda d: f"held back {d.get('template')} to {d.get('to')}: {d.get('reason')}",
    "invoice.created": lambda d: f"invoice   {d['ref']} {d['amount']} {d.get('currency', '')}, due {d['due_on']}",
    "invoice.updated": _invoice_updated,
    "invoice.paid": lambda d: f"invoice   {d['ref']} paid",
    "payment.recorded": lambda d: f"payment   {d['amount']} {d.get('currency', '')} for {d['ref']} on {d['paid_on']}"
    + (f" ({d['reference']})" if d.get("reference") else ""),
    "meeting.created": _meeting(""),
    "meeting.updated": _meeting("(changed)"),
    "meeting.cancelled": _meeting("CANCELLED"),
    "meeting.refused": _refused,
    "task.created": _task,
    "task.done": lambda d: f"done      {_q(d.get('title'))}" + (f" ({d['owner']})" if d.get("owner") else ""),
    "note.added": lambda d: f"note      {d['text']}" + (f" ({d['author']})" if d.get("author") else ""),
    "rule.action": lambda d: f"rule      {d['rule']}: {d.get('summary') or d.get('action')}",
    "invoice.held": lambda d: f"invoice   {d['ref']} HELD: {d.get('reason')}"
    + (f" (decides: {d['owner']}" + (f", task #{d['task_id']}" if d.get("task_id") else "") + ")"
       if d.get("owner") else " (nobody named: set an owner)"),
    "invoice.hold_escalated": lambda d: f"invoice   {d['ref']} still held since {d.get('held_since')}: escalated"
    + (f" to {d['owner']}" if d.get("owner") else ""),
    "invoice.resumed": lambda d: f"invoice   {d['ref']} hold ended: {d.get('resolution')} ({d.get('status')})",
    "invoice.promised": lambda d: f"invoice   {d['ref']} payment promised by {d.get('until')}: dunning waits",
    "invoice.disputed": lambda d: f"invoice   {d['ref']} DISPUTED: {d.get('reason')}",
}
