"""Opening and closing one logged-in IMAP connection (TLS, STARTTLS or plain; password or XOAUTH2)."""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imapclient import IMAPClient

from maild.config import ImapSourceConfig, resolve_path

log = logging.getLogger("maild.imap")


def connect(cfg: ImapSourceConfig, base_dir: Path) -> IMAPClient:
    """A logged-in client (TLS as configured; the secret read now); raises on any failure."""
    context = tls_context(cfg, base_dir)
    client = IMAPClient(cfg.host, cfg.effective_port, ssl=cfg.security == "tls", ssl_context=context,
                        timeout=cfg.timeout)
    trace_protocol_only_when_logged(client)
    try:
        if cfg.security == "starttls":
            client.starttls(context)
        secret = cfg.secret(base_dir)
        if cfg.auth == "xoauth2":
            client.oauth2_login(cfg.username, secret)
        else:
            client.login(cfg.username, secret)
    except BaseException:
        quietly_logout(client)
        raise
    return client


def trace_protocol_only_when_logged(client: IMAPClient) -> None:
    """imapclient sets imaplib's debug level to 5 and sends its trace to the `imapclient.imaplib` logger, but
    imaplib formats every trace line first, whoever listens: at level 5 that is the repr of each fetched message
    (and of a whole FETCH answer again when it is handed over), more CPU than reading the mail. The trace is
    only made while that logger would print it."""
    if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        client._imap.debug = 0


def tls_context(cfg: ImapSourceConfig, base_dir: Path) -> ssl.SSLContext | None:
    """The TLS settings of a connection (None for `security: plain`). Connections with the same CA file and
    verification share one context: each holds its own copy of the CA store (about 0.85 MB with the system's),
    which made a daemon with hundreds of folders carry hundreds of copies. A CA file changed on disk is read
    again."""
    ca_file = resolve_path(base_dir, cfg.ca_file) if cfg.ca_file else None
    if ca_file is not None and not ca_file.is_file():
        raise FileNotFoundError(f"ca_file {ca_file} does not exist")
    if cfg.security == "plain":
        return None
    if ca_file is None:
        return _shared_context(None, 0, cfg.verify_tls)
    return _shared_context(str(ca_file), ca_file.stat().st_mtime_ns, cfg.verify_tls)


@functools.lru_cache(maxsize=16)
def _shared_context(ca_file: str | None, _changed: int, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def session(cfg: ImapSourceConfig, base_dir: Path) -> Iterator[IMAPClient]:
    """A logged-in client for one piece of work, logged out afterwards whatever happens."""
    client = connect(cfg, base_dir)
    try:
        yield client
    finally:
        quietly_logout(client)


def quietly_logout(client: IMAPClient) -> None:
    """LOGOUT, or at least close the socket; never raises."""
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception as exc:
            log.debug("IMAP shutdown failed: %s", exc)


def unselect(client: IMAPClient, folder: str) -> None:
    """Leave the selected `folder` without expunging anything: UNSELECT (RFC 3691), else EXAMINE it and CLOSE (a
    read-only CLOSE removes nothing). A server answers STATUS of the selected folder from the session's own view
    (Dovecot does: neither new mail nor a new UIDVALIDITY shows until the session syncs), so a poller that asks
    STATUS must not keep a folder selected."""
    if b"UNSELECT" in client.capabilities():
        client.unselect_folder()
    else:
        client.select_folder(folder, readonly=True)
        client.close_folder()


def announced_new_mail(client: IMAPClient) -> bool:
    """Whether the server announced a new size of the selected folder (untagged EXISTS) since the last look, and
    forget those announcements. A message delivered while a pass runs is announced at the end of one of the pass's
    commands, not again in the IDLE that follows: without this look it would wait for `idle_check_interval`.
    (imapclient keeps such unsolicited responses in its imaplib connection's `untagged_responses`.)"""
    return bool(client._imap.untagged_responses.pop("EXISTS", None))


def is_keepalive(response: tuple) -> bool:
    """An untagged OK during IDLE ("* OK Still here"): the server saying it is alive, not that anything changed."""
    return len(response) >= 1 and response[0] == b"OK"
