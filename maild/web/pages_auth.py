"""Login and logout pages (login is open, throttled and CSRF-protected by a pre-session cookie)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from maild.services import users
from maild.web.core import Ctx, Web
from maild.web.sessions import CSRF_FIELD


def _safe_next(value: str | None) -> str:
    """Only a local path: never an open redirect to another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/customers"


def login_endpoint(web: Web) -> Callable[[Request], Awaitable[Response]]:
    async def login(request: Request) -> Response:
        target = _safe_next(request.query_params.get("next"))
        sid, new = web.sessions.login_sid(request)

        def form_page(status: int, error: str | None) -> Response:
            response = web.render(request, "login.html", status_code=status, actor=None, csrf="", next=target,
                                  error=error, login_csrf=web.sessions.csrf_token(sid))
            if new:
                web.sessions.set_login_sid(response, request, sid)
            return response

        if request.method == "GET":
            return form_page(200, None)
        form = await request.form()
        given = form.get(CSRF_FIELD)
        if new or not isinstance(given, str) or not web.sessions.csrf_ok(sid, given):
            return form_page(403, "The login form was out of date: log in again.")
        username, password = str(form.get("username") or ""), str(form.get("password") or "")
        try:
            actor, epoch = await run_in_threadpool(users.log_in, web.db, web.config.web, username, password)
        except users.LoginRefused as exc:
            return form_page(429 if exc.retry_after else 401, str(exc))
        response = RedirectResponse(_safe_next(str(form.get("next") or target)), status_code=303)
        assert actor.user_id is not None
        web.sessions.issue(response, request, actor.user_id, epoch)
        return response

    return login


def logout(ctx: Ctx) -> Response:
    """Ends every session of the user (the epoch goes up) and clears the cookie."""
    assert ctx.actor.user_id is not None
    users.end_sessions(ctx.db, ctx.actor.user_id)
    response = RedirectResponse("/login", status_code=303)
    ctx.web.sessions.clear(response)
    return response
