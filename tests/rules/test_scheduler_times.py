"""Which occurrence a schedule run stands for: the latest scheduled time at or before now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from maild.rules.model import ScheduleTrigger
from maild.rules.scheduler import last_fire_time, schedule_trigger


def test_cron_occurrence_in_the_rules_time_zone() -> None:
    trigger = schedule_trigger(ScheduleTrigger(cron="0 8 * * mon-fri", every=None, timezone="Europe/Berlin"))
    # Friday 2026-11-27 09:30 in Berlin (UTC+1) -> that day's 08:00 Berlin = 07:00 UTC
    now = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    assert last_fire_time(trigger, now, timedelta(hours=2)) == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    # Saturday noon: Friday's run is older than the lookback -> nothing to stand for
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    assert last_fire_time(trigger, saturday, timedelta(hours=2)) is None
    assert last_fire_time(trigger, saturday, timedelta(days=2)) == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


def test_interval_occurrences_are_the_same_for_every_daemon() -> None:
    trigger = schedule_trigger(ScheduleTrigger(cron=None, every=timedelta(minutes=15), timezone="UTC"))
    now = datetime(2026, 11, 27, 10, 7, 31, tzinfo=UTC)
    fired = last_fire_time(trigger, now, timedelta(hours=1))
    assert fired == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    # computed again later by another daemon, still the same occurrence until the next one is due
    assert last_fire_time(schedule_trigger(ScheduleTrigger(cron=None, every=timedelta(minutes=15), timezone="UTC")),
                          now + timedelta(minutes=7), timedelta(hours=1)) == fired
