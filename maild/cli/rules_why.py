"""`maild rules why RULE SUBJECT`: would a rule fire for a subject, and if not, what stopped it (with the values
seen). Added to the `rules` group by maild/cli/rules.py."""

from __future__ import annotations

import json
import sys
from datetime import datetime, time
from zoneinfo import ZoneInfo

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say

AT_HELP = ("The moment to evaluate at: an ISO date (its 09:00 in the rules' time zone) or date and time "
           "(2026-12-01T10:00; without an offset: in the rules' time zone). Default: now.")


def parse_at(value: str | None, zone: str, now: datetime) -> datetime:
    """`--at`: now when absent; a date means 09:00 of that day in the rules' time zone."""
    if not value:
        return now
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date (2026-12-01) or a date and time (2026-12-01T10:00); got "
                                 f"{value!r}", param_hint="--at") from None
    if len(value) <= 10:
        moment = datetime.combine(moment.date(), time(9))
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def load_ruleset(app: AppContext):  # type: ignore[no-untyped-def]
    """The rules of rules.dir, or exit 1 with every error (as `rules check` prints them)."""
    from maild.rules.loader import load_rules
    from maild.rules.model import RuleErrors

    config = app.config
    try:
        return load_rules(config.rules_dir, timezone=config.rules.timezone,
                          webhook_secrets=config.rules.webhook_secrets)
    except RuleErrors as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@click.command("why")
@click.argument("rule_name", metavar="RULE")
@click.argument("subject", required=False, metavar="SUBJECT")
@click.option("--at", "at", metavar="TIME", help=AT_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@pass_app
def why_command(app: AppContext, rule_name: str, subject: str | None, at: str | None, as_json: bool) -> None:
    """Would RULE fire for SUBJECT, and if not, why not: the trigger (an event's type, a sweep's window with the
    date it counts from), every condition with the values it read, and the actions (or that they are done).

    \b
    SUBJECT: invoice:FA2611-0105 (number or id), meeting:7 (id or calendar UID), event:345 (see
    `maild timeline --json`); none for a schedule rule. Nothing is written. Exit 0 when the rule would
    fire, 3 when not, 1 on errors.
    """
    from maild.clock import utcnow
    from maild.rules.engine import RulesEngine

    ruleset = load_ruleset(app)
    moment = parse_at(at, ruleset.timezone, utcnow())
    rule = ruleset.by_name(rule_name)
    if rule is not None and rule.trigger.kind != "schedule" and not subject:
        raise click.UsageError(f"{rule_name} needs a SUBJECT, e.g. invoice:REF, meeting:ID or event:ID")
    engine = RulesEngine(app.config, app.database(), ruleset, clock=lambda: moment, simulate=True)
    try:
        explanation = engine.explain(rule_name, subject or "schedule")
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from None
    if as_json:
        click.echo(json.dumps(explanation.as_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        say(f"rule {explanation.rule} ({explanation.file}): {explanation.trigger}")
        say(f"subject {explanation.subject}" + (f": {explanation.what}" if explanation.what else "")
            + f", at {explanation.at.isoformat(timespec='minutes')}")
        for line in explanation.gate:
            say(f"  trigger: {line}")
        if explanation.conditions:
            say("  conditions:")
        for check in explanation.conditions:
            state = "holds" if check.held else ("ERROR" if check.held is None else "FAILS")
            say(f"    {state:<6} {check.source}")
            for source, value in check.seen:
                say(f"             {source} = {value}")
            if check.error:
                say(f"             {check.error}")
        for note in explanation.notes:
            say(f"  note: {note}")
        for action in explanation.actions:
            say(f"  action {action.action}: {action.status}: {action.summary}")
        say(explanation.verdict())
    sys.exit(0 if explanation.fires else 3)

