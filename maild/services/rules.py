"""The rules for people: the loaded rules, what they did (the ledger, with the why), and a simulation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from maild.clock import as_utc, utcnow
from maild.config import Config
from maild.rules.loader import load_rules
from maild.rules.model import RuleErrors, SweepTrigger
from maild.services import paging
from maild.store.db import Database
from maild.store.models import RuleLedger

_l = RuleLedger.__table__


def loaded(config: Config) -> dict[str, Any]:
    """The rules as read from rules.dir now: each with its trigger and actions; or the errors that refuse them."""
    try:
        ruleset = load_rules(config.rules_dir, timezone=config.rules.timezone,
                             webhook_secrets=config.rules.webhook_secrets)
    except RuleErrors as exc:
        return {"rules": [], "errors": str(exc).splitlines()}
    out = []
    for rule in ruleset.rules:
        trigger = rule.trigger
        if isinstance(trigger, SweepTrigger):
            when = f"sweep {trigger.record}.{trigger.date} + {trigger.offset}"
        elif trigger.kind == "event":
            when = "event " + ", ".join(getattr(trigger, "types", ()))
        else:
            when = f"schedule {getattr(trigger, 'cron', None) or getattr(trigger, 'every', '')}"
        out.append({"name": rule.name, "file": rule.file, "line": rule.position.line, "trigger": when,
                    "description": rule.description, "enabled": rule.enabled,
                    "actions": [a.name for a in rule.actions], "conditions": len(rule.conditions)})
    return {"rules": out, "errors": []}


def ledger(db: Database, *, rule: str | None = None, cursor: str | None = None,
           limit: int = 50) -> paging.Page[dict[str, Any]]:
    """What the rules did, newest first, each with its reason."""
    stmt = select(_l).where(_l.c.rule == rule) if rule else select(_l)
    return paging.by_id(db, stmt, _l.c.id, cursor, limit, _ledger_row)


def _ledger_row(r: Any) -> dict[str, Any]:
    return {"id": r.id, "at": (as_utc(r.created_at) or r.created_at).isoformat(), "rule": r.rule,
            "subject": r.subject, "action": r.action, "status": r.status, "reason": r.reason,
            "summary": (r.detail or {}).get("summary") or r.action, "error": (r.detail or {}).get("error"),
            "thirdparty_id": r.thirdparty_id}


def simulate(config: Config, db: Database, since: datetime) -> list[dict[str, Any]]:
    """What the rules would do over the events since `since` (and the sweeps at now): nothing is written."""
    from maild.rules.engine import RulesEngine

    ruleset = load_rules(config.rules_dir, timezone=config.rules.timezone,
                         webhook_secrets=config.rules.webhook_secrets)
    now = utcnow()
    engine = RulesEngine(config, db, ruleset, clock=lambda: now, simulate=True)
    return [p._asdict() for p in engine.simulate(since)]
