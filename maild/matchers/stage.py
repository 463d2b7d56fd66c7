"""The matching stage: decide stored messages that have no decision yet, in batches, durably.

A message without a `message_matches` row is pending, so a crash between storing and matching loses
nothing: the next pass picks it up. For each decision, in one transaction: the decision with every
matcher's verdict, a `mail.matched` or `mail.unmatched` event on the timeline, and the filing tasks
for the message's IMAP locations (done later by the folder worker that holds the connection).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, select

from maild.bounces import record
from maild.business.invitations import InvitationReader
from maild.clock import utcnow
from maild.config import Config, FilingConfig, ImapSourceConfig
from maild.matchers import chain, snapshot
from maild.matchers.base import Candidate, MailFacts, Settings, Verdict
from maild.matchers.freemail import shipped
from maild.own_mail import OwnMail
from maild.store.db import Database
from maild.store.models import Event, FilingTask, Location, Message, MessageMatch, Source, ThirdParty

log = logging.getLogger("maild.match")

_m, _mm, _loc, _src = Message.__table__, MessageMatch.__table__, Location.__table__, Source.__table__
BODY_CHARS = 20000


def settings_from(config: Config) -> Settings:
    matching = config.matching
    return Settings(
        instance_id=matching.instance_id,
        own=OwnMail.from_config(config),
        free_mail_domains=shipped() | frozenset(d.lower() for d in matching.free_mail_domains),
        reference_patterns=tuple((r.pattern, r.kind) for r in matching.references),
        min_confidence=matching.min_confidence,
    )


class MatchingStage:
    def __init__(self, config: Config, db: Database) -> None:
        self.db = db
        self.settings = settings_from(config)
        self.order = list(config.matching.order)
        self.filing: dict[str, FilingConfig] = {
            s.name: s.filing or config.filing for s in config.sources if isinstance(s, ImapSourceConfig)}
        self.invitations = InvitationReader.from_config(config)  # meetings from text/calendar parts
        self._auth: dict[int, tuple[str, str | None]] = {}  # message id -> (auth, reason) of the batch in hand
        self.machine_mail = config.machine_mail
        self._rows: list[Any] = []  # the batch in hand (for what follows from machine mail)
        self._notices: dict[int, record.Notice] = {}  # its bounces and complaint reports, tied to our outbox rows

    def run(self, message_ids: Sequence[int] | None = None, limit: int = 500) -> int:
        """Decide up to `limit` pending messages (only those among `message_ids` when given)."""
        query = (select(_m).outerjoin(_mm, _mm.c.message_id == _m.c.id).where(_mm.c.message_id.is_(None))
                 .order_by(_m.c.id).limit(limit))
        if message_ids is not None:
            if not message_ids:
                return 0
            query = query.where(_m.c.id.in_(list(message_ids)))
        with self.db.engine.begin() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return 0
            facts = [chain.derive(_facts(row), self.settings) for row in rows]
            self._auth = {row.id: (row.auth, row.auth_reason) for row in rows if row.auth is not None}
            snap = snapshot.load(conn, facts, self.settings, with_names="display_name" in self.order)
            self._rows = rows
            self._notices = record.notices(conn, rows)
            decided = []
            for fact in facts:
                notice = self._notices.get(fact.message_id)
                if notice is not None:  # a bounce or complaint: it belongs with the mail it is about
                    found = record.decision(notice)
                    decided.append((fact, [_notice_verdict(found)], found))
                    continue
                verdicts = chain.run(fact, snap, self.settings, self.order)
                decision = chain.decide(verdicts, self.settings, snap.thirdparty_names)
                decided.append((fact, verdicts, decision))
                if decision.status == "matched" and decision.thirdparty_id and fact.header_message_id:
                    # a reply later in this batch joins the thread as if this mail had been filed before
                    snap.filed_threads.setdefault(fact.header_message_id,
                                                  (decision.thirdparty_id, decision.contact_id))
            return self._record(conn, decided)

    def run_all(self, batch: int = 500) -> int:
        total = 0
        while (done := self.run(limit=batch)) > 0:
            total += done
        return total

    def _record(self, conn: Connection, decided: list[tuple[MailFacts, list[Any], chain.Decision]]) -> int:
        """Decisions, events and filing plans of a batch, with a few multi-row statements."""
        now = utcnow()
        rows = [{"message_id": f.message_id, "status": d.status, "thirdparty_id": d.thirdparty_id,
                 "contact_id": d.contact_id, "matcher": d.matcher, "confidence": d.confidence, "reason": d.reason,
                 "decided_at": now, "verdicts": [_verdict_json(v) for v in verdicts]} for f, verdicts, d in decided]
        # A message another daemon decided meanwhile is skipped: its events and filing are that daemon's.
        ours = set(conn.execute(self.db.insert_ignore(_mm).returning(_mm.c.message_id), rows).scalars())
        decided = [item for item in decided if item[0].message_id in ours]
        if not decided:
            return 0
        conn.execute(Event.__table__.insert(), [
            {"type": "mail.matched" if d.status == "matched" else "mail.unmatched", "occurred_at": now,
             "recorded_at": now, "thirdparty_id": d.thirdparty_id, "message_id": f.message_id,
             "data": {"status": d.status, "matcher": d.matcher, "confidence": d.confidence, "reason": d.reason,
                      "contact_id": d.contact_id, "subject": f.subject, **self._auth_data(f.message_id)}}
            for f, _, d in decided])
        for f, _, d in decided:
            log.info(d.status, extra={"fields": {"message": f.message_id, "thirdparty": d.thirdparty_id,
                                                 "matcher": d.matcher, "reason": d.reason}})
        thirdparties = {f.message_id: d.thirdparty_id for f, _, d in decided}
        notices = {i: n for i, n in self._notices.items() if i in thirdparties}
        if notices:
            record.act(self.db, conn, notices, thirdparties, self.machine_mail, now)
        record.clear_health(conn, [row for row in self._rows if row.id in thirdparties], thirdparties, now)
        folder = self.machine_mail.bounce_folder
        own_folder = {i: folder for i in notices if folder and thirdparties[i] is None}
        self.plan_filing(conn, thirdparties, own_folder)
        self.invitations.record(conn, {f.message_id: d.thirdparty_id for f, _, d in decided})
        return len(decided)

    def _auth_data(self, message_id: int) -> dict[str, Any]:
        """The sender's authentication for the decision's event, when our trusted server was asked."""
        found = self._auth.get(message_id)
        if found is None:
            return {}
        return {"auth": found[0], "auth_reason": found[1]} if found[0] == "fail" else {"auth": found[0]}

    def plan_filing(self, conn: Connection, decisions: dict[int, int | None],
                    folders: dict[int, str] | None = None) -> int:
        """Filing tasks for the decided messages' IMAP locations, per their account's filing config (`folders`:
        a folder of their own for some messages, such as notices about mail we cannot identify)."""
        from maild.filing.folders import folder_for

        if not any(f.action != "none" for f in self.filing.values()):
            return 0
        rows = conn.execute(select(_loc.c.id, _loc.c.message_id, _src.c.name).join(_src, _src.c.id == _loc.c.source_id)
                            .where(_loc.c.message_id.in_(list(decisions)), _src.c.kind == "imap")).all()
        contexts = {tp: {"thirdparty": _thirdparty_context(conn, tp)} for tp in set(decisions.values()) if tp}
        tasks = []
        for location_id, message_id, source_name in rows:
            filing = self.filing.get(source_name)
            if filing is None or filing.action == "none":
                continue
            thirdparty_id = decisions[message_id]
            template = filing.matched_folder if thirdparty_id else filing.triage_folder
            if folders and message_id in folders:
                template = folders[message_id]
            task: dict[str, Any] = {"location_id": location_id, "message_id": message_id, "action": filing.action,
                                    "keywords": list(filing.keywords), "status": "pending", "attempts": 0,
                                    "created_at": utcnow(), "target_folder": "", "from_folder": None,
                                    "last_error": None}
            if template is None:
                if not filing.keywords:
                    continue
                task["action"] = "keywords"
            else:
                try:
                    task["target_folder"] = folder_for(template, contexts.get(thirdparty_id, {}))
                except ValueError as exc:
                    task.update(status="failed", last_error=f"folder template: {exc}")
            tasks.append(task)
        if tasks:
            conn.execute(self.db.insert_ignore(FilingTask.__table__), tasks)
        return len(tasks)


def _notice_verdict(found: chain.Decision) -> Verdict:
    if found.thirdparty_id is None:
        return Verdict("bounce", note=found.reason)
    return Verdict("bounce", (Candidate(found.thirdparty_id, found.contact_id, found.confidence, found.reason),))


def _facts(row: Any) -> MailFacts:
    return MailFacts(
        message_id=row.id, header_message_id=row.header_message_id, in_reply_to=row.in_reply_to,
        references=list(row.references or []), from_addr=row.from_addr, from_name=row.from_name,
        reply_to=[p[1] for p in row.reply_to or []], to=[p[1] for p in row.to_addrs or []],
        cc=[p[1] for p in row.cc_addrs or []], subject=row.subject or "", body=(row.text_body or "")[:BODY_CHARS])


def _verdict_json(verdict: Any) -> dict[str, Any]:
    return {"matcher": verdict.matcher, "note": verdict.note,
            "candidates": [asdict(c) for c in verdict.candidates]}


def _thirdparty_context(conn: Connection, thirdparty_id: int) -> dict[str, Any]:
    tp = ThirdParty.__table__
    row = conn.execute(select(tp).where(tp.c.id == thirdparty_id)).one()
    return {"id": row.id, "name": row.name, "kind": row.kind, "external_id": row.external_id or "",
            "owner": row.owner or "", "language": row.language or "", "tags": list(row.tags or [])}
