"""`maild config check --connect`: can this config reach what it names? The database (and its schema), each
IMAP account (login, the configured folders and their sizes), each Maildir, the SMTP server (connect, TLS,
auth; no mail is sent) or the file transport's folder, the tracking secret and listener (its port free or
held by a running maild with this secret), and the rule files.

Each probe gives one line, OK or FAILED with the reason as the server or system put it; secrets never appear.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from maild.config import Config, ConfigError, ImapSourceConfig, MaildirSourceConfig, resolve_path
from maild.permissions import private_dir

PROBE_TIMEOUT = 15.0  # seconds per server, whatever the configured (longer) timeouts


@dataclass(frozen=True)
class Probe:
    what: str
    ok: bool
    detail: str


def probe_all(config: Config) -> list[Probe]:
    checks: list[tuple[str, Callable[[], str]]] = [("database", lambda: _database(config))]
    for source in config.sources:
        if isinstance(source, ImapSourceConfig):
            checks.append((f"imap {source.name}", lambda s=source: _imap(s, Path(config.base_dir))))  # type: ignore[misc]
        elif isinstance(source, MaildirSourceConfig):
            checks.append((f"maildir {source.name}", lambda s=source: _maildir(s, Path(config.base_dir))))  # type: ignore[misc]
    checks.append(("outbound", lambda: _outbound(config)))
    if config.tracking.enabled:
        checks.append(("tracking", lambda: _tracking(config)))
    if config.rules.enabled:
        checks.append(("rules", lambda: _rules(config)))
    results = []
    for what, check in checks:
        try:
            results.append(Probe(what, True, check()))
        except Exception as exc:  # every failure is a line of the report, not a traceback
            results.append(Probe(what, False, _reason(exc)))
    return results


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (ConfigError, ValueError, LookupError, FileNotFoundError)):
        return text
    return f"{type(exc).__name__}: {text}"


def _database(config: Config) -> str:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from maild.store.db import HEAD_REVISION, Database

    db = Database(config.database_url)
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # reachable at all (revision() reads "no schema" into any error)
        revision = db.revision()
    finally:
        db.dispose()
    url = make_url(config.database_url).render_as_string(hide_password=True)
    if revision is None:
        return f"{url}: reachable, no schema yet (created on the first start)"
    state = "current" if revision == HEAD_REVISION else f"will be upgraded to {HEAD_REVISION} on start"
    return f"{url}: schema {revision} ({state})"


def _imap(source: ImapSourceConfig, base_dir: Path) -> str:
    from maild.imap.connection import connect, quietly_logout
    from maild.imap.folders import folder_exists

    cfg = source.model_copy(update={"timeout": min(source.timeout, PROBE_TIMEOUT)})
    client = connect(cfg, base_dir)
    try:
        found = []
        for folder in source.folders:
            if not folder_exists(client, folder):
                raise LookupError(f"logged in as {source.username}, but there is no folder {folder!r}")
            info = client.select_folder(folder, readonly=True)
            found.append(f"{folder} ({int(info.get(b'EXISTS', 0)):,} messages)")
        idle = "IDLE" if client.has_capability("IDLE") else "polling (no IDLE)"
    finally:
        quietly_logout(client)
    return (f"{source.host}:{source.effective_port} {source.security}, {source.auth} login as {source.username}; "
            f"{', '.join(found)}; {idle}")


def _maildir(source: MaildirSourceConfig, base_dir: Path) -> str:
    path = resolve_path(base_dir, source.path)
    missing = [name for name in ("new", "cur") if not (path / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{path} is not a Maildir (no {' or '.join(f'{m}/' for m in missing)})")
    count = sum(1 for name in ("new", "cur") for entry in (path / name).iterdir() if not entry.name.startswith("."))
    return f"{path}: {count:,} message(s)"


def _outbound(config: Config) -> str:
    cfg = config.outbound.transport
    if cfg.type == "file":
        directory = resolve_path(config.base_dir, cfg.directory)
        private_dir(directory)
        if not os.access(directory, os.W_OK):
            raise PermissionError(f"cannot write to {directory}")
        return f"file transport: .eml files into {directory} (nothing is sent)"
    from maild.outbound.sender import build_transport
    from maild.outbound.smtp import SmtpTransport

    transport = build_transport(config.model_copy(update={"outbound": config.outbound.model_copy(update={
        "transport": cfg.model_copy(update={"timeout": min(cfg.timeout, PROBE_TIMEOUT)})})}))
    assert isinstance(transport, SmtpTransport)
    greeting = asyncio.run(transport.probe())
    login = f", {cfg.auth} login as {cfg.username}" if cfg.username else ", no login"
    return f"{cfg.host}:{cfg.effective_port} {cfg.security}{login}: {greeting} (nothing sent)"


def _tracking(config: Config) -> str:
    """The secret, and the listener: the port free, or held by a running maild with this secret (its /health
    says so); held by anything else is FAILED, as `maild run` would not start."""
    from maild.tracking.server import PortUnavailable, check_port, holder_key_id
    from maild.tracking.signing import key_id, load_secret

    cfg = config.tracking
    secret = load_secret(cfg, config.base_dir)
    where = f"{cfg.listen_host}:{cfg.listen_port}"
    try:
        check_port(cfg.listen_host, cfg.listen_port)
        listener = f"{where} free"
    except PortUnavailable as exc:
        holder = holder_key_id(cfg.listen_host, cfg.listen_port) if exc.errno == errno.EADDRINUSE else None
        if holder is None:
            raise ConfigError(str(exc)) from None
        if holder != key_id(secret):
            raise ConfigError(f"tracking endpoint: {where} is held by another maild, with a different secret "
                              f"(our links would get 404 there); stop it or set tracking.listen_port") from None
        listener = f"{where} served by a running maild with this secret"
    return f"secret loaded; listens on {listener}; links point at {cfg.base_url}"


def _rules(config: Config) -> str:
    from maild.rules.loader import load_rules
    from maild.rules.webhooks import WebhookError, signing_secret

    ruleset = load_rules(config.rules_dir, timezone=config.rules.timezone,
                         webhook_secrets=config.rules.webhook_secrets)
    for name in config.rules.webhook_secrets:
        try:
            signing_secret(config, name)  # set, readable, a small regular file
        except WebhookError as exc:
            raise ConfigError(str(exc)) from None
    secrets = len(config.rules.webhook_secrets)
    loaded = f"; {secrets} webhook secret(s) loaded" if secrets else ""
    return f"{len(ruleset.rules)} rule(s) in {config.rules_dir}, valid{loaded}"
