"""Mail pages: a message (with its HTML body in a sandboxed frame of its own), raw .eml, attachments, search, triage."""

from __future__ import annotations

from datetime import date

from starlette.responses import RedirectResponse, Response

from maild.directory.service import resolve_thirdparty
from maild.services import messages, search, triage
from maild.web.core import Ctx

# The HTML body of a mail: nothing runs, nothing is fetched (no scripts, no remote images, styles, fonts, frames,
# forms), and the frame is a sandbox of its own origin. Only inline styles and data: images are shown.
BODY_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
               "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox")


def message_page(ctx: Ctx) -> Response:
    return ctx.render("message.html", m=messages.detail(ctx.db, ctx.path_int("id")))


def message_body(ctx: Ctx) -> Response:
    body = messages.html_body(ctx.db, ctx.path_int("id"))
    return Response(body, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": BODY_POLICY, "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer", "Cache-Control": "private, no-store"})


def message_raw(ctx: Ctx) -> Response:
    message_id = ctx.path_int("id")
    data = messages.raw(ctx.db, ctx.web.blobs, message_id)
    return Response(data, media_type="message/rfc822",
                    headers={"Content-Disposition": f'attachment; filename="message-{message_id}.eml"',
                             "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


def message_attachment(ctx: Ctx) -> Response:
    meta, data = messages.attachment(ctx.db, ctx.web.blobs, ctx.path_int("id"), ctx.path_int("position"))
    name = "".join(ch for ch in (meta["filename"] or "attachment") if ch.isalnum() or ch in "._- ")[:100] \
        or "attachment"
    # Always a download, never shown inline: an attachment is the sender's content, not ours.
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
                             "Cache-Control": "private, no-store"})


def search_page(ctx: Ctx) -> Response:
    query = ctx.param("q")
    has = ctx.param("attachment")
    filters = search.Filters(
        thirdparty_id=int(ctx.param("thirdparty")) if ctx.param("thirdparty").isdigit() else None,
        since=date.fromisoformat(ctx.param("since")) if ctx.param("since") else None,
        until=date.fromisoformat(ctx.param("until")) if ctx.param("until") else None,
        direction=ctx.param("direction") or None,
        has_attachment={"yes": True, "no": False}.get(has))
    matching = ctx.config.matching
    result = search.search(ctx.db, query, filters=filters, cursor=ctx.param("cursor") or None,
                           limit=ctx.config.web.page_size, own_domains=tuple(matching.own_domains),
                           own_addresses=tuple(matching.own_addresses))
    params = {k: v for k, v in ctx.request.query_params.items() if k != "cursor" and v}
    return ctx.render("search.html", q=query, page=result, params=params, words=search.words_of(query))


def triage_page(ctx: Ctx) -> Response:
    result = triage.queue(ctx.db, cursor=ctx.param("cursor") or None, limit=ctx.config.web.page_size)
    return ctx.render("triage.html", page=result)


def triage_assign(ctx: Ctx) -> Response:
    ids = [int(i) for i in ctx.form_lists.get("message", []) if i.isdigit()]
    if not ids:
        raise ValueError("choose at least one message")
    target = resolve_thirdparty(ctx.db, ctx.form.get("thirdparty", "").strip())
    assert target.id is not None
    done = triage.assign(ctx.db, ctx.config, ctx.actor, ids, target.id, learn=bool(ctx.form.get("learn")))
    if ctx.request.headers.get("hx-request") and len(ids) == 1:
        return ctx.render("triage_done.html", done=done, target=target)
    return RedirectResponse("/triage", status_code=303)


def triage_create(ctx: Ctx) -> Response:
    message_id = ctx.path_int("id")
    triage.create_from_sender(ctx.db, ctx.config, ctx.actor, message_id, name=ctx.form.get("name") or None)
    return RedirectResponse("/triage", status_code=303)
