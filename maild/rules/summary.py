"""One-line descriptions of triggers, for `maild rules check` and the ledger's `trigger` column."""

from __future__ import annotations

from datetime import timedelta

from maild.rules.durations import format_duration
from maild.rules.model import EventTrigger, ScheduleTrigger, SweepTrigger, Trigger


def trigger_summary(trigger: Trigger) -> str:
    """`event mail.matched`, `cron "0 8 * * mon-fri" Europe/Berlin`, `every 15m`,
    `sweep invoice.due_on +7d until +21d`."""
    if isinstance(trigger, EventTrigger):
        return "event " + ", ".join(trigger.types)
    if isinstance(trigger, ScheduleTrigger):
        if trigger.cron is not None:
            return f'cron "{trigger.cron}" {trigger.timezone}'
        return f"every {format_duration(trigger.every or timedelta(0))}"
    assert isinstance(trigger, SweepTrigger)
    text = f"sweep {trigger.record}.{trigger.date} {_signed(trigger.offset)}"
    return text + (f" until {_signed(trigger.until)}" if trigger.until is not None else "")


def _signed(value: timedelta) -> str:
    text = format_duration(value)
    return text if text.startswith("-") or text == "0d" else "+" + text
