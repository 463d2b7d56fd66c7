"""`maild rules log` (what each rule did, when, why, with what outcome) and `maild rules simulate` (what the rules
would do over recent history, without doing anything). Added to the `rules` group by maild/cli/rules.py."""

from __future__ import annotations

import json
import sys
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
@click.option("--since", default="30d", show_default=True, metavar="AGE",
              help="Replay the timeline events since then (7d, 12h, or a date); the sweeps run at now.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: a list of planned actions.")
@pass_app
def simulate_command(app: AppContext, since: str, as_json: bool) -> None:
    """What the rules would do over recent history, without doing anything: no mail, no change, no ledger.

    Actions already in the ledger show as "already done"; a move with nothing to move (mail in no IMAP
    folder, already there, or `move: true` where filing.action is none) as "skipped" with the reason, as the
    real run records it.
    """
    from maild.clock import utcnow
    from maild.rules.engine import RulesEngine
    from maild.rules.loader import load_rules
    from maild.rules.model import RuleErrors

    config = app.config
    try:
        ruleset = load_rules(config.rules_dir, timezone=config.rules.timezone,
                             webhook_secrets=config.rules.webhook_secrets)
    except RuleErrors as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    now = utcnow()
    engine = RulesEngine(config, app.database(), ruleset, clock=lambda: now, simulate=True)
    planned = engine.simulate(parse_since(since, now))
    if as_json:
        click.echo(json.dumps([p._asdict() for p in planned], indent=2, ensure_ascii=False, default=str))
        return
    if not planned:
        say(f"no rule would act (events since {since}, sweeps at now; {len(ruleset.rules)} rule(s))")
        return
    for item in planned:
        say(f"{item.status:<12} {item.rule}  {item.subject}  {item.action}: {item.summary}")
        say(f"    why: {item.reason}")
    todo = sum(1 for p in planned if p.status == "planned")
    say(f"{todo} action(s) would run; {len(planned) - todo} already done, skipped or blocked")


COMMANDS = (log_command, simulate_command)
