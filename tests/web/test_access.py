"""Every registered route, walked: logged out only /login and /static answer; a viewer changes nothing; a change
without the session's CSRF token (missing, forged, another session's) is refused."""

from __future__ import annotations

import re

from starlette.routing import Mount, Route

from maild.services import audit
from tests.web.support import Site

OPEN = {"/login"}
CHANGES = ("POST", "PUT", "PATCH", "DELETE")


def _routes(site: Site) -> list[tuple[str, str, tuple[str, str, str] | None]]:
    """(method, a concrete path, (kind, read role, write role)) for every route but the static mount."""
    out = []
    for route in site.app.routes:
        if isinstance(route, Mount):
            assert route.path == "/static", f"unexpected mount {route.path}"
            continue
        assert isinstance(route, Route)
        path = re.sub(r"\{[a-z_]+:int\}", "1", route.path)
        path = re.sub(r"\{[a-z_]+\}", "someone", path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, path, getattr(route, "maild_access", None)))
    return out


def test_every_route_needs_a_login_but_the_login_page_and_static_files(site: Site) -> None:
    client = site.client()
    walked = _routes(site)
    assert len(walked) > 40  # pages and API
    for method, path, access in walked:
        if path in OPEN:
            assert access is None
            continue
        assert access is not None, f"{path} is not guarded"
        answer = client.request(method, path)
        if access[0] == "api":
            assert answer.status_code == 401, (method, path)
            assert answer.json()["error"]["message"].startswith("authentication required")
            assert answer.headers["www-authenticate"] == "Bearer"
        elif method == "GET":
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"].startswith("/login?next=")
        else:
            assert answer.status_code == 401, (method, path)
    assert client.get("/login").status_code == 200
    static = client.get("/static/htmx.min.js")
    assert static.status_code == 200 and "htmx" in static.text
    assert client.get("/static/app.css").status_code == 200
    # a forged or bad bearer token is no login either
    assert client.get("/api/v1/thirdparties", headers={"Authorization": "Bearer maild_forged"}).status_code == 401
    forged = site.client()
    forged.cookies.set("maild_session", "forged.value.sig")
    assert forged.get("/customers").status_code == 303


def test_a_viewer_can_read_but_change_nothing(site: Site) -> None:
    before = len(audit.entries(site.db, limit=1000))
    client, csrf = site.logged_in("vic")
    headers = site.token("vic")
    before += 1  # the token's own creation
    for method, path, access in _routes(site):
        if path in OPEN or access is None:
            continue
        kind, read, write = access
        if method in CHANGES:
            if write == "viewer":  # logging out is everyone's
                continue
            if kind == "api":
                answer = client.request(method, path, headers=headers, json={})
                assert answer.status_code == 403, (method, path, answer.text)
                assert "needs the role staff" in answer.json()["error"]["message"]
            else:
                answer = client.request(method, path, data={"csrf": csrf}, headers={"X-CSRF-Token": csrf})
                assert answer.status_code == 403, (method, path, answer.text)
                assert "this needs the role" in answer.text
        elif read == "admin":
            assert client.get(path).status_code == 403, path
    assert len(audit.entries(site.db, limit=1000)) == before  # nothing was changed
    assert client.get("/customers").status_code == 200
    assert client.get("/api/v1/thirdparties", headers=headers).status_code == 200


def test_a_staff_user_cannot_reach_the_admin_pages(site: Site) -> None:
    client, csrf = site.logged_in("sam")
    assert client.get("/audit").status_code == 403
    assert client.get("/users").status_code == 403
    answer = client.post("/users/new", data={"csrf": csrf, "username": "x", "password": "long enough 1",
                                             "role": "admin"})
    assert answer.status_code == 403


def test_changes_without_the_sessions_csrf_token_are_refused(site: Site) -> None:
    client, csrf = site.logged_in("ada")
    _other, other_csrf = site.logged_in("sam")
    before = len(audit.entries(site.db, limit=1000))
    forged = "0" * len(csrf)
    checked = 0
    for method, path, access in _routes(site):
        if access is None or access[0] != "page" or method not in CHANGES:
            continue
        for given in ({}, {"csrf": forged}, {"csrf": other_csrf}, {"csrf": ""}):
            answer = client.request(method, path, data=given)
            assert answer.status_code == 403, (method, path, given)
            assert "CSRF" in answer.text
        answer = client.request(method, path, headers={"X-CSRF-Token": forged})
        assert answer.status_code == 403
        checked += 1
    assert checked >= 12
    assert len(audit.entries(site.db, limit=1000)) == before
    # the login form is protected too
    fresh = site.client()
    refused = fresh.post("/login", data={"username": "ada", "password": "admin password 1", "csrf": forged})
    assert refused.status_code == 403 and "maild_session" not in refused.cookies


def test_session_cookie_flags_logout_and_wrong_passwords(site: Site) -> None:
    client = site.client()
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token
    for _ in range(5):
        wrong = client.post("/login", data={"username": "sam", "password": "nope nope nope", "csrf": token.group(1)})
        assert wrong.status_code in (401, 429)
    assert wrong.status_code == 429 and "too many failed logins" in wrong.text
    locked = client.post("/login", data={"username": "sam", "password": "staff password 1", "csrf": token.group(1)})
    assert locked.status_code == 429
    ok = client.post("/login", data={"username": "ada", "password": "admin password 1", "csrf": token.group(1)})
    cookie = ok.headers["set-cookie"]
    assert "maild_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http here; over https (or behind a TLS proxy) it is Secure
    page = client.get("/customers")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    stolen = client.cookies.get("maild_session")
    assert client.post("/logout", data={"csrf": csrf.group(1)}).status_code == 303
    again = site.client()
    again.cookies.set("maild_session", stolen or "")
    assert again.get("/customers").status_code == 303  # the session ended on logout, also for a copied cookie
    assert client.get("/login?next=//evil.example/").status_code == 200
    login = site.client()
    t = re.search(r'name="csrf" value="([^"]+)"', login.get("/login").text)
    assert t
    redirect = login.post("/login?next=//evil.example/x", data={"username": "ada", "password": "admin password 1",
                                                                 "csrf": t.group(1), "next": "https://evil.example/"})
    assert redirect.headers["location"] == "/customers"  # never an open redirect
