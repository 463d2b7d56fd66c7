"""Which mail holds which invoice in dunning: read the matched mail of the timeline once (cursor `holds`) and hold
(maild.business.holds) the invoices a person must look at because of it.

An invoice is in dunning when it is open (or already held) and overdue or reminded (dunning level 1 or more).
A human mail from the customer holds:
- the invoices in whose reminders' thread it stands (In-Reply-To/References name a reminder's Message-ID): reply;
- else the invoices whose number it names (subject or text, quoted lines left out): number;
- else, when it contains one of `dunning.hold_phrases` (whole words, any case): every invoice of that third party
  in dunning: phrase.
Anything else (mail about other things from the same company) holds nothing. Our own mail, mail that failed
authentication and machine mail (its kind, `messages.kind`, is not `human`: maild/classify) never hold anything,
except a hard bounce of a reminder (`mail.bounced` with `hard` and the invoice of the rule that sent it,
maild/bounces): it holds that invoice, "letter not delivered". A message still without a kind (stored before
classification existed, not yet reached by the backfill) is classified here by the same chain and its kind stored
(maild/classify/backfill.py); a bounce classified that late was never recorded by maild/bounces, so it holds the
invoices whose reminders it returns (our tracking tokens the chain found in it). With `machine_mail.classify` off
every mail counts as written by a person.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, or_, select

from maild.business import holds
from maild.classify.backfill import BACKFILLED, classify_now
from maild.classify.base import BOUNCE, HUMAN, Classification
from maild.classify.settings import classify_settings
from maild.config import Config
from maild.own_mail import OwnMail
from maild.rules.cursor import EventCursor
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.store.models import Bounce, Invoice, Message, OutboxMessage, RuleLedger

log = logging.getLogger("maild.rules")
_inv, _m, _ob, _led = Invoice.__table__, Message.__table__, OutboxMessage.__table__, RuleLedger.__table__
_b = Bounce.__table__
CURSOR = "holds"
EVENT_TYPES = ("mail.matched", "mail.assigned", "mail.unmatched")
BOUNCED = "mail.bounced"
IN_DUNNING = ("open", holds.HELD)


class HoldWatch:
    """Reads new matched mail after the `holds` cursor and holds invoices; `run` is called before every sweep."""

    def __init__(self, config: Config, db: Database, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.own = OwnMail.from_config(config)
        self.cursor = EventCursor(db, clock, name=CURSOR)
        self.phrases = _phrase_pattern(config.dunning.hold_phrases)
        self.classify = classify_settings(config)  # None: classification off, every mail is a person's
        self.blobs = BlobStore(config.blob_dir)
        self._lock = threading.Lock()  # the events job and the sweep both call `run`: one at a time

    def ensure(self) -> None:
        self.cursor.ensure()

    def run(self, limit: int = 500) -> int:
        """Look at the mail events after the cursor (all of them, `limit` at a time); returns holds made."""
        with self._lock:
            return self._run(limit)

    def _run(self, limit: int) -> int:
        made = 0
        while True:
            rows = self.cursor.read(limit)
            for row in rows:
                if row.type in EVENT_TYPES and row.message_id is not None:
                    made += self.examine(row.message_id, row.thirdparty_id)
                elif row.type == BOUNCED:
                    made += self.bounced(row)
            if rows:
                self.cursor.advance(rows[-1].id)
            if len(rows) < limit:
                return made

    def examine(self, message_id: int, thirdparty_id: int | None) -> int:
        """Hold what this message calls for (in one transaction); returns the number of holds made."""
        now = self.clock()
        with self.db.engine.begin() as conn:
            message = conn.execute(select(_m).where(_m.c.id == message_id)).first()
            if message is None or message.auth == "fail":
                return 0
            if message.kind is None and self.classify is not None:
                message = self._classified(conn, message)
            if message.kind == BOUNCE:
                # Classified at ingest: recorded by maild/bounces (`mail.bounced`, see `bounced`). Classified late
                # (backfill, or just now): never recorded there, so it holds by the reminders it returns.
                return self._bounce(conn, message, now) if (message.machine or {}).get(BACKFILLED) else 0
            if thirdparty_id is None or self.own.is_own(message.from_addr):
                return 0
            if message.kind not in (None, HUMAN):
                log.info("message %s is machine mail (%s): it holds no invoice", message_id, message.kind)
                return 0
            found = decide(conn, message, thirdparty_id, self.phrases, now)
            made = 0
            for invoice, kind, reason in found:
                made += holds.hold(conn, self.config, invoice, kind=kind, reason=reason, now=now,
                                   message_id=message_id) is not None
            return made


    def bounced(self, event: Any) -> int:
        """A hard bounce of mail a rule sent about an invoice in dunning holds that invoice."""
        data = event.data or {}
        invoice_id = data.get("invoice_id")
        if not data.get("hard") or not isinstance(invoice_id, int):
            return 0
        now = self.clock()
        with self.db.engine.begin() as conn:
            invoice = conn.execute(select(_inv).where(_inv.c.id == invoice_id, _inv.c.status.in_(IN_DUNNING))).first()
            if invoice is None:
                return 0
            why = " ".join(str(p) for p in (data.get("status"), data.get("reason")) if p)
            reason = f"letter not delivered: bounced at {data.get('address')}" + (f" ({why})" if why else "") \
                + "; find a working address"
            return int(holds.hold(conn, self.config, invoice, kind="bounce", reason=reason, now=now,
                                  message_id=event.message_id) is not None)

    def _classified(self, conn: Connection, message: Any) -> Any:
        """A message without a kind, classified now by the chain (maild/classify/backfill.py)."""
        assert self.classify is not None
        return classify_now(conn, self.blobs, self.classify, message)

    def _bounce(self, conn: Connection, message: Any, now: datetime) -> int:
        """A bounce holds the invoices whose reminders it returns: the outbox rows of our tracking tokens the chain
        found in it (the returned original's Message-ID, its VERP address) or that maild/bounces tied it to."""
        found = Classification.from_json(message.machine)
        tokens = sorted({t.lower() for t in [*found.tokens, found.verp_token] if t}) if found else []
        tied = select(_b.c.outbox_id).where(_b.c.message_id == message.id, _b.c.outbox_id.is_not(None))
        keys = [key for (key,) in conn.execute(select(_ob.c.idempotency_key).where(
            or_(func.lower(_ob.c.tracking_token).in_(tokens), _ob.c.id.in_(tied))))]
        if not keys:
            return 0
        subjects = {key.split("/", 1)[0]: None for key in keys}
        invoice_ids = sorted({int(subject.removeprefix("invoice:")) for (subject,) in conn.execute(
            select(_led.c.subject).where(_led.c.key.in_(list(subjects)), _led.c.subject.like("invoice:%")))})
        made = 0
        for invoice in conn.execute(select(_inv).where(_inv.c.id.in_(invoice_ids), _inv.c.status.in_(IN_DUNNING))):
            reason = f"letter not delivered: {(message.subject or 'a bounce').strip()[:80]} (from {message.from_addr})"
            made += holds.hold(conn, self.config, invoice, kind="bounce", reason=reason, now=now,
                               message_id=message.id) is not None
        return made


def decide(conn: Connection, message: Any, thirdparty_id: int, phrases: re.Pattern[str] | None,
           now: datetime) -> list[tuple[Any, str, str]]:
    """(invoice, kind, reason) for each invoice this message holds."""
    today = now.date()
    invoices = [row for row in conn.execute(select(_inv).where(_inv.c.thirdparty_id == thirdparty_id,
                                                               _inv.c.status.in_(IN_DUNNING))
                                            .order_by(_inv.c.id)).all()
                if row.dunning_level >= 1 or row.status == holds.HELD or _day(row.due_on) < today]
    if not invoices:
        return []
    sender = message.from_name or message.from_addr or "the customer"
    subject = (message.subject or "").strip()
    said = f"mail from {sender}" + (f" ({subject[:80]!r})" if subject else "")
    threaded = _reminders_answered(conn, message, [row.id for row in invoices])
    out = [(row, "reply", f"{said} answers a reminder") for row in invoices if row.id in threaded]
    if out:
        return out
    text = f"{subject}\n{_unquoted(message.text_body or '')}"
    for row in invoices:
        if re.search(r"(?<![\w-])" + re.escape(row.ref) + r"(?![\w-])", text, re.IGNORECASE):
            out.append((row, "number", f"{said} names invoice {row.ref}"))
    if out:
        return out
    if phrases is not None:
        hit = phrases.search(text)
        if hit:
            return [(row, "phrase", f"{said} says {hit.group(0)!r}") for row in invoices]
    return []


def _reminders_answered(conn: Connection, message: Any, invoice_ids: list[int]) -> set[int]:
    """The invoices (of `invoice_ids`) one of whose reminders (mail a rule sent for the invoice) the message
    answers: its In-Reply-To or References name that mail's Message-ID."""
    wanted = {_norm(i) for i in [message.in_reply_to, *(message.references or [])] if i}
    if not wanted:
        return set()
    subjects = {f"invoice:{i}": i for i in invoice_ids}
    keys = conn.execute(select(_led.c.key, _led.c.subject).where(_led.c.subject.in_(list(subjects)),
                                                                 _led.c.action == "send")).all()
    by_key = {key: subjects[subject] for key, subject in keys}
    if not by_key:
        return set()
    rows = conn.execute(select(_ob.c.idempotency_key, _ob.c.header_message_id).where(or_(
        _ob.c.idempotency_key.in_(list(by_key)),
        *(_ob.c.idempotency_key.like(key.replace("%", r"\%").replace("_", r"\_") + "/%", escape="\\")
          for key in by_key)))).all()
    found: set[int] = set()
    for key, header in rows:
        if _norm(header) in wanted:
            found.add(by_key[key.split("/", 1)[0]])
    return found


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str] | None:
    cleaned = [p.strip() for p in phrases if p and p.strip()]
    if not cleaned:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in cleaned) + r")(?!\w)", re.IGNORECASE)


def _unquoted(text: str) -> str:
    """The text without quoted lines (`> ...`) and without what follows a reply header we can recognise."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if re.match(r"^(-{2,}\s*(Original Message|Ursprüngliche Nachricht)|On .+ wrote:$|Am .+ schrieb .+:$)",
                    stripped):
            break
        kept.append(line)
    return "\n".join(kept)


def _norm(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>").strip().lower()


def _day(value: Any) -> Any:
    from datetime import date

    return value if isinstance(value, date) else date.fromisoformat(str(value))
