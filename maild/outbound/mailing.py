"""From "send template T to X" to a queued outbox row: context, render, track, compose, enqueue.

Everything that can fail (unknown recipient, a placeholder missing, a bad address) fails here, before
anything is queued; what is queued is exactly the bytes that will be sent.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from maild.config import Config, resolve_path
from maild.outbound.compose import compose
from maild.outbound.prepared import MailRequest, PreparedMail
from maild.outbound.queueing import queue
from maild.outbound.recipients import Recipient, resolve_recipient
from maild.store.db import Database
from maild.store.models import Document
from maild.templates.loader import TemplateFiles, find
from maild.templates.pdf import dunning_pdf, invoice_pdf
from maild.templates.render import RenderLimits, render
from maild.templates.salutation import greeting
from maild.tracking import ids

log = logging.getLogger("maild.outbound")

__all__ = ["MailRequest", "PreparedMail", "Recipient", "build", "load_invoices", "prepare", "queue",
           "resolve_recipient"]


class TemplateSetup:
    """What every mail of one template shares: its folder, whether it is tracked, the tracking secret."""

    def __init__(self, config: Config, template: str) -> None:
        self.config = config
        self.template = template
        self.templates_dir = resolve_path(config.base_dir, config.outbound.templates_dir)
        self.folder = self.templates_dir / template
        self._files: dict[str, TemplateFiles] = {}

    def files(self, language: str) -> TemplateFiles:
        """The template's files for `language` (looked up once per language: a batch reuses them)."""
        found = self._files.get(language)
        if found is None:
            found = self._files[language] = find(self.templates_dir, self.template, language,
                                                 self.config.outbound.default_language)
        return found

    @cached_property
    def tracks(self) -> bool:
        return self.config.tracking.enabled and _template_tracks(self.folder)

    @cached_property
    def secret(self) -> bytes | None:
        """The tracking secret; without a usable one the mail goes out untracked, and the log says why."""
        from maild.config import ConfigError
        from maild.tracking.signing import load_secret

        try:
            return load_secret(self.config.tracking, self.config.base_dir)
        except ConfigError as exc:
            log.warning("sending without tracking: %s", exc)
            return None


def prepare(config: Config, db: Database, *, template: str, to: str, invoice_ref: str | None = None,
            attach: tuple[Path, ...] = (), language: str | None = None,
            extra: dict[str, Any] | None = None, auto_submitted: bool = False,
            allow_undeliverable: bool = False, invoice_copy: bool = True, dunning_level: int | None = None,
            reminder_date: str | None = None) -> PreparedMail:
    request = MailRequest(template, to, invoice_ref, tuple(attach), language, extra, auto_submitted,
                          allow_undeliverable, invoice_copy, dunning_level, reminder_date)
    recipient = resolve_recipient(db, to)
    refuse_undeliverable(db, [request], [recipient])
    mail = build(config, db, request, recipient, TemplateSetup(config, template))
    if mail.links:
        from maild.tracking.links import store_links

        store_links(db, [(mail.token, mail.links)])
        mail.links = []
    return mail


def build(config: Config, db: Database, request: MailRequest, recipient: Recipient,
          setup: TemplateSetup, invoices: Mapping[str, Any] | None = None) -> PreparedMail:
    """Render, attach, track and compose one mail for a resolved recipient; tracked links left to store.

    `invoices` (from `load_invoices`, for a batch) holds the invoice rows by ref; without it the
    request's invoice is looked up here.
    """
    outbound = config.outbound
    language = request.language or _first(recipient.contact, "language") \
        or _first(recipient.thirdparty, "language") or outbound.default_language
    token = ids.new_token()
    sender_domain = outbound.sender.rpartition("@")[2] or "localhost"
    message_id = ids.message_id(config.matching.instance_id, token, sender_domain)
    context: dict[str, Any] = {
        "company": dict(outbound.company), "thirdparty": recipient.thirdparty or {},
        "contact": {**(recipient.contact or {}), "greeting": greeting(recipient.contact, language)},
        "sender": {"address": outbound.sender, "email": outbound.sender, "name": outbound.sender_name},
        "links": {}, **(request.extra or {})}
    attachments: list[tuple[str, str, bytes]] = []
    if request.invoice_ref:
        row = invoices.get(request.invoice_ref) if invoices is not None \
            else load_invoices(db, [request.invoice_ref]).get(request.invoice_ref)
        context["invoice"] = _invoice_view(request.invoice_ref, row, recipient)
        if request.invoice_copy:
            attachments.append((f"{request.invoice_ref}.pdf", "application/pdf",
                                invoice_pdf(context["invoice"], context["company"], context["thirdparty"], language)))
        if request.dunning_level:
            attachments.append(_reminder_letter(config, request, context, language))
    for path in request.attach:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        attachments.append((path.name, ctype, path.read_bytes()))
    files = setup.files(language)
    rendered = render(files, context, RenderLimits(outbound.template_max_seconds, outbound.template_max_bytes))
    html = rendered.html
    links: list[str] = []
    if html and setup.tracks and setup.secret is not None:
        from maild.tracking.links import rewrite

        html, links = rewrite(html, token, config.tracking.base_url, setup.secret)
    reply_to = ids.plus_address(outbound.sender, config.matching.instance_id, token) if outbound.reply_to_plus else None
    raw = compose(sender=outbound.sender, sender_name=outbound.sender_name, to=[recipient.address],
                  subject=rendered.subject, text=rendered.text, html=html, attachments=attachments,
                  message_id=message_id, reply_to=reply_to, auto_submitted=request.auto_submitted)
    return PreparedMail(raw, rendered.subject, recipient, message_id, token, rendered.language,
                        [name for name, _, _ in attachments], links)


def refuse_undeliverable(db: Database, requests: Sequence[MailRequest], recipients: Sequence[Recipient]) -> None:
    """Raises `Undeliverable` (a ValueError) when mail to one of the recipients bounced for good
    (maild/bounces/health.py), unless its request allows it; one query for a whole batch."""
    from maild.bounces.health import refuse_undeliverable as refuse

    addresses = [r.address for q, r in zip(requests, recipients, strict=True) if not q.allow_undeliverable]
    if addresses:
        with db.engine.connect() as conn:
            refuse(conn, addresses)


def _template_tracks(folder: Path) -> bool:
    """`tracking: false` in the template's options.yaml turns tracking off for that template alone."""
    options = folder / "options.yaml"
    if not options.is_file():
        return True
    data = yaml.safe_load(options.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("tracking", True), bool):
        raise ValueError(f"{options}: expected a mapping like `tracking: false`")
    return bool(data.get("tracking", True))


def load_invoices(db: Database, refs: Iterable[str]) -> dict[str, Any]:
    """The row behind each invoice ref, with one query per table for all of them: its `invoices` row, or,
    for a document number without invoice data (`maild document add`), its `documents` row (kind invoice).
    Refs with neither are left out. `_invoice_view` raises for both of those: a PDF needs the amounts."""
    from maild.store.models import Invoice

    wanted = sorted(set(refs))
    found: dict[str, Any] = {}
    if not wanted:
        return found
    doc, inv = Document.__table__, Invoice.__table__
    with db.engine.connect() as conn:
        for row in conn.execute(select(inv).where(inv.c.ref.in_(wanted)).order_by(inv.c.id)):
            found.setdefault(row.ref, row)
        missing = [ref for ref in wanted if ref not in found]
        if missing:
            query = select(doc).where(doc.c.ref.in_(missing), doc.c.kind == "invoice").order_by(doc.c.id)
            for row in conn.execute(query):
                found.setdefault(row.ref, row)
    return found


def _invoice_view(ref: str, row: Any, recipient: Recipient) -> dict[str, Any]:
    """The template view of the invoice `ref` (its row from `load_invoices`, None when unknown)."""
    from maild.business.invoices import invoice_context

    if row is None:
        raise ValueError(f"no invoice {ref} (add it with `maild invoice add {ref} --thirdparty ...`)")
    tp_id = (recipient.thirdparty or {}).get("id")
    if tp_id is not None and row.thirdparty_id != tp_id:
        raise ValueError(f"invoice {ref} belongs to another third party than the recipient")
    if "amount" not in row._fields:  # a `documents` row: a reference for matching, no amounts to print
        raise ValueError(f"{ref} is only a document reference, without invoice data: add the invoice "
                         f"(`maild invoice add {ref} ...` or `maild import invoices`) to attach its PDF")
    return invoice_context(None, row)


def _reminder_letter(config: Config, request: MailRequest, context: dict[str, Any],
                     language: str) -> tuple[str, str, bytes]:
    """The reminder letter (dunning_pdf) of the request's level, to the recipient contact (or the company)."""
    written = date.fromisoformat(request.reminder_date) if request.reminder_date else date.today()
    level = int(request.dunning_level or 1)
    pdf = dunning_pdf(context["invoice"], context["company"], context["thirdparty"], level, language,
                      contact=recipient_contact(context), reminder_date=written,
                      pay_by=written + timedelta(days=config.dunning.payment_days))
    word = "Mahnung" if language.split("-")[0].split("_")[0].lower() == "de" else "Reminder"
    return f"{word}-{level}-{request.invoice_ref}.pdf", "application/pdf", pdf


def recipient_contact(context: dict[str, Any]) -> dict[str, Any] | None:
    """The context's contact, None when the mail goes to a company address (its dict then only has `greeting`)."""
    contact = context.get("contact") or {}
    return contact if set(contact) - {"greeting"} else None


def _first(record: dict[str, Any] | None, key: str) -> Any:
    return (record or {}).get(key)
