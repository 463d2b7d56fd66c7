"""The tracking endpoint of `maild run`: serving on its port, or standing by while another daemon of this
installation serves it.

A port held by anything else stops the start (PortUnavailable): the links in sent mail would reach that
process. A port held by a maild endpoint with the same secret (another daemon on this machine, `/health` says
so) is served already: this daemon stands by and takes the port over once it is free (that daemon stopped or
died), checking every `retry` seconds.
"""

from __future__ import annotations

import errno
import logging
import threading

from maild.server_keeper import ServerKeeper
from maild.tracking.server import PortUnavailable, TrackingServer, holder_key_id
from maild.tracking.signing import key_id

log = logging.getLogger("maild.tracking")

STANDBY_RETRY = 5.0


class TrackingListener:
    def __init__(self, server: TrackingServer, secret: bytes, retry: float = STANDBY_RETRY) -> None:
        self.server = server
        self.key_id = key_id(secret)
        self.retry = retry
        self.serving = False
        self._stop = threading.Event()
        self._standby: threading.Thread | None = None
        self._keeper = ServerKeeper("tracking", server)
        self.health = self._keeper.health

    def start(self) -> None:
        """Serve, or stand by for a daemon of ours that serves; PortUnavailable for any other holder."""
        try:
            self.server.start()
        except PortUnavailable as exc:
            if not self._ours_holds(exc):
                raise
            log.warning("tracking endpoint %s:%d is served by another maild daemon with this secret; standing by "
                        "to take it over", self.server.host, self.server.port)
            self._standby = threading.Thread(target=self._stand_by, name="maild-tracking-standby", daemon=True)
            self._standby.start()
            return
        self._serving()

    def stop(self) -> None:
        self._stop.set()
        if self._standby is not None:
            self._standby.join(timeout=30)
        self.server.stop()

    def check(self) -> None:
        """Called by the daemon's supervisor: a serving thread that ended by itself is started again (after a
        capped backoff when it keeps ending), and shown in the health board meanwhile."""
        if self.serving and not self._stop.is_set():
            self._keeper.check()

    def _ours_holds(self, exc: PortUnavailable) -> bool:
        return exc.errno == errno.EADDRINUSE and holder_key_id(self.server.host, self.server.port) == self.key_id

    def _stand_by(self) -> None:
        warned = False
        while not self._stop.wait(self.retry):
            try:
                self.server.start()
            except PortUnavailable as exc:
                if not warned and not self._ours_holds(exc):
                    log.error("%s; still standing by", exc)
                    warned = True
                continue
            except Exception:
                log.exception("tracking endpoint: could not take the port over; still standing by")
                continue
            self._serving()
            return

    def _serving(self) -> None:
        self.serving = True
        self.health.ok()
        log.info("tracking endpoint listening",
                 extra={"fields": {"url": f"http://{self.server.host}:{self.server.port}"}})
