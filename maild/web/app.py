"""The web app: pages, the JSON API, static files; security headers on every answer; request timing per route.

Open routes: /login and /static/*. Everything else requires a login (pages) or a bearer token (/api/v1), see
core.py; `tests/web/test_access.py` walks every registered route to check it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maild.clock import as_utc
from maild.config import Config
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.web import api
from maild.web import pages_customers as cu
from maild.web import pages_mail as pm
from maild.web import pages_ops as po
from maild.web.core import Web, api_error, page
from maild.web.pages_auth import login_endpoint, logout
from maild.web.secret import load_web_secret
from maild.web.sessions import SessionCodec
from maild.web.stats import RequestStats, StatsMiddleware, count_queries

HERE = Path(__file__).parent
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
OPEN_PREFIXES = ("/login", "/static/")


def local_time(zone: ZoneInfo) -> Callable[[Any], str]:
    """The `when` filter: `2026-11-27 15:05 CET` in the office's zone (rules.timezone) from an ISO string or a
    datetime (naive ones are UTC, as maild stores them); a date stays a date; "-" for nothing."""

    def when(value: Any) -> str:
        if not value:
            return "-"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        if not isinstance(value, datetime):
            return value.isoformat() if isinstance(value, date) else str(value)
        moment = (as_utc(value) or value).astimezone(zone)
        return moment.strftime("%Y-%m-%d %H:%M ") + (moment.tzname() or zone.key)

    return when


def _renderer(env: Environment) -> Any:
    def render(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
        html = env.get_template(template).render(request=request, path=request.url.path, **values)
        return HTMLResponse(html, status_code=status_code)

    return render


class SecurityHeaders:
    """CSP (pages: only our own scripts and styles; the mail body route sets its own stricter one), no framing by
    others, no sniffing, no referrer, and no caching of what a login shows."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                names = {name.lower() for name, _ in headers}
                defaults = {b"content-security-policy": PAGE_POLICY.encode(), b"x-content-type-options": b"nosniff",
                            b"referrer-policy": b"no-referrer", b"x-frame-options": b"DENY",
                            b"cache-control": b"private, no-store"}
                if b"content-security-policy" in names:
                    defaults.pop(b"x-frame-options")  # the mail body route: framed by our own message page
                if scope["path"].startswith("/static/"):
                    defaults.pop(b"cache-control")
                headers.extend((name, value) for name, value in defaults.items() if name not in names)
            await send(message)

        await self.app(scope, receive, sending)


def _home(_ctx: Any) -> Response:
    return RedirectResponse("/customers", status_code=303)


def create_app(config: Config, db: Database, *, secret: bytes | None = None) -> Starlette:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = local_time(ZoneInfo(config.rules.timezone))
    web = Web(config, db, BlobStore(config.blob_dir),
              SessionCodec(secret or load_web_secret(config), config.web.session_hours * 3600,
                           config.web.secure_cookies), _renderer(env))
    count_queries(db.engine)

    routes: list[Route | Mount] = [
        Route("/login", login_endpoint(web), methods=["GET", "POST"], name="login"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        page("/", _home, web),
        page("/logout", logout, web, methods=("POST",), write="viewer"),
        page("/customers", cu.customer_list, web, methods=("GET",)),
        page("/customers/new", cu.customer_create, web, methods=("POST",)),
        page("/customers/{id:int}", cu.customer_page, web),
        page("/customers/{id:int}/notes", cu.note_add, web, methods=("POST",)),
        page("/customers/{id:int}/tasks", cu.task_add, web, methods=("POST",)),
        page("/customers/{id:int}/contacts", cu.contact_add, web, methods=("POST",)),
        page("/messages/{id:int}", pm.message_page, web),
        page("/messages/{id:int}/body", pm.message_body, web),
        page("/messages/{id:int}/raw", pm.message_raw, web),
        page("/messages/{id:int}/attachments/{position:int}", pm.message_attachment, web),
        page("/search", pm.search_page, web),
        page("/triage", pm.triage_page, web),
        page("/triage/assign", pm.triage_assign, web, methods=("POST",)),
        page("/triage/{id:int}/create", pm.triage_create, web, methods=("POST",)),
        page("/outbox", po.outbox_page, web),
        page("/outbox/{id:int}", po.outbox_story, web),
        page("/outbox/{id:int}/retry", po.outbox_retry, web, methods=("POST",)),
        page("/outbox/{id:int}/cancel", po.outbox_cancel, web, methods=("POST",)),
        page("/outbox/{id:int}/mark-sent", po.outbox_mark_sent, web, methods=("POST",)),
        page("/rules", po.rules_page, web),
        page("/rules/simulate", po.rules_simulate, web),
        page("/invoices", po.invoices_page, web),
        page("/invoices/{id:int}/payments", po.invoice_payment, web, methods=("POST",)),
        page("/quarantine", po.quarantine_page, web),
        page("/status", po.status_page, web),
        page("/audit", po.audit_page, web, read="admin"),
        page("/users", po.users_page, web, read="admin"),
        page("/users/new", po.user_add, web, methods=("POST",), write="admin"),
        page("/users/{name}/disable", po.user_disable, web, methods=("POST",), write="admin"),
        *api.routes(web),
    ]

    async def not_found(request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith(api.PREFIX):
            return api_error(404, "no such route")
        return web.render(request, "error.html", status_code=404, actor=None, csrf="", message="No such page.")

    async def not_allowed(request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith(api.PREFIX):
            return api_error(405, f"{request.method} is not allowed here")
        return web.render(request, "error.html", status_code=405, actor=None, csrf="",
                          message=f"{request.method} is not allowed here.")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    stats = RequestStats()
    app.state.stats = stats
    app.state.web = web
    app.add_middleware(SecurityHeaders)
    app.add_middleware(StatsMiddleware, stats=stats)
    return app
