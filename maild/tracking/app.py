"""The open/click endpoint: `/o/<signed>` (pixel), `/c/<signed>` (redirect), `/health`.

Only values signed with our secret count. A click redirects to the URL stored for (token, link) when the
mail was instrumented, never to anything taken from the request. Events are queued by an EventRecorder
(maild/tracking/recorder.py) and written a group of hits per transaction by the tracking writer process. A click
is answered once its event is committed; an open at once, its event written behind (a kill -9 may lose the last
few milliseconds of opens; a stop loses none). One client's repeats of an open or a click within
`tracking.repeat_window` are counted on the first one's event, not recorded anew. HEAD requests get the same
answer as GET and record nothing (link checkers and prefetchers send them). `/health` carries KEY_ID_HEADER, a
fingerprint of the signing secret, so `maild config check --connect` can tell its own daemon on the port from
another process. The open pixel is an `async def`; the click (which reads its URL) and health handlers are plain
`def`s (Starlette runs them in its threadpool), so no synchronous database call blocks the event loop.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio.from_thread
from sqlalchemy import text
from sqlmodel import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from maild.clock import utcnow
from maild.config import TrackingConfig
from maild.health import HealthView
from maild.store.db import Database
from maild.store.models import TrackingLink
from maild.tracking.clients import truncate_ip
from maild.tracking.recorder import EventRecorder, Hit
from maild.tracking.signing import key_id, verify

log = logging.getLogger("maild.tracking")

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache",
            "Expires": "0"}
MAX_USER_AGENT = 1000
KEY_ID_HEADER = "X-Maild-Key-Id"

_links = TrackingLink.__table__


def create_app(db: Database, secret: bytes, cfg: TrackingConfig,
               workers: Callable[[], Sequence[HealthView]] | None = None) -> Starlette:
    """The endpoint's app; `workers` gives the daemon's worker states for `/health` (maild/health.py)."""
    def not_found() -> Response:
        return PlainTextResponse("Not Found", status_code=404, headers=NO_CACHE)

    def client(request: Request) -> tuple[str | None, str | None, str | None]:
        ua = request.headers.get("user-agent")
        ip = request.client.host if request.client else None
        stored_ip = truncate_ip(ip) if cfg.truncate_ip else ip
        return (ua[:MAX_USER_AGENT] if ua is not None else None), ip, stored_ip

    recorder = EventRecorder(db, cfg)

    def hit(event_type: str, kind: str, token: str, request: Request, extra: dict[str, Any]) -> Hit:
        ua, ip, stored_ip = client(request)
        return Hit(event_type, kind, token, utcnow(), ua, ip, stored_ip, extra)

    async def opened(request: Request) -> Response:
        verified = verify(secret, request.path_params["value"])
        if verified is None or verified[0] != "o":
            return not_found()
        if request.method == "GET":
            recorder.record_soon(hit("mail.opened", "o", verified[1], request, {}))  # write-behind (see recorder)
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    def clicked(request: Request) -> Response:
        if request.url.query:
            return not_found()  # our links never carry a query: nothing in the request picks the target
        verified = verify(secret, request.path_params["value"])
        if verified is None or verified[0] != "c":
            return not_found()
        _kind, token, link = verified
        with db.engine.connect() as conn:
            url = conn.execute(select(_links.c.url).where(_links.c.token == token, _links.c.link == link)).scalar()
        if url is None or not url.lower().startswith(("http://", "https://")):
            return not_found()
        if request.method != "GET":
            return RedirectResponse(url, status_code=302, headers=NO_CACHE)
        try:  # this handler runs in Starlette's threadpool: the recorder lives on the event loop
            anyio.from_thread.run(recorder.record, hit("mail.clicked", "c", token, request, {"url": url, "link": link}))
        except Exception:
            log.exception("recording a click failed", extra={"fields": {"token": token, "link": link}})
        return RedirectResponse(url, status_code=302, headers=NO_CACHE)

    health_headers = {**NO_CACHE, KEY_ID_HEADER: key_id(secret)} if secret else NO_CACHE

    def health(_request: Request) -> Response:
        """200 when the database answers and every worker runs; 503 otherwise, with each worker's state, last
        error and restart count (a worker retrying after an error, or being restarted, is not healthy)."""
        try:
            with db.engine.connect() as connection:
                ok = connection.execute(text("SELECT 1")).scalar() == 1
        except Exception:
            log.warning("tracking health check: database unreachable", exc_info=True)
            ok = False
        views = list(workers()) if workers is not None else []
        ok_workers = all(view.healthy for view in views)
        body: dict[str, Any] = {"status": "ok" if ok and ok_workers else "error", "database": ok}
        if workers is not None:
            body["workers"] = [view.as_json() for view in views]
        return JSONResponse(body, status_code=200 if ok and ok_workers else 503, headers=health_headers)

    app = Starlette(routes=[
        Route("/o/{value}", opened, methods=["GET"]),
        Route("/c/{value}", clicked, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ])
    app.state.recorder = recorder  # TrackingServer.stop() closes it once no request is left
    return app
