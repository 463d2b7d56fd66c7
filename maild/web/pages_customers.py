"""Customer pages: the list (search, last contact, open invoices), one customer's timeline, notes, tasks, contacts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from starlette.responses import RedirectResponse, Response

from maild.services import customers
from maild.web.core import Ctx


def _back(ctx: Ctx, path: str) -> Response:
    return RedirectResponse(path, status_code=303)


def customer_list(ctx: Ctx) -> Response:
    query = ctx.param("q")
    result = customers.list_customers(ctx.db, query=query, cursor=ctx.param("cursor") or None,
                                      limit=ctx.config.web.page_size)
    return ctx.render("customers.html", page=result, q=query)


def customer_create(ctx: Ctx) -> Response:
    domains = [d.strip() for d in ctx.form.get("domains", "").split(",") if d.strip()]
    thirdparty_id = customers.create_thirdparty(ctx.db, ctx.actor, name=ctx.form.get("name", ""),
                                                kind=ctx.form.get("kind") or "customer",
                                                external_id=ctx.form.get("external_id") or None, domains=domains,
                                                owner=ctx.form.get("owner") or None)
    return _back(ctx, f"/customers/{thirdparty_id}")


def customer_page(ctx: Ctx) -> Response:
    thirdparty_id = ctx.path_int("id")
    kinds = [k for k in ctx.request.query_params.getlist("kind") if k]
    info = customers.customer(ctx.db, thirdparty_id)
    result = customers.timeline(ctx.db, thirdparty_id, kinds=kinds, cursor=ctx.param("cursor") or None,
                                limit=ctx.config.web.page_size)
    more_query = "&".join([f"kind={k}" for k in kinds] + ([f"cursor={result.next_cursor}"] if result.next_cursor
                                                          else []))
    if ctx.request.headers.get("hx-request") and ctx.param("cursor"):
        return ctx.render("timeline_rows.html", tp=info, page=result, more_query=more_query)
    return ctx.render("customer.html", tp=info, page=result, kinds=list(customers.KINDS), chosen=kinds,
                      more_query=more_query)


def note_add(ctx: Ctx) -> Response:
    thirdparty_id = ctx.path_int("id")
    customers.add_note(ctx.db, ctx.actor, thirdparty_id, ctx.form.get("text", ""))
    return _back(ctx, f"/customers/{thirdparty_id}")


def task_add(ctx: Ctx) -> Response:
    thirdparty_id = ctx.path_int("id")
    due = ctx.form.get("due", "").strip()
    due_at = _office_time(datetime.fromisoformat(due), ctx.config.rules.timezone) if due else None
    customers.add_task(ctx.db, ctx.actor, thirdparty_id, ctx.form.get("title", ""), due_at=due_at,
                       owner=ctx.form.get("owner") or None)
    return _back(ctx, f"/customers/{thirdparty_id}")


def contact_add(ctx: Ctx) -> Response:
    thirdparty_id = ctx.path_int("id")
    addresses = [a.strip() for a in ctx.form.get("addresses", "").split(",") if a.strip()]
    customers.create_contact(ctx.db, ctx.actor, thirdparty_id=thirdparty_id, name=ctx.form.get("name", ""),
                             addresses=addresses, role=ctx.form.get("role") or None)
    return _back(ctx, f"/customers/{thirdparty_id}")


def _office_time(moment: datetime, zone: str) -> datetime:
    """A time typed into a form (datetime-local has no zone) is the office's time (rules.timezone)."""
    return moment.replace(tzinfo=ZoneInfo(zone)) if moment.tzinfo is None else moment
