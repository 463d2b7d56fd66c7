"""The JSON API under /api/v1 (bearer tokens; errors as {"error": {"status", "message"}}; cursor pagination), and
its OpenAPI document, kept next to the routes it describes (ROUTES)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from maild.clock import utcnow
from maild.directory.service import list_contacts, resolve_thirdparty
from maild.services import audit, customers, invoices, messages, outbox, search, triage
from maild.web.core import ApiResponse, Ctx, Web, api

PREFIX = "/api/v1"


def _limit(ctx: Ctx, default: int = 50) -> int:
    value = ctx.param("limit", str(default))
    if not value.isdigit() or not 1 <= int(value) <= 500:
        raise ValueError("limit must be a number from 1 to 500")
    return int(value)


def _page(items: list[Any], next_cursor: str | None) -> ApiResponse:
    return ApiResponse({"items": items, "next_cursor": next_cursor})


def _str(ctx: Ctx, key: str, required: bool = True) -> str:
    value = ctx.body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"'{key}' is required (a string)")
    return value


def thirdparties(ctx: Ctx) -> Response:
    page = customers.list_customers(ctx.db, query=ctx.param("q"), cursor=ctx.param("cursor") or None,
                                    limit=_limit(ctx))
    return _page(page.items, page.next_cursor)


def thirdparty_create(ctx: Ctx) -> Response:
    lists = {k: ctx.body.get(k) or [] for k in ("domains", "addresses", "tags")}
    if not all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in lists.values()):
        raise ValueError("domains, addresses and tags are lists of strings")
    new_id = customers.create_thirdparty(ctx.db, ctx.actor, name=_str(ctx, "name"),
                                         kind=_str(ctx, "kind", False) or "customer",
                                         external_id=_str(ctx, "external_id", False) or None,
                                         owner=_str(ctx, "owner", False) or None, **lists)
    return ApiResponse(customers.customer(ctx.db, new_id), status_code=201)


def thirdparty_get(ctx: Ctx) -> Response:
    return ApiResponse(customers.customer(ctx.db, ctx.path_int("id")))


def thirdparty_update(ctx: Ctx) -> Response:
    return ApiResponse(customers.update_thirdparty(ctx.db, ctx.actor, ctx.path_int("id"), ctx.body))


def contacts(ctx: Ctx) -> Response:
    thirdparty_id = ctx.path_int("id")
    customers.customer(ctx.db, thirdparty_id)  # 404 for an unknown third party
    return _page(list_contacts(ctx.db, thirdparty_id), None)


def contact_create(ctx: Ctx) -> Response:
    addresses = ctx.body.get("addresses") or []
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise ValueError("addresses is a list of strings")
    contact_id = customers.create_contact(ctx.db, ctx.actor, thirdparty_id=ctx.path_int("id"), name=_str(ctx, "name"),
                                          addresses=addresses, role=_str(ctx, "role", False) or None)
    return ApiResponse({"id": contact_id}, status_code=201)


def timeline(ctx: Ctx) -> Response:
    page = customers.timeline(ctx.db, ctx.path_int("id"), kinds=ctx.request.query_params.getlist("kind"),
                              cursor=ctx.param("cursor") or None, limit=_limit(ctx))
    return _page([e.as_json() for e in page.items], page.next_cursor)


def message_get(ctx: Ctx) -> Response:
    data = messages.detail(ctx.db, ctx.path_int("id"))
    return ApiResponse(data)


def message_raw(ctx: Ctx) -> Response:
    return Response(messages.raw(ctx.db, ctx.web.blobs, ctx.path_int("id")), media_type="message/rfc822")


def search_get(ctx: Ctx) -> Response:
    thirdparty = ctx.param("thirdparty")
    filters = search.Filters(thirdparty_id=int(thirdparty) if thirdparty.isdigit() else None,
                             direction=ctx.param("direction") or None,
                             has_attachment={"true": True, "false": False}.get(ctx.param("has_attachment")))
    m = ctx.config.matching
    page = search.search(ctx.db, ctx.param("q"), filters=filters, cursor=ctx.param("cursor") or None,
                         limit=_limit(ctx), own_domains=tuple(m.own_domains), own_addresses=tuple(m.own_addresses))
    return _page([{**h.__dict__} for h in page.items], page.next_cursor)


def triage_list(ctx: Ctx) -> Response:
    page = triage.queue(ctx.db, cursor=ctx.param("cursor") or None, limit=_limit(ctx))
    return _page(page.items, page.next_cursor)


def triage_assign(ctx: Ctx) -> Response:
    ids = ctx.body.get("message_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
        raise ValueError("'message_ids' is required (a list of message ids)")
    target = resolve_thirdparty(ctx.db, str(ctx.body.get("thirdparty", "")))
    assert target.id is not None
    done = triage.assign(ctx.db, ctx.config, ctx.actor, ids, target.id, bool(ctx.body.get("learn")))
    return ApiResponse({"assigned": [d.__dict__ for d in done]})


def send(ctx: Ctx) -> Response:
    """Render a template for a third party or address and queue it (once per key)."""
    from maild.outbound import mailing

    ctx.actor.require("staff")
    key = _str(ctx, "key", False) or f"api:{uuid.uuid4().hex}"
    template, to = _str(ctx, "template"), _str(ctx, "to")
    mail = mailing.prepare(ctx.config, ctx.db, template=template, to=to,
                           invoice_ref=_str(ctx, "invoice", False) or None, attach=())
    outbox_id, created = outbox.queue_mail(ctx.db, ctx.config, ctx.actor, mail, key=key, template=template)
    return ApiResponse({"outbox_id": outbox_id, "created": created, "key": key}, status_code=201 if created else 200)


def outbox_list(ctx: Ctx) -> Response:
    page = outbox.listing(ctx.db, status=ctx.param("status") or None, cursor=ctx.param("cursor") or None,
                          limit=_limit(ctx))
    return _page(page.items, page.next_cursor)


def outbox_get(ctx: Ctx) -> Response:
    return ApiResponse(outbox.story(ctx.db, ctx.path_int("id")))


def _outbox_change(ctx: Ctx, verb: str) -> Response:
    outbox_id = ctx.path_int("id")
    if not (outbox.retry if verb == "retry" else outbox.cancel)(ctx.db, ctx.actor, outbox_id):
        return ApiResponse({"error": {"status": 409, "message": f"outbox row {outbox_id} cannot {verb} in its "
                                                                 "present state"}}, status_code=409)
    return ApiResponse(outbox.story(ctx.db, outbox_id))


def outbox_retry(ctx: Ctx) -> Response:
    return _outbox_change(ctx, "retry")


def outbox_cancel(ctx: Ctx) -> Response:
    return _outbox_change(ctx, "cancel")


def invoice_list(ctx: Ctx) -> Response:
    rows = invoices.listing(ctx.db, status=ctx.param("status") or None, overdue=ctx.param("overdue") == "true")
    return _page(rows, None)


def invoice_create(ctx: Ctx) -> Response:
    from maild.business.invoices import describe_invoice, upsert_invoice_in

    ctx.actor.require("staff")
    target = resolve_thirdparty(ctx.db, str(ctx.body.get("thirdparty", "")))
    lines = ctx.body.get("lines") or []
    if not isinstance(lines, list):
        raise ValueError("lines is a list of objects")
    ref = _str(ctx, "ref")
    with ctx.db.engine.begin() as conn:
        upsert_invoice_in(conn, ref=ref, thirdparty_id=target.id or 0,
                          issued_on=ctx.body.get("issued_on") or utcnow().date(), due_on=ctx.body.get("due_on"),
                          amount=ctx.body.get("amount"), currency=ctx.body.get("currency"), lines=lines or None)
        audit.record(conn, ctx.actor, "invoice.upsert", f"invoice:{ref}",
                     after={k: ctx.body.get(k) for k in ("ref", "thirdparty", "issued_on", "due_on", "amount",
                                                         "currency")})
    return ApiResponse(describe_invoice(ctx.db, ref), status_code=201)


def invoice_payment(ctx: Ctx) -> Response:
    result = invoices.record_payment(ctx.db, ctx.actor, f"#{ctx.path_int('id')}", amount=str(ctx.body.get("amount")),
                                     paid_on=str(ctx.body.get("paid_on") or utcnow().date().isoformat()),
                                     reference=str(ctx.body.get("reference") or ""))
    return ApiResponse({**result.__dict__}, status_code=201 if result.created else 200)


def openapi(ctx: Ctx) -> Response:
    return ApiResponse(document())


# (method, path, handler, summary): reads need a viewer's token, changes a staff user's (maild.web.core.api)
ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/openapi.json", openapi, "This document"),
    ("GET", "/thirdparties", thirdparties, "Third parties by name (q filters), with last contact and open invoices"),
    ("POST", "/thirdparties", thirdparty_create, "Create a third party {name, kind, external_id, domains, ...}"),
    ("GET", "/thirdparties/{id:int}", thirdparty_get, "One third party with contacts, domains, documents"),
    ("PATCH", "/thirdparties/{id:int}", thirdparty_update, "Change {name, kind, owner, tags, language}"),
    ("GET", "/thirdparties/{id:int}/contacts", contacts, "Its contacts"),
    ("POST", "/thirdparties/{id:int}/contacts", contact_create, "Add a contact {name, addresses, role}"),
    ("GET", "/thirdparties/{id:int}/timeline", timeline, "Its timeline, newest first (kind=..., cursor)"),
    ("GET", "/messages/{id:int}", message_get, "A message: headers, text, verdicts, filing"),
    ("GET", "/messages/{id:int}/raw", message_raw, "The raw message (message/rfc822)"),
    ("GET", "/search", search_get, "Full-text search (q, thirdparty, direction, has_attachment, cursor)"),
    ("GET", "/triage", triage_list, "The triage queue"),
    ("POST", "/triage/assign", triage_assign, "Assign {message_ids, thirdparty, learn}"),
    ("POST", "/send", send, "Send a template {template, to, invoice, key} through the outbox"),
    ("GET", "/outbox", outbox_list, "Outbox rows (status, cursor)"),
    ("GET", "/outbox/{id:int}", outbox_get, "One outbox row and its delivery story"),
    ("POST", "/outbox/{id:int}/retry", outbox_retry, "Queue a failed or cancelled row again"),
    ("POST", "/outbox/{id:int}/cancel", outbox_cancel, "Cancel a queued row"),
    ("GET", "/invoices", invoice_list, "Invoices (status, overdue=true)"),
    ("POST", "/invoices", invoice_create, "Create or update an invoice {ref, thirdparty, due_on, amount, ...}"),
    ("POST", "/invoices/{id:int}/payments", invoice_payment, "Record a payment {amount, paid_on, reference}"),
]


def routes(web: Web) -> list[Route]:
    out = []
    by_path: dict[str, dict[str, Any]] = {}
    for method, path, handler, _summary in ROUTES:
        by_path.setdefault(path, {})[method] = handler
    for path, handlers in by_path.items():
        out.append(api(PREFIX + path, _dispatch(handlers), web, methods=tuple(handlers)))
    return out


def _dispatch(handlers: dict[str, Any]) -> Any:
    def handler(ctx: Ctx) -> Response:
        return handlers[ctx.request.method](ctx)  # type: ignore[no-any-return]

    handler.__name__ = "_".join(h.__name__ for h in handlers.values())
    return handler


def document() -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}
    paths: dict[str, Any] = {}
    for method, path, handler, summary in ROUTES:
        clean = path.replace(":int", "")
        operation: dict[str, Any] = {
            "summary": summary, "operationId": handler.__name__,
            "responses": {"200": {"description": "OK"}, "401": {"description": "no or bad token",
                                                                "content": {"application/json": {"schema": error}}},
                          "403": {"description": "role too low", "content": {"application/json": {"schema": error}}},
                          "404": {"description": "not found", "content": {"application/json": {"schema": error}}},
                          "400": {"description": "bad input", "content": {"application/json": {"schema": error}}}}}
        parameters = []
        if "{id}" in clean:
            parameters.append({"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}})
        if (method == "GET" and path not in ("/openapi.json",) and "{id" not in path) or path.endswith("timeline"):
            parameters += [{"name": "cursor", "in": "query", "schema": {"type": "string"},
                            "description": "next_cursor of the previous page"},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}}]
        if parameters:
            operation["parameters"] = parameters
        if method in ("POST", "PATCH"):
            operation["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(PREFIX + clean, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "maild", "version": "1", "description": "The customer history of maild. Send "
                 "'Authorization: Bearer TOKEN' (maild token create USER). Lists are pages: pass next_cursor back "
                 "as cursor. Times are ISO 8601 with their offset, in UTC (2026-11-27T14:05:00+00:00); dates are ISO "
                 "dates (2026-11-27)."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {
                "type": "object", "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}}}},
        "security": [{"bearer": []}],
    }
