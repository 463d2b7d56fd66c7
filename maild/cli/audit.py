"""`maild audit`: the append-only log of changes people made (web, API, CLI), newest first."""

from __future__ import annotations

import json

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import say


@click.command("audit")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many entries.")
@click.option("--actor", default=None, help="Only this user's changes.")
@click.option("--action", default=None, help="Only this action, e.g. outbox.retry or triage.assign.")
@click.option("--target", default=None, help="Only changes of this object, e.g. message:12 or outbox:3.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: a list of entries.")
@pass_app
def audit(app: AppContext, limit: int, actor: str | None, action: str | None, target: str | None,
          as_json: bool) -> None:
    """Who changed what, when, through which door (web, api, cli), with the values before and after."""
    from maild.services import audit as service

    rows = service.entries(app.database(), limit=limit, actor=actor, action=action, target=target)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no audit entries" + (" for that selection" if actor or action or target else ""))
    for r in rows:
        say(f"{r.at:%Y-%m-%d %H:%M:%S}  {r.via}:{r.actor}  {r.action}  {r.target}")
        if r.before is not None or r.after is not None:
            before, after = json.dumps(r.before, ensure_ascii=False), json.dumps(r.after, ensure_ascii=False)
            say(f"    before {before}  after {after}")
