"""Signed session cookies (itsdangerous) and their CSRF tokens.

The cookie holds (user id, session epoch, a random session id), signed and timestamped; it is HttpOnly,
SameSite=Lax, Secure over https, and lasts web.session_hours. The user's epoch going up (logout, new password,
disabled) ends every older cookie. The CSRF token is an HMAC of the session id: forms carry it as `csrf`, htmx as
the X-CSRF-Token header. Before login, the login form is protected the same way by a short pre-session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "maild_session"
LOGIN_COOKIE = "maild_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    user_id: int
    epoch: int
    sid: str


class SessionCodec:
    def __init__(self, secret: bytes, max_age_seconds: float, secure: str = "auto") -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="maild-web-session")
        self._csrf_key = hmac.new(secret, b"maild-web-csrf", hashlib.sha256).digest()
        self.max_age = int(max_age_seconds)
        self.secure = secure

    def read(self, request: Request) -> Session | None:
        value = request.cookies.get(COOKIE)
        if not value or len(value) > 500:
            return None
        try:
            data = self._signer.loads(value, max_age=self.max_age)
            return Session(int(data["u"]), int(data["e"]), str(data["s"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None

    def issue(self, response: Response, request: Request, user_id: int, epoch: int) -> None:
        value = self._signer.dumps({"u": user_id, "e": epoch, "s": secrets.token_urlsafe(16)})
        response.set_cookie(COOKIE, value, max_age=self.max_age, httponly=True, samesite="lax",
                            secure=self._secure(request), path="/")
        response.delete_cookie(LOGIN_COOKIE, path="/")

    def clear(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/")

    def csrf_token(self, sid: str) -> str:
        return hmac.new(self._csrf_key, sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_token(sid), given or "")

    def login_sid(self, request: Request) -> tuple[str, bool]:
        """The login form's pre-session id from its cookie: (sid, False); or a new one: (sid, True)."""
        sid = request.cookies.get(LOGIN_COOKIE) or ""
        if len(sid) == 22:
            return sid, False
        return secrets.token_urlsafe(16), True

    def set_login_sid(self, response: Response, request: Request, sid: str) -> None:
        response.set_cookie(LOGIN_COOKIE, sid, max_age=3600, httponly=True, samesite="lax",
                            secure=self._secure(request), path="/")

    def _secure(self, request: Request) -> bool:
        if self.secure == "auto":
            return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        return self.secure == "always"
