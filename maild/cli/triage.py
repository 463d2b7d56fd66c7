"""`maild triage list|assign` and `maild explain`: the queue of undecided mail, and why a mail went where."""

from __future__ import annotations

import json

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.render import printable, say


@click.group()
def triage() -> None:
    """Mail no matcher could tie to exactly one third party."""


@triage.command("list")
@click.option("--limit", type=int, default=200, show_default=True)
@pass_app
def list_(app: AppContext, limit: int) -> None:
    """One line per waiting message: id, date, sender, subject, and why it waits."""
    from maild.matchers import triage as t

    rows = t.queue(app.database(), limit)
    if not rows:
        click.echo("triage is empty")
    for row in rows:
        sender, subject = printable(row.from_addr or "-"), printable(row.subject or "")
        say(f"{row.id:>6}  {str(row.date or '')[:16]:16}  {sender:30}  {subject[:50]:50}  {row.status}: {row.reason}")


@triage.command()
@click.argument("message_id", type=int)
@click.argument("thirdparty")
@click.option("--learn", is_flag=True, help="Make the sender a contact of THIRDPARTY, so the next mail matches.")
@pass_app
def assign(app: AppContext, message_id: int, thirdparty: str, learn: bool) -> None:
    """Tie MESSAGE to THIRDPARTY (id, external id or name); it is then filed like any other."""
    from maild.directory.service import resolve_thirdparty
    from maild.services import triage as service
    from maild.services.actor import cli_actor

    db = app.database()
    try:
        target = resolve_thirdparty(db, thirdparty)
        assert target.id is not None
        [done] = service.assign(db, app.config, cli_actor(), [message_id], target.id, learn)  # audited
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from None
    learned = f"; sender learned as contact {done.learned_contact_id}" if done.learned_contact_id else ""
    say(f"message {message_id} assigned to {target.name}{learned}; {done.refiled} filing task(s) planned")


@click.command()
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def explain(app: AppContext, message_id: int, as_json: bool) -> None:
    """Why MESSAGE was matched (or not): the sender's authentication, the decision, every matcher's verdict, the
    meetings its invitations made or why they were refused, and its filing."""
    from maild.matchers import triage as t

    try:
        data = t.explain(app.database(), message_id)
    except LookupError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    m = data["message"]
    say(f"message {m['id']} {m['message_id'] or ''}")
    say(f"  from {m['from']}  subject {m['subject']!r}")
    auth = data["authentication"]
    if auth["status"] == "fail":
        say(f"UNAUTHENTICATED: {auth['reason']}")
        click.echo("  filed as decided, but no rule acts on it beyond filing, "
                   "it counts as no reply, and its invitations change no meeting")
    elif auth["status"] is not None:
        say(f"authentication: {auth['status']} ({auth['reason']})")
    machine = data["machine"]
    if machine["kind"] is None:
        say("kind: none (stored before classification: `maild classify --backfill`; or machine_mail.classify is off)")
    else:
        back = f", back on {machine['return_date']}" if machine.get("return_date") else ""
        late = " (classified after it was stored: what a bounce sets off at ingest did not follow)" \
            if machine.get("backfilled") else ""
        say(f"kind: {machine['kind']}{back}{late}")
        for reason in machine.get("reasons") or []:
            say(f"  {reason}")
        if machine["kind"] not in ("human", "unknown"):
            click.echo("  machine mail: no reply for replied_since(), and no rule sends mail in answer to it")
    for b in data["bounces"]:
        row = f" (our mail #{b['outbox_id']})" if b["outbox_id"] else ""
        counted = "" if b["counted"] else " NOT COUNTED: we never sent to this address"
        say(f"recipient {b['address']}{row}: {b['action']} {b['status'] or '-'} {b['reason']} "
            f"({'hard' if b['hard'] else 'soft'}){counted}: {b['diagnostic']}")
    d = data["decision"]
    if d is None:
        click.echo("not decided yet (pending matching)")
    else:
        who = f"{d['thirdparty']} (#{d['thirdparty_id']})" if d["thirdparty_id"] else "-"
        say(f"decision: {d['status']} -> {who} by {d['matcher'] or '-'} "
            f"({d['confidence']:.2f}): {d['reason']}")
    for verdict in data["verdicts"]:
        if verdict["candidates"]:
            for c in verdict["candidates"]:
                say(f"  {verdict['matcher']:12} {c['confidence']:.2f}  {c['reason']}")
        else:
            say(f"  {verdict['matcher']:12}   -   {verdict['note']}")
    for m in data["meetings"]:
        if m["event"] == "meeting.refused":
            for item in m.get("refused") or []:
                say(f"invitation {item['uid']} refused: {item['reason']}")
            if m.get("count", 0) > len(m.get("refused") or []):
                click.echo(f"  ... {m['count'] - len(m['refused'])} more refused")
        else:
            say(f"{m['event']}: #{m.get('meeting_id')} {m.get('subject')!r}")
    for f in data["filing"]:
        error = f" ({f['last_error']})" if f["last_error"] else ""
        on_server = f" (on the server: {f['filed_folder']})" if f["filed_folder"] not in (None, f["folder"]) else ""
        say(f"filing: {f['action']} -> {f['folder'] or '-'}{on_server}: {f['status']}, "
            f"{f['attempts']} attempt(s){error}")

