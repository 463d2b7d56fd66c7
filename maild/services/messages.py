"""One message for people: headers, text, HTML body, attachments, raw bytes, the matching verdicts and its filing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from maild.clock import as_utc
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Attachment, Event, FilingTask, Location, Message, MessageMatch, Source, ThirdParty

_m, _a, _mm, _ft = Message.__table__, Attachment.__table__, MessageMatch.__table__, FilingTask.__table__
_tp, _ev, _loc, _src = ThirdParty.__table__, Event.__table__, Location.__table__, Source.__table__


def detail(db: Database, message_id: int) -> dict[str, Any]:
    """Everything shown on a message's page, in a constant number of queries (LookupError: no such message)."""
    with db.engine.connect() as conn:
        m = conn.execute(select(_m).where(_m.c.id == message_id)).one_or_none()
        if m is None:
            raise LookupError(f"no message {message_id}")
        attachments = conn.execute(select(_a).where(_a.c.message_id == message_id).order_by(_a.c.position)).all()
        decision = conn.execute(select(_mm, _tp.c.name.label("thirdparty_name"))
                                .select_from(_mm.outerjoin(_tp, _tp.c.id == _mm.c.thirdparty_id))
                                .where(_mm.c.message_id == message_id)).one_or_none()
        filing = conn.execute(select(_ft).where(_ft.c.message_id == message_id).order_by(_ft.c.id)).all()
        locations = conn.execute(select(_loc.c.folder, _loc.c.uid, _loc.c.key, _src.c.name)
                                 .join(_src, _src.c.id == _loc.c.source_id)
                                 .where(_loc.c.message_id == message_id).order_by(_loc.c.id)).all()
        events = conn.execute(select(_ev.c.id, _ev.c.type, _ev.c.occurred_at, _ev.c.data)
                              .where(_ev.c.message_id == message_id).order_by(_ev.c.id).limit(200)).all()
    return {
        "id": m.id, "message_id": m.header_message_id, "subject": m.subject or "", "from_name": m.from_name,
        "from_addr": m.from_addr, "to": [_addr(a) for a in m.to_addrs or []],
        "cc": [_addr(a) for a in m.cc_addrs or []],
        "reply_to": [_addr(a) for a in m.reply_to or []], "date": _iso(m.date), "size": m.size,
        "in_reply_to": m.in_reply_to, "text": m.text_body or "", "has_html": bool(m.html_body),
        "defects": list(m.defects or []), "parser": m.parser, "auth": m.auth, "auth_reason": m.auth_reason,
        "ingested_at": _iso(m.ingested_at),
        "attachments": [{"position": a.position, "filename": a.filename, "content_type": a.content_type,
                         "size": a.size} for a in attachments],
        "decision": None if decision is None else {
            "status": decision.status, "thirdparty_id": decision.thirdparty_id,
            "thirdparty": decision.thirdparty_name, "matcher": decision.matcher,
            "confidence": decision.confidence, "reason": decision.reason},
        "verdicts": [] if decision is None else list(decision.verdicts or []),
        "filing": [{"action": t.action, "folder": t.target_folder, "filed_folder": t.filed_folder,
                    "status": t.status, "attempts": t.attempts, "last_error": t.last_error} for t in filing],
        "locations": [{"source": r.name, "folder": r.folder, "uid": r.uid, "key": r.key} for r in locations],
        "events": [{"id": e.id, "type": e.type, "at": _iso(e.occurred_at), "data": e.data} for e in events],
    }


def html_body(db: Database, message_id: int) -> str:
    with db.engine.connect() as conn:
        body = conn.execute(select(_m.c.html_body).where(_m.c.id == message_id)).one_or_none()
    if body is None:
        raise LookupError(f"no message {message_id}")
    return body[0] or ""


def raw(db: Database, blobs: BlobStore, message_id: int) -> bytes:
    """The message exactly as it was received."""
    with db.engine.connect() as conn:
        digest = conn.execute(select(_m.c.raw_sha256).where(_m.c.id == message_id)).scalar()
    if digest is None:
        raise LookupError(f"no message {message_id}")
    return blobs.get(digest)


def attachment(db: Database, blobs: BlobStore, message_id: int, position: int) -> tuple[dict[str, Any], bytes]:
    with db.engine.connect() as conn:
        row = conn.execute(select(_a).where(_a.c.message_id == message_id, _a.c.position == position)).one_or_none()
    if row is None:
        raise LookupError(f"no attachment {position} in message {message_id}")
    return {"filename": row.filename, "content_type": row.content_type, "size": row.size}, blobs.get(row.sha256)


def _addr(pair: Any) -> str:
    if isinstance(pair, list | tuple) and len(pair) == 2:
        name, address = pair
        return f"{name} <{address}>" if name else str(address)
    return str(pair)


def _iso(value: Any) -> str | None:
    moment = as_utc(value)
    return moment.isoformat() if moment else None
