"""One-off sources given on the command line as URLs.

    imap://user@host:port/FOLDER?password_file=FILE   plain IMAP (add ?security=starttls for STARTTLS)
    imaps://user@host:port/FOLDER?password_env=VAR    implicit TLS
    maildir:///absolute/path                          a local Maildir

The password comes from `password_file` (read again at each login, so rotation works; relative to the current
folder) or the environment variable `password_env`. `user:password@` works too but is warned about: a command
line is visible to every local user (`ps`). User and password are percent-encoded (`inbox%40example.test`).
More options in the query: `auth=xoauth2` (the secret is an OAuth2 bearer token), `folders=A,B` (several
folders), `name=...`, `security=starttls`, `ca_file=/path/ca.pem` (a private CA to trust), `verify_tls=false`,
`max_connections=N` (the account's connection limit); a maildir URL takes `name` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError

from maild.config import ConfigError, ImapSourceConfig, MaildirSourceConfig, read_secret


class SourceUrlError(ValueError):
    pass


IMAP_OPTIONS = ("security", "auth", "folders", "name", "ca_file", "verify_tls", "password_file", "password_env",
                "max_connections")
SECRET_HELP = "?password_file=FILE or ?password_env=VARIABLE"
MAILDIR_OPTIONS = ("name",)


def source_from_url(url: str, index: int = 0) -> ImapSourceConfig | MaildirSourceConfig:
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    known = MAILDIR_OPTIONS if parts.scheme == "maildir" else IMAP_OPTIONS
    unknown = sorted(set(query) - set(known))
    if unknown and parts.scheme in ("maildir", "imap", "imaps"):
        article = "an" if parts.scheme.startswith("i") else "a"
        raise SourceUrlError(f"{redact(url)}: unknown option {', '.join(map(repr, unknown))}; "
                             f"{article} {parts.scheme} URL takes {', '.join(known)}")
    try:
        if parts.scheme == "maildir":
            path = unquote(parts.netloc + parts.path)
            if not path:
                raise SourceUrlError(f"{redact(url)}: a maildir URL needs a path, e.g. maildir:///var/mail/me")
            return MaildirSourceConfig(type="maildir", name=query.get("name", f"maildir-{index + 1}"), path=path)
        if parts.scheme in ("imap", "imaps"):
            return _imap(parts, query, index, url)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SourceUrlError(f"{redact(url)}: {problems}") from None
    raise SourceUrlError(f"{redact(url)}: unknown scheme {parts.scheme!r}; use imap://, imaps:// or maildir:///")


def _imap(parts: Any, query: dict[str, str], index: int, url: str) -> ImapSourceConfig:
    if not parts.hostname:
        raise SourceUrlError(f"{redact(url)}: no host")
    if not parts.username:
        raise SourceUrlError(f"{redact(url)}: needs user@ before the host, and the password in {SECRET_HELP}")
    password_file, password_env = query.get("password_file"), query.get("password_env")
    given = [name for name, value in (("user:password@", parts.password), ("password_file", password_file),
                                      ("password_env", password_env)) if value is not None]
    if len(given) != 1:
        raise SourceUrlError(f"{redact(url)}: " + (f"needs a password: {SECRET_HELP}" if not given else
                                                   f"give one password, not {' and '.join(given)}"))
    if password_file is not None:
        password_file = os.path.abspath(os.path.expanduser(password_file))  # the user's folder, not the config's
    try:  # there and readable now (it is read again at each login)
        read_secret(redact(url), password_env, password_file, Path.cwd())
    except ConfigError as exc:
        raise SourceUrlError(str(exc)) from None
    try:
        port = parts.port
    except ValueError as exc:
        raise SourceUrlError(f"{redact(url)}: {exc}") from None
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    folders = [f for f in query.get("folders", folder).split(",") if f]
    security = "tls" if parts.scheme == "imaps" else query.get("security", "plain")
    user = unquote(parts.username)
    return ImapSourceConfig(
        type="imap", name=query.get("name", f"{user}@{parts.hostname}"), host=parts.hostname, port=port,
        security=security, username=user, auth=query.get("auth", "password"), folders=folders,
        password=None if parts.password is None else unquote(parts.password),
        password_file=password_file, password_env=password_env,
        verify_tls=query.get("verify_tls", "true").lower() != "false", ca_file=query.get("ca_file"),
        **({"max_connections": query["max_connections"]} if "max_connections" in query else {}))


def password_warning(url: str) -> str | None:
    """The warning for a URL that carries its password (None when it does not)."""
    if urlsplit(url).password is None:
        return None
    return (f"{redact(url)}: the password on the command line is visible to every local user (ps, /proc); "
            f"put it in a file or a variable: {SECRET_HELP}")


def redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
