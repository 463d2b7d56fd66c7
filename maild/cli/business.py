"""`maild invoice|meeting|task`: invoices and payments, meetings, tasks from the command line."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import click

from maild.cli.context import AppContext, pass_app
from maild.cli.directory import _friendly, _table
from maild.cli.render import local_time, say

INVOICE_STATUSES = ("open", "paid", "disputed", "paused", "cancelled")
LINE_HELP = ("A line item 'DESCRIPTION|QUANTITY|UNIT PRICE|VAT %[|UNIT]' (repeatable), e.g. "
             "'Maintenance Q4|1|1200.00|19|pcs'; without --amount their total (VAT included) is the amount.")


def _dumps(data: Any) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(f"cannot show {type(value).__name__} as JSON")

    return json.dumps(data, indent=2, ensure_ascii=False, default=default)


def _today(app: AppContext) -> date:
    return datetime.now(ZoneInfo(app.config.rules.timezone)).date()


def _thirdparty_id(app: AppContext, ref: str | None) -> int | None:
    from maild.directory.service import resolve_thirdparty

    return resolve_thirdparty(app.database(), ref).id if ref else None


# --- invoice -----------------------------------------------------------------------------------


@click.group()
def invoice() -> None:
    """Invoices and their payments (the dunning rules read them).

    \b
    maild invoice add FA-1 --thirdparty C-1042 --date 2026-11-03 --due 2026-11-17 --amount 1428.00
    maild invoice pay FA-1 1428.00 --reference BANK-0042
    maild invoice list --overdue
    """


@invoice.command("add")
@click.argument("ref")
@click.option("--thirdparty", "thirdparty_ref", metavar="TP",
              help="Whose invoice: id, external id or exact name (required for a new invoice).")
@click.option("--date", "issued_on", metavar="YYYY-MM-DD", help="Invoice date (required for a new invoice).")
@click.option("--due", "due_on", metavar="YYYY-MM-DD", help="Due date (or --due-days).")
@click.option("--due-days", type=click.IntRange(0, 3650), help="Due this many days after the invoice date.")
@click.option("--amount", help="Total due, VAT included, e.g. 1428.00 or 1.428,00.")
@click.option("--currency", help="ISO code (default EUR).")
@click.option("--contact", "contact_id", type=int, help="The contact (id) it is addressed to.")
@click.option("--line", "lines", multiple=True, metavar="LINE", help=LINE_HELP)
@click.option("--status", type=click.Choice(INVOICE_STATUSES, case_sensitive=False))
@pass_app
@_friendly
def invoice_add(app: AppContext, ref: str, thirdparty_ref: str | None, issued_on: str | None, due_on: str | None,
                due_days: int | None, amount: str | None, currency: str | None, contact_id: int | None,
                lines: tuple[str, ...], status: str | None) -> None:
    """Add invoice REF, or update it (only the options given change). Its number is also recorded as a
    document, so mail quoting it matches its third party."""
    from maild.business import fields, invoices
    from maild.services import invoices as invoice_service
    from maild.services.actor import cli_actor

    db = app.database()
    with db.engine.connect() as conn:
        try:
            existing = invoices.find_invoice(conn, ref)
        except LookupError:
            existing = None
    existing = existing if existing is not None and existing.ref == ref.strip() else None
    tp_id = _thirdparty_id(app, thirdparty_ref) or (existing.thirdparty_id if existing is not None else None)
    if tp_id is None:
        raise click.UsageError("a new invoice needs --thirdparty")
    if due_days is not None:
        if due_on:
            raise click.UsageError("give --due or --due-days, not both")
        base = issued_on or (existing.issued_on if existing is not None else None)
        if base is None:
            raise click.UsageError("--due-days needs --date")
        due_on = (fields.day(base, "invoice date") + timedelta(days=due_days)).isoformat()
    invoice_id, created = invoice_service.upsert(
        db, cli_actor(), ref=ref, thirdparty_id=tp_id, issued_on=issued_on, due_on=due_on, amount=amount,
        currency=currency, contact_id=contact_id, lines=[_line(text) for text in lines] if lines else None,
        status=status)
    data = invoices.describe_invoice(db, f"#{invoice_id}")
    say(f"{'added' if created else 'updated'} invoice #{invoice_id} {data['ref']} of "
        f"#{data['thirdparty_id']} {data['thirdparty_name']}: {data['amount']} {data['currency']}, "
        f"due {data['due_on']}, {data['status']}")


@invoice.command("list")
@click.option("--status", type=click.Choice((*INVOICE_STATUSES, "held"), case_sensitive=False),
              help="Only this status.")
@click.option("--overdue", is_flag=True, help="Only open invoices past their due date with an amount due.")
@click.option("--thirdparty", "thirdparty_ref", metavar="TP", help="Only this third party's.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@_friendly
def invoice_list(app: AppContext, status: str | None, overdue: bool, thirdparty_ref: str | None,
                 as_json: bool) -> None:
    """One line per invoice, by due date: ref, third party, dates, amount due, status, dunning level."""
    from maild.business import invoices

    found = invoices.list_invoices(app.database(), status=status, overdue=overdue,
                                   thirdparty_id=_thirdparty_id(app, thirdparty_ref), today=_today(app))
    if as_json:
        click.echo(_dumps(found))
        return
    if not found:
        click.echo("no invoices" + (" match" if status or overdue or thirdparty_ref else " yet: `maild invoice add`"))
        return
    _table([("REF", "THIRD PARTY", "DATE", "DUE", "AMOUNT", "DUE NOW", "STATUS", "LEVEL")],
           [(i["ref"], f"#{i['thirdparty_id']} {i['thirdparty_name']}", str(i["issued_on"]), str(i["due_on"]),
             f"{i['amount']} {i['currency']}", str(i["amount_due"]), i["status"], str(i["dunning_level"]))
            for i in found])


@invoice.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@_friendly
def invoice_show(app: AppContext, ref: str, as_json: bool) -> None:
    """Everything about invoice REF (its ref, or #ID): amounts, lines, payments, dunning state."""
    from maild.business import invoices

    data = invoices.describe_invoice(app.database(), ref)
    state: dict[str, Any] = {}
    lines = _dunning_state(app, data, state)
    if as_json:
        click.echo(_dumps({**data, "dunning": state}))
        return
    cur = data["currency"]
    say(f"invoice {data['ref']}  (#{data['id']}, {data['status']})")
    say(f"third party: #{data['thirdparty_id']} {data['thirdparty_name']}")
    say(f"date: {data['issued_on']}   due: {data['due_on']}")
    for line in data["lines"]:
        say(f"  {line['description']}: {line['quantity']} x {line['unit_price']} {cur} "
            f"(VAT {line['vat_rate']}%) = {line['total']} {cur}")
    say(f"amount: {data['amount']} {cur}   paid: {data['paid_amount']} {cur}   "
        f"late fees: {data['late_fees']} {cur}   due now: {data['amount_due']} {cur}")
    if data["paid_at"]:
        say(f"paid at: {data['paid_at'].isoformat()}")
    say(f"dunning level: {data['dunning_level']} (repeats {data['dunning_repeats']}, last "
        f"{data['last_dunned_at'].isoformat() if data['last_dunned_at'] else 'never'})")
    for line in lines:
        say(line)
    say(f"payments: {len(data['payments'])}")
    for p in data["payments"]:
        say(f"  {p['paid_on']}  {p['amount']} {cur}  {p['reference']}")


def _dunning_state(app: AppContext, data: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """What holds the invoice (and since when, for whom), else `next step: ...` from the rules (what the sweeps
    would do next, given today's data): lines to print, and the same in `state` (for --json)."""
    from maild.business import holds
    from maild.clock import utcnow
    from maild.rules.loader import load_rules
    from maild.rules.model import RuleErrors
    from maild.rules.next_step import next_step

    config = app.config
    with app.database().engine.connect() as conn:
        held = holds.active(conn, int(data["id"]))
    state.update(hold=held.__dict__ if held is not None else None, next_step=None)
    if held is not None:
        since = local_time(held.since, config.rules.timezone)
        lines = [f"held since {since}: {held.reason}" + (f" (until {held.until.isoformat()})" if held.until else "")]
        lines.append(f"  who decides: {held.owner or 'nobody named (set the owner or dunning.hold_owner)'}"
                     + (f"; task #{held.task_id}" if held.task_id else "")
                     + (f"; mail #{held.message_id} (maild explain {held.message_id})" if held.message_id else ""))
        if held.escalated_at:
            lines.append(f"  escalated {local_time(held.escalated_at, config.rules.timezone)}")
        lines.append(f"  resolve: maild invoice resume|promise|dispute {data['ref']}, or record the payment")
        return lines
    try:
        ruleset = load_rules(config.rules_dir, timezone=config.rules.timezone,
                             webhook_secrets=config.rules.webhook_secrets)
    except RuleErrors:
        return ["next step: unknown, the rules have errors (maild rules check)"]
    step = next_step(config, app.database(), ruleset, int(data["id"]), utcnow())
    if step is None:
        return ["next step: none (no rule would act on this invoice as it stands)"]
    state["next_step"] = {"rule": step.rule, "at": step.at, "summary": step.summary}
    local = step.at.astimezone(ZoneInfo(ruleset.timezone))
    return [f"next step: {step.rule} from {local.isoformat(timespec='minutes')}: {step.summary}"]


@invoice.command("resume")
@click.argument("ref")
@pass_app
@_friendly
def invoice_resume(app: AppContext, ref: str) -> None:
    """End the hold on invoice REF: dunning goes on (the level its age calls for, at the next sweep)."""
    from maild.clock import utcnow
    from maild.services import invoices
    from maild.services.actor import cli_actor

    ended = invoices.resume(app.database(), cli_actor(), ref, utcnow())
    say(f"invoice {ref.strip()}: " + ("dunning goes on" if ended else "was not held; nothing changed"))


@invoice.command("promise")
@click.argument("ref")
@click.option("--until", "until", required=True, metavar="YYYY-MM-DD", help="The day the customer promised to pay by.")
@pass_app
@_friendly
def invoice_promise(app: AppContext, ref: str, until: str) -> None:
    """The customer promised to pay invoice REF by --until: dunning waits until that day has passed, then goes on
    by itself (a payment before then ends it)."""
    from maild.clock import utcnow
    from maild.services import invoices
    from maild.services.actor import cli_actor

    try:
        day = date.fromisoformat(until.strip())
    except ValueError:
        raise click.BadParameter(f"expected a date such as 2026-12-15; got {until!r}", param_hint="--until") from None
    invoices.promise(app.database(), cli_actor(), app.config, ref, day, utcnow())
    say(f"invoice {ref.strip()}: waits for the payment promised by {day.isoformat()}; dunning goes on after that")


@invoice.command("dispute")
@click.argument("ref")
@click.option("--reason", required=True, help="What the customer disputes (on the timeline).")
@pass_app
@_friendly
def invoice_dispute(app: AppContext, ref: str, reason: str) -> None:
    """Invoice REF is disputed: dunning stops (status disputed) and the reason goes on the timeline."""
    from maild.clock import utcnow
    from maild.services import invoices
    from maild.services.actor import cli_actor

    invoices.dispute(app.database(), cli_actor(), ref, reason, utcnow())
    say(f"invoice {ref.strip()}: disputed; dunning stopped")


@invoice.command("pay")
@click.argument("ref")
@click.argument("amount")
@click.option("--date", "paid_on", metavar="YYYY-MM-DD", help="When it was paid (default: today).")
@click.option("--reference", help="Bank reference; the same reference is never counted twice for one invoice "
                                  "(default: AMOUNT@DATE).")
@pass_app
@_friendly
def invoice_pay(app: AppContext, ref: str, amount: str, paid_on: str | None, reference: str | None) -> None:
    """Record a payment of AMOUNT on invoice REF; fully paid, it becomes `paid`."""
    from maild.services import invoices
    from maild.services.actor import cli_actor

    result = invoices.record_payment(app.database(), cli_actor(), ref, amount=amount,
                                     paid_on=paid_on or _today(app), reference=reference or "")
    if not result.created:
        say(f"payment already recorded for invoice {result.ref}; nothing changed "
            f"(paid {result.paid_amount}, due {result.amount_due}, {result.status})")
        return
    say(f"recorded payment #{result.payment_id} on invoice {result.ref}: paid {result.paid_amount}, "
        f"due {result.amount_due}, {result.status}" + (" (now fully paid)" if result.became_paid else ""))


@invoice.command("status")
@click.argument("ref")
@click.argument("status", type=click.Choice(INVOICE_STATUSES, case_sensitive=False))
@pass_app
@_friendly
def invoice_status(app: AppContext, ref: str, status: str) -> None:
    """Set invoice REF to STATUS: disputed or paused stop dunning, cancelled takes it off the books."""
    from maild.services import invoices
    from maild.services.actor import cli_actor

    changed = invoices.set_status(app.database(), cli_actor(), ref, status)
    say(f"invoice {ref.strip()}: {status.lower()}" + ("" if changed else " (unchanged)"))


def _line(text: str) -> dict[str, str]:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) not in (4, 5):
        raise click.BadParameter(f"{text!r} is not DESCRIPTION|QUANTITY|UNIT PRICE|VAT %[|UNIT]", param_hint="--line")
    return {"description": parts[0], "quantity": parts[1], "unit_price": parts[2], "vat_rate": parts[3],
            "unit": parts[4] if len(parts) == 5 else ""}


# --- meeting -----------------------------------------------------------------------------------


@click.group()
def meeting() -> None:
    """Meetings with attendees: entered here, imported, or read from invitations in ingested mail.

    Times are ISO 8601 with an offset (2026-11-19T14:00+01:00) or local times in rules.timezone.
    """


@meeting.command("add")
@click.argument("subject")
@click.option("--start", required=True, metavar="TIME", help="When it starts.")
@click.option("--end", metavar="TIME", help="When it ends (or --minutes).")
@click.option("--minutes", type=click.IntRange(1, 7 * 24 * 60), help="How long it lasts (default 60).")
@click.option("--thirdparty", "thirdparty_ref", metavar="TP",
              help="Whose meeting (default: the third party of the external attendees, when they share one).")
@click.option("--attendee", "attendees", multiple=True, metavar="ADDRESS",
              help="'Name <address>' or an address (repeatable); ours are marked internal.")
@click.option("--location", default="")
@click.option("--owner", help="Who on our side is responsible.")
@click.option("--next-step", "next_steps", multiple=True, metavar="TEXT", help="An agreed next step (repeatable).")
@pass_app
@_friendly
def meeting_add(app: AppContext, subject: str, start: str, end: str | None, minutes: int | None,
                thirdparty_ref: str | None, attendees: tuple[str, ...], location: str, owner: str | None,
                next_steps: tuple[str, ...]) -> None:
    """Add a meeting about SUBJECT."""
    from maild.business import fields, meetings
    from maild.services import meetings as meeting_service
    from maild.services.actor import cli_actor

    zone = app.config.rules.timezone
    start_at = fields.moment(start, "start", zone)
    if end and minutes:
        raise click.UsageError("give --end or --minutes, not both")
    end_at = fields.moment(end, "end", zone) if end else start_at + timedelta(minutes=minutes or 60)
    meeting_id = meeting_service.add_meeting(
        app.database(), cli_actor(), meetings.OwnMail.from_config(app.config), subject=subject, start_at=start_at,
        end_at=end_at, thirdparty_id=_thirdparty_id(app, thirdparty_ref), location=location, attendees=attendees,
        owner=owner, next_steps=next_steps)
    data = meetings.describe_meeting(app.database(), str(meeting_id))
    who = f" with #{data['thirdparty_id']} {data['thirdparty_name']}" if data["thirdparty_id"] else ""
    say(f"added meeting #{meeting_id} {subject.strip()!r} {local_time(start_at, zone)}-"
        f"{local_time(end_at, zone)[11:]} ({zone}){who}")


@meeting.command("list")
@click.option("--thirdparty", "thirdparty_ref", metavar="TP", help="Only this third party's.")
@click.option("--upcoming", is_flag=True, help="Only those that have not ended yet.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@_friendly
def meeting_list(app: AppContext, thirdparty_ref: str | None, upcoming: bool, as_json: bool) -> None:
    """One line per meeting, by start: id, start and end (in rules.timezone), status, third party, subject."""
    from maild.business import meetings

    found = meetings.list_meetings(app.database(), thirdparty_id=_thirdparty_id(app, thirdparty_ref),
                                   upcoming=upcoming)
    if as_json:
        click.echo(_dumps(found))
        return
    if not found:
        click.echo("no meetings" + (" match" if thirdparty_ref or upcoming else " yet"))
        return
    zone = app.config.rules.timezone
    _table([("ID", "START", "END", "STATUS", "THIRD PARTY", "SUBJECT")],
           [(f"#{m['id']}", local_time(m["start_at"], zone), local_time(m["end_at"], zone), m["status"],
             f"#{m['thirdparty_id']} {m['thirdparty_name']}" if m["thirdparty_id"] else "-", m["subject"])
            for m in found])


@meeting.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@_friendly
def meeting_show(app: AppContext, ref: str, as_json: bool) -> None:
    """Everything about one meeting. REF: its id or its (iCalendar) uid."""
    from maild.business import meetings

    data = meetings.describe_meeting(app.database(), ref)
    if as_json:
        click.echo(_dumps(data))
        return
    zone = app.config.rules.timezone
    say(f"meeting #{data['id']} {data['subject']!r}  ({data['status']})")
    say(f"when: {local_time(data['start_at'], zone)} - {local_time(data['end_at'], zone)} ({zone})")
    for label, value in (("where", data["location"]), ("third party", data["thirdparty_id"] and
                                                        f"#{data['thirdparty_id']} {data['thirdparty_name']}"),
                         ("organizer", data["organizer"]), ("owner", data["owner"]), ("uid", data["uid"]),
                         ("from message", data["message_id"])):
        if value:
            say(f"{label}: {value}")
    say(f"attendees: {len(data['attendees'])}")
    for a in data["attendees"]:
        tags = ["internal" if a.get("internal") else "external"]
        if a.get("contact_id"):
            tags.append(f"contact #{a['contact_id']}")
        if a.get("thirdparty_id"):
            tags.append(f"third party #{a['thirdparty_id']}")
        name = f"{a['name']} <{a['address']}>" if a.get("name") else a["address"]
        say(f"  {name}  ({', '.join(tags)})")
    for step in data["next_steps"]:
        say(f"next step: {step}")


@meeting.command("cancel")
@click.argument("ref")
@pass_app
@_friendly
def meeting_cancel(app: AppContext, ref: str) -> None:
    """Cancel a meeting (REF: id or uid); rules waiting for its end will not fire."""
    from maild.services import meetings
    from maild.services.actor import cli_actor

    changed = meetings.cancel_meeting(app.database(), cli_actor(), ref)
    say(f"meeting {ref.strip()}: cancelled" + ("" if changed else " (it already was)"))


# --- task --------------------------------------------------------------------------------------


@click.group()
def task() -> None:
    """Tasks for people, mostly created by rules (e.g. the last dunning level)."""


@task.command("list")
@click.option("--owner", help="Only this owner's tasks.")
@click.option("--open", "open_only", is_flag=True, help="Only tasks not done yet.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@_friendly
def task_list(app: AppContext, owner: str | None, open_only: bool, as_json: bool) -> None:
    """One line per task: id, status, owner, due, third party, title, and the rule that made it."""
    from maild.business import tasks

    found = tasks.list_tasks(app.database(), owner=owner, open_only=open_only)
    if as_json:
        click.echo(_dumps(found))
        return
    if not found:
        click.echo("no tasks" + (" match" if owner or open_only else ""))
        return
    _table([("ID", "STATUS", "OWNER", "DUE", "THIRD PARTY", "TITLE", "RULE")],
           [(f"#{t['id']}", t["status"], t["owner"] or "-", (t["due_at"] or "-")[:16].replace("T", " "),
             f"#{t['thirdparty_id']}" if t["thirdparty_id"] else "-", t["title"], t["rule"] or "-") for t in found])


@task.command("done")
@click.argument("task_id", metavar="ID", type=int)
@pass_app
@_friendly
def task_done(app: AppContext, task_id: int) -> None:
    """Mark task ID as done."""
    from maild.services import meetings
    from maild.services.actor import cli_actor

    changed = meetings.complete_task(app.database(), cli_actor(), task_id)
    say(f"task #{task_id}: done" + ("" if changed else " (it already was)"))


