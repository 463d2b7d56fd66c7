"""An invoice's next dunning step: which sweep rule would act on it next, and from when, given today's data.

It asks the engine's explanation (`RulesEngine.explain`) at now and at each moment a sweep window of the invoice
opens, in order; the first moment at which a rule would fire is the next step. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from maild.clock import as_utc
from maild.config import Config
from maild.rules.engine import RulesEngine
from maild.rules.model import RuleSet, SweepTrigger
from maild.store.db import Database
from maild.store.models import Invoice

HORIZON = timedelta(days=400)  # windows opening later than this are not looked at
_inv = Invoice.__table__


@dataclass(frozen=True)
class NextStep:
    rule: str
    at: datetime  # now when it is due already (the next sweep acts), else when its window opens
    summary: str  # what it would do


def next_step(config: Config, db: Database, rules: RuleSet, invoice_id: int, now: datetime) -> NextStep | None:
    sweeps = [r for r in rules.rules if r.enabled and isinstance(r.trigger, SweepTrigger)
              and r.trigger.record == "invoice"]
    if not sweeps:
        return None
    with db.engine.connect() as conn:
        row = conn.execute(select(_inv).where(_inv.c.id == invoice_id)).first()
    if row is None:
        return None
    engine = RulesEngine(config, db, rules, clock=lambda: now, simulate=True)
    zone = ZoneInfo(rules.timezone)
    moments = {now}
    for rule in sweeps:
        trigger = rule.trigger
        assert isinstance(trigger, SweepTrigger)
        value = getattr(row, trigger.date)
        if value is None:
            continue
        if isinstance(value, datetime):
            opens = (as_utc(value) or value) + trigger.offset
        else:
            opens = datetime.combine(value if isinstance(value, date) else date.fromisoformat(str(value)),
                                     time(0), zone) + trigger.offset
        if now < opens <= now + HORIZON:
            moments.add(opens)
    for moment in sorted(moments):
        engine.clock = lambda moment=moment: moment  # type: ignore[misc]
        for rule in sweeps:
            explanation = engine.explain(rule.name, f"invoice:{invoice_id}")
            if explanation.fires:
                what = "; ".join(a.summary for a in explanation.actions if a.status == "planned")
                return NextStep(rule.name, moment, what)
    return None
