"""What every route shares: who is asking (session cookie or bearer token), CSRF, roles, and the handler's context.

Every route is made with `page()` or `api()`, which name the role reading (GET) and changing (POST, PUT, PATCH,
DELETE) need. Logged out, a page redirects to /login and the API answers 401; a change without the session's
CSRF token is refused (403); a role too low gets 403. Only /login and /static are open (see app.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from maild.config import Config, ConfigError
from maild.services import tokens, users
from maild.services.actor import Actor
from maild.store.blobs import BlobStore
from maild.store.db import Database
from maild.web.sessions import CSRF_FIELD, CSRF_HEADER, SessionCodec

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Web:
    """The app's shared parts."""

    config: Config
    db: Database
    blobs: BlobStore
    sessions: SessionCodec
    render: Callable[..., Response]


@dataclass
class Ctx:
    request: Request
    web: Web
    actor: Actor
    csrf: str = ""
    form: dict[str, Any] = field(default_factory=dict)
    form_lists: dict[str, list[str]] = field(default_factory=dict)
    body: Any = None  # the API's JSON body

    @property
    def db(self) -> Database:
        return self.web.db

    @property
    def config(self) -> Config:
        return self.web.config

    def param(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    def path_int(self, name: str) -> int:
        return int(self.request.path_params[name])

    def render(self, template: str, status_code: int = 200, **values: Any) -> Response:
        return self.web.render(self.request, template, status_code=status_code, actor=self.actor, csrf=self.csrf,
                               **values)


Handler = Callable[[Ctx], Response]


def page(path: str, handler: Handler, web: Web, *, methods: tuple[str, ...] = ("GET",), read: str = "viewer",
         write: str = "staff") -> Route:
    async def endpoint(request: Request) -> Response:
        form: dict[str, Any] = {}
        lists: dict[str, list[str]] = {}
        if web.sessions.read(request) is None:  # no signed cookie: refused before any body is read
            return _logged_out(request, web)
        if request.method in CHANGES:
            parsed = await request.form()
            form = {k: v for k, v in parsed.items() if isinstance(v, str)}
            lists = {k: [v for v in parsed.getlist(k) if isinstance(v, str)] for k in parsed}
        # One trip to the thread pool per request: who is asking (a database read), then the handler.
        return await run_in_threadpool(_serve_page, request, web, handler, form, lists, read, write)

    endpoint.__name__ = handler.__name__
    route = Route(path, endpoint, methods=list(methods), name=handler.__name__)
    route.maild_access = ("page", read, write)  # type: ignore[attr-defined]
    return route


def _logged_out(request: Request, web: Web) -> Response:
    if request.method == "GET":
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return web.render(request, "error.html", status_code=401, actor=None, csrf="",
                      message="Your session has ended: log in again.")


def _serve_page(request: Request, web: Web, handler: Handler, form: dict[str, Any], lists: dict[str, list[str]],
                read: str, write: str) -> Response:
    session = web.sessions.read(request)
    actor = users.session_actor(web.db, session.user_id, session.epoch) if session is not None else None
    if actor is None or session is None:
        return _logged_out(request, web)
    ctx = Ctx(request, web, actor, web.sessions.csrf_token(session.sid), form, lists)
    if request.method in CHANGES:
        given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        if not web.sessions.csrf_ok(session.sid, given):
            return ctx.render("error.html", status_code=403,
                              message="This form is out of date or did not come from maild (CSRF token missing "
                                      "or wrong). Go back, reload the page and try again.")
    needed = write if request.method in CHANGES else read
    if not actor.can(needed):
        return ctx.render("error.html", status_code=403, message=f"You are {actor.role}: this needs the role {needed}.")
    return _guarded_call(handler, ctx, web)


def api(path: str, handler: Handler, web: Web, *, methods: tuple[str, ...] = ("GET",), read: str = "viewer",
        write: str = "staff") -> Route:
    async def endpoint(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        actor = await run_in_threadpool(tokens.actor_for, web.db, value.strip()) \
            if scheme.lower() == "bearer" and value.strip() else None
        if actor is None:
            return api_error(401, "authentication required: send 'Authorization: Bearer TOKEN' "
                                  "(maild token create USER)", headers={"WWW-Authenticate": "Bearer"})
        needed = write if request.method in CHANGES else read
        if not actor.can(needed):
            return api_error(403, f"{actor.name} is {actor.role}: this needs the role {needed}")
        ctx = Ctx(request, web, actor)
        if request.method in CHANGES:
            raw = await request.body()
            try:
                ctx.body = json.loads(raw) if raw else {}
            except ValueError:
                return api_error(400, "the request body is not valid JSON")
            if not isinstance(ctx.body, dict):
                return api_error(400, "the request body must be a JSON object")
        return await run_in_threadpool(_guarded_call, handler, ctx, web, True)

    endpoint.__name__ = "api_" + handler.__name__
    route = Route(path, endpoint, methods=list(methods), name="api_" + handler.__name__)
    route.maild_access = ("api", read, write)  # type: ignore[attr-defined]
    return route


class ApiResponse(JSONResponse):
    """JSON with dates, times and amounts as text (ISO dates, exact decimals)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=_text, separators=(",", ":")).encode("utf-8")


def _text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


def _guarded_call(handler: Handler, ctx: Ctx, web: Web, as_json: bool = False) -> Response:
    """Run the handler; bad input and unknown objects are clear 4xx answers, never a traceback."""
    from maild.services.actor import Forbidden
    from maild.services.paging import BadCursor

    try:
        return handler(ctx)
    except Forbidden as exc:
        status, message = 403, str(exc)
    except LookupError as exc:
        status, message = 404, str(exc.args[0] if exc.args else exc)
    except (ValueError, BadCursor, ConfigError) as exc:  # ConfigError: e.g. a template that cannot be used
        status, message = 400, str(exc)
    if as_json:
        return api_error(status, message)
    return ctx.render("error.html", status_code=status, message=message)

