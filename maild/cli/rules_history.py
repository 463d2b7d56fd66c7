"""`maild rules log` (what each rule did, when, why, with what outcome) and `maild rules simulate` (what the rules
would do over recent history, without doing anything). Added to the `rules` group by maild/cli/rules.py."""

from __future__ import annotations

import json
from typing import Any

import click

from maild.cli.context import AppContext, parse_since, pass_app
from maild.cli.render import say


@click.command("log")
@click.option("--rule", "rule_name", metavar="NAME", help="Only this rule.")
@click.option("--subject", metavar="SUBJECT", help="Only this subject, e.g. invoice:12 or event:345.")
@click.option("--since", metavar="AGE", help="Only actions since then: 7d, 12h, or a date (2026-11-01).")
@click.option("--status", type=click.Choice(["running", "done", "skipped", "failed"]),
              help="Only actions in this state.")
@click.option("--limit", type=int, default=200, show_default=True, help="At most this many (the newest).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: a list of actions.")
@pass_app
def log_command(app: AppContext, rule_name: str | None, subject: str | None, since: str | None, status: str | None,
                limit: int, as_json: bool) -> None:
    """What the rules did: one line per action (time, status, rule, subject, action, what) and why."""
    from sqlalchemy import select

    from maild.clock import as_utc, utcnow
    from maild.store.models import RuleLedger

    table = RuleLedger.__table__
    query = select(table).order_by(table.c.id.desc()).limit(limit)
    if rule_name:
        query = query.where(table.c.rule == rule_name)
    if subject:
        query = query.where(table.c.subject == subject)
    if status:
        query = query.where(table.c.status == status)
    if since:
        query = query.where(table.c.created_at >= parse_since(since, utcnow()))
    with app.database().engine.connect() as conn:
        rows = list(conn.execute(query))[::-1]
    items = [_entry(row, as_utc) for row in rows]
    if as_json:
        click.echo(json.dumps(items, indent=2, ensure_ascii=False, default=str))
        return
    if not items:
        click.echo("no rule actions recorded" + (" for that selection" if rule_name or subject or since or status
                                                  else ""))
        return
    for item in items:
        say(f"{item['at'][:19]}  {item['status']:<7} {item['rule']}  {item['subject']}  "
            f"{item['action']}: {item['summary']}")
        say(f"    why: {item['reason']}")
        if item["skipped"]:
            say(f"    nothing to do: {item['skipped']}")
        if item["error"]:
            say(f"    error: {item['error']}")


def _entry(row: Any, as_utc: Any) -> dict[str, Any]:
    detail = row.detail or {}
    when = as_utc(row.created_at)
    return {"id": row.id, "at": when.isoformat() if when else "", "rule": row.rule, "file": row.file,
            "subject": row.subject, "step": row.step, "action": row.action, "status": row.status, "key": row.key,
            "summary": detail.get("summary") or row.action, "reason": row.reason, "skipped": detail.get("skipped"),
            "error": detail.get("error"),
            "attempts": detail.get("attempts"), "thirdparty_id": row.thirdparty_id,
            "finished_at": (as_utc(row.finished_at) or row.finished_at) if row.finished_at else None}


@click.command("simulate")
@click.option("--since", default=None, metavar="AGE",
              help="Replay the timeline events since then (7d, 12h, or a date; default 30d); the sweeps run at now.")
@click.option("--at", "at", metavar="TIME", help="Instead: the sweeps at that moment and the schedule rules of "
              "that day, given today's data (a date means its 09:00 in the rules' time zone).")
@click.option("--days", type=click.IntRange(-3650, 3650), metavar="N",
              help="Instead: as --at, N days from now.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: a list of planned actions.")
@pass_app
def simulate_command(app: AppContext, since: str | None, at: str | None, days: int | None, as_json: bool) -> None:
    """What the rules would do, without doing anything: no mail, no change, no ledger.

    \b
    Without --at/--days: the events of the last 30 days (or --since) replayed and the sweeps at now.
    With --at TIME or --days N: let time pass: which invoice reminders, meeting follow-ups and schedule
    rules would act on that day if nothing changed until then (no payment, no reply).

    Actions already in the ledger show as "already done"; a move with nothing to move (mail in no IMAP
    folder, already there, or `move: true` where filing.action is none) as "skipped" with the reason, as the
    real run records it.
    """
    from datetime import timedelta

    from maild.cli.rules_why import load_ruleset, parse_at
    from maild.clock import utcnow
    from maild.rules.engine import RulesEngine

    if sum(option is not None for option in (since, at, days)) > 1:
        raise click.UsageError("give one of --since, --at and --days")
    config = app.config
    ruleset = load_ruleset(app)
    now = utcnow()
    moment = now + timedelta(days=days) if days is not None else parse_at(at, ruleset.timezone, now)
    engine = RulesEngine(config, app.database(), ruleset, clock=lambda: moment, simulate=True)
    if at is None and days is None:
        planned = engine.simulate(parse_since(since or "30d", now))
        what = f"events since {since or '30d'}, sweeps at now"
    else:
        planned = engine.simulate_day()
        what = f"sweeps at {moment.isoformat(timespec='minutes')} and that day's schedules"
    if as_json:
        click.echo(json.dumps([p._asdict() for p in planned], indent=2, ensure_ascii=False, default=str))
        return
    if not planned:
        say(f"no rule would act ({what}; {len(ruleset.rules)} rule(s))")
        return
    for item in planned:
        say(f"{item.status:<12} {item.rule}  {item.subject}  {item.action}: {item.summary}")
        say(f"    why: {item.reason}")
    todo = sum(1 for p in planned if p.status == "planned")
    say(f"{todo} action(s) would run; {len(planned) - todo} already done, skipped or blocked ({what})")


COMMANDS = (log_command, simulate_command)
