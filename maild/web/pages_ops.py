"""Operations pages: outbox, rules, invoices, quarantine, status, the audit log and users (admins)."""

from __future__ import annotations

from datetime import date

from starlette.responses import RedirectResponse, Response

from maild.clock import utcnow
from maild.services import audit, invoices, outbox, overview, rules, users
from maild.web.core import Ctx


def outbox_page(ctx: Ctx) -> Response:
    status = ctx.param("status") or None
    result = outbox.listing(ctx.db, status=status, cursor=ctx.param("cursor") or None, limit=ctx.config.web.page_size)
    return ctx.render("outbox.html", page=result, status=status, statuses=outbox.STATUSES)


def outbox_story(ctx: Ctx) -> Response:
    return ctx.render("outbox_story.html", row=outbox.story(ctx.db, ctx.path_int("id")))


def _outbox_change(ctx: Ctx, verb: str) -> Response:
    outbox_id = ctx.path_int("id")
    change = {"retry": outbox.retry, "cancel": outbox.cancel, "mark_sent": outbox.mark_sent}[verb]
    if not change(ctx.db, ctx.actor, outbox_id):
        done = {"retry": "retried", "cancel": "cancelled", "mark_sent": "marked sent"}[verb]
        raise ValueError(f"outbox row {outbox_id} cannot be {done} in its present state")
    if ctx.request.headers.get("hx-request"):
        row = outbox.story(ctx.db, outbox_id)
        return ctx.render("outbox_row.html", row=row)
    return RedirectResponse(f"/outbox/{outbox_id}", status_code=303)


def outbox_retry(ctx: Ctx) -> Response:
    return _outbox_change(ctx, "retry")


def outbox_cancel(ctx: Ctx) -> Response:
    return _outbox_change(ctx, "cancel")


def outbox_mark_sent(ctx: Ctx) -> Response:
    """A person checked that an ambiguous mail (DATA began, no reply known) arrived."""
    return _outbox_change(ctx, "mark_sent")


def rules_page(ctx: Ctx) -> Response:
    return ctx.render("rules.html", loaded=rules.loaded(ctx.config),
                      ledger=rules.ledger(ctx.db, rule=ctx.param("rule") or None, cursor=ctx.param("cursor") or None,
                                          limit=ctx.config.web.page_size), rule=ctx.param("rule"))


def rules_simulate(ctx: Ctx) -> Response:
    from maild.rules.durations import parse_duration

    since = ctx.param("since", "30d")
    planned = rules.simulate(ctx.config, ctx.db, utcnow() - parse_duration(since))
    return ctx.render("simulate.html", planned=planned, since=since)


def invoices_page(ctx: Ctx) -> Response:
    overdue = ctx.param("overdue") == "1"
    status = ctx.param("status", "open") or None
    return ctx.render("invoices.html", rows=invoices.listing(ctx.db, status=status, overdue=overdue),
                      overdue=overdue, status=status, today=date.today().isoformat())


def invoice_payment(ctx: Ctx) -> Response:
    invoice_id = ctx.path_int("id")
    invoices.record_payment(ctx.db, ctx.actor, f"#{invoice_id}", amount=ctx.form.get("amount", ""),
                            paid_on=ctx.form.get("paid_on") or date.today().isoformat(),
                            reference=ctx.form.get("reference", ""))
    return RedirectResponse("/invoices", status_code=303)


def quarantine_page(ctx: Ctx) -> Response:
    return ctx.render("quarantine.html", rows=overview.quarantined(ctx.db))


def status_page(ctx: Ctx) -> Response:
    return ctx.render("status.html", data=overview.status(ctx.db, classifying=ctx.config.machine_mail.classify))


def audit_page(ctx: Ctx) -> Response:
    before = ctx.param("before")
    rows = audit.entries(ctx.db, limit=ctx.config.web.page_size + 1,
                         before_id=int(before) if before.isdigit() else None,
                         actor=ctx.param("actor") or None, action=ctx.param("action") or None)
    more = len(rows) > ctx.config.web.page_size
    rows = rows[:ctx.config.web.page_size]
    return ctx.render("audit.html", rows=rows, next_before=rows[-1].id if more and rows else None)


def users_page(ctx: Ctx) -> Response:
    return ctx.render("users.html", rows=users.list_users(ctx.db))


def user_add(ctx: Ctx) -> Response:
    users.add_user(ctx.db, ctx.actor, ctx.form.get("username", "").strip(), ctx.form.get("password", ""),
                   ctx.form.get("role", "viewer"))
    return RedirectResponse("/users", status_code=303)


def user_disable(ctx: Ctx) -> Response:
    users.set_disabled(ctx.db, ctx.actor, ctx.request.path_params["name"], ctx.form.get("enable") != "1")
    return RedirectResponse("/users", status_code=303)
