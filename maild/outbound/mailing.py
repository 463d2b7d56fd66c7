"""From "send template T to X" to a queued outbox row: context, render, track, compose, enqueue.

Everything that can fail (unknown recipient, a placeholder missing, a bad address) fails here, before
anything is queued; what is queued is exactly the bytes that will be sent.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from maild.config import Config, resolve_path
from maild.directory.service import resolve_thirdparty
from maild.matchers.normalize import normalize_address
from maild.outbound.compose import compose
from maild.outbound.outbox import enqueue
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Contact, Document, MailAddress, ThirdParty, TrackingId
from maild.templates.loader import find
from maild.templates.pdf import invoice_pdf
from maild.templates.render import render
from maild.tracking import ids

log = logging.getLogger("maild.outbound")


@dataclass
class Recipient:
    address: str
    thirdparty: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None


@dataclass
class PreparedMail:
    raw: bytes
    subject: str
    recipient: Recipient
    message_id: str
    token: str
    language: str
    attachments: list[str] = field(default_factory=list)


def resolve_recipient(db: Database, target: str) -> Recipient:
    """An address (its contact and company looked up when known) or a third party (its first contact)."""
    tp_table, c_table, a_table = ThirdParty.__table__, Contact.__table__, MailAddress.__table__
    with db.engine.connect() as conn:
        if "@" in target:
            normal = normalize_address(target)
            if normal is None:
                raise ValueError(f"{target!r} is not a mail address")
            row = conn.execute(select(a_table.c.thirdparty_id, a_table.c.contact_id)
                               .where(a_table.c.address == normal)).first()
            tp_id, contact_id = (row[0], row[1]) if row else (None, None)
            address = target.strip()
        else:
            tp = resolve_thirdparty(db, target)
            tp_id = tp.id
            row = conn.execute(select(a_table.c.address, a_table.c.contact_id).where(a_table.c.thirdparty_id == tp_id)
                               .order_by(a_table.c.contact_id.is_(None), a_table.c.id)).first()
            if row is None:
                raise ValueError(f"{tp.name} has no mail address; add one with `maild contact add`")
            address, contact_id = row[0], row[1]
        from maild.business.people import contact_view, thirdparty_view

        thirdparty = thirdparty_view(conn, _row(conn, tp_table, tp_id)) if tp_id else None
        contact = contact_view(conn, _row(conn, c_table, contact_id)) if contact_id else None
    return Recipient(address, thirdparty, contact)


def prepare(config: Config, db: Database, *, template: str, to: str, invoice_ref: str | None = None,
            attach: tuple[Path, ...] = (), language: str | None = None,
            extra: dict[str, Any] | None = None) -> PreparedMail:
    outbound = config.outbound
    recipient = resolve_recipient(db, to)
    language = language or _first(recipient.contact, "language") or _first(recipient.thirdparty, "language") \
        or outbound.default_language
    token = ids.new_token()
    sender_domain = outbound.sender.rpartition("@")[2] or "localhost"
    message_id = ids.message_id(config.matching.instance_id, token, sender_domain)
    context: dict[str, Any] = {
        "company": dict(outbound.company), "thirdparty": recipient.thirdparty or {}, "contact": recipient.contact or {},
        "sender": {"address": outbound.sender, "email": outbound.sender, "name": outbound.sender_name},
        "links": {}, **(extra or {})}
    attachments: list[tuple[str, str, bytes]] = []
    if invoice_ref:
        context["invoice"] = _invoice(db, invoice_ref, recipient)
        attachments.append((f"{invoice_ref}.pdf", "application/pdf",
                            invoice_pdf(context["invoice"], context["company"], context["thirdparty"], language)))
    for path in attach:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        attachments.append((path.name, ctype, path.read_bytes()))
    templates_dir = resolve_path(config.base_dir, outbound.templates_dir)
    files = find(templates_dir, template, language, outbound.default_language)
    rendered = render(files, context)
    html = rendered.html
    if html and config.tracking.enabled and _template_tracks(templates_dir / template):
        html = _instrument(config, db, html, token)
    reply_to = ids.plus_address(outbound.sender, config.matching.instance_id, token) if outbound.reply_to_plus else None
    raw = compose(sender=outbound.sender, sender_name=outbound.sender_name, to=[recipient.address],
                  subject=rendered.subject, text=rendered.text, html=html, attachments=attachments,
                  message_id=message_id, reply_to=reply_to)
    return PreparedMail(raw, rendered.subject, recipient, message_id, token, rendered.language,
                        [name for name, _, _ in attachments])


def queue(config: Config, db: Database, mail: PreparedMail, *, key: str, template: str) -> tuple[int, bool]:
    """Record the tracking id (so replies thread back to the third party) and enqueue, once per key."""
    tp_id = (mail.recipient.thirdparty or {}).get("id")
    contact_id = (mail.recipient.contact or {}).get("id")
    outbox_id, created = enqueue(db, BlobStore(config.blob_dir), key=key, raw=mail.raw,
                                 sender=config.outbound.sender, recipients=[mail.recipient.address],
                                 subject=mail.subject, header_message_id=mail.message_id, thirdparty_id=tp_id,
                                 contact_id=contact_id, template=template, tracking_token=mail.token)
    if created:
        with db.engine.begin() as conn:
            conn.execute(db.insert_ignore(TrackingId.__table__),
                         {"token": mail.token, "thirdparty_id": tp_id, "contact_id": contact_id})
    return outbox_id, created


def _template_tracks(folder: Path) -> bool:
    """`tracking: false` in the template's options.yaml turns tracking off for that template alone."""
    options = folder / "options.yaml"
    if not options.is_file():
        return True
    data = yaml.safe_load(options.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("tracking", True), bool):
        raise ValueError(f"{options}: expected a mapping like `tracking: false`")
    return bool(data.get("tracking", True))


def _instrument(config: Config, db: Database, html: str, token: str) -> str:
    """Tracked links and pixel; without a usable secret the mail goes out untracked, and the log says why."""
    from maild.config import ConfigError
    from maild.tracking.links import instrument
    from maild.tracking.signing import load_secret

    try:
        secret = load_secret(config.tracking, config.base_dir)
    except ConfigError as exc:
        log.warning("sending without tracking: %s", exc)
        return html
    return instrument(db, html, token, config.tracking.base_url, secret)


def _invoice(db: Database, ref: str, recipient: Recipient) -> dict[str, Any]:
    from maild.business.invoices import invoice_context
    from maild.store.models import Invoice

    doc, inv = Document.__table__, Invoice.__table__
    with db.engine.connect() as conn:
        row = conn.execute(select(inv).where(inv.c.ref == ref)).first()
        if row is None:  # a document number without invoice data (`maild document add`): only its ref is known
            row = conn.execute(select(doc).where(doc.c.ref == ref, doc.c.kind == "invoice")).first()
        if row is None:
            raise ValueError(f"no invoice {ref} (add it with `maild invoice add {ref} --thirdparty ...`)")
        tp_id = (recipient.thirdparty or {}).get("id")
        if tp_id is not None and row.thirdparty_id != tp_id:
            raise ValueError(f"invoice {ref} belongs to another third party than the recipient")
        if "amount" not in row._fields:
            return {"ref": ref, "lines": [], "currency": "EUR"}
        return invoice_context(conn, row)


def _row(conn: Any, table: Any, row_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(table).where(table.c.id == row_id)).first()
    return dict(row._mapping) if row else None


def _first(record: dict[str, Any] | None, key: str) -> Any:
    return (record or {}).get(key)
