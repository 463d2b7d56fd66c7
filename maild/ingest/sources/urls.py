"""One-off sources given on the command line as URLs.

    imap://user:password@host:port/FOLDER      plain IMAP (add ?security=starttls for STARTTLS)
    imaps://user:password@host:port/FOLDER     implicit TLS
    maildir:///absolute/path                   a local Maildir

User and password are percent-encoded (`inbox%40example.test`). Options in the query: `auth=xoauth2` (the
password is an OAuth2 bearer token), `folders=A,B` (several folders), `name=...`, `security=starttls`,
`ca_file=/path/ca.pem` (a private CA to trust), `verify_tls=false`; a maildir URL takes `name` only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError

from maild.config import ImapSourceConfig, MaildirSourceConfig


class SourceUrlError(ValueError):
    pass


IMAP_OPTIONS = ("security", "auth", "folders", "name", "ca_file", "verify_tls")
MAILDIR_OPTIONS = ("name",)


def source_from_url(url: str, index: int = 0) -> ImapSourceConfig | MaildirSourceConfig:
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    known = MAILDIR_OPTIONS if parts.scheme == "maildir" else IMAP_OPTIONS
    unknown = sorted(set(query) - set(known))
    if unknown and parts.scheme in ("maildir", "imap", "imaps"):
        raise SourceUrlError(f"{redact(url)}: unknown option {', '.join(map(repr, unknown))}; "
                             f"a {parts.scheme} URL takes {', '.join(known)}")
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
    if parts.username is None or parts.password is None:
        raise SourceUrlError(f"{redact(url)}: needs user:password@ before the host")
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
        security=security, username=user, password=unquote(parts.password),
        auth=query.get("auth", "password"), folders=folders,
        verify_tls=query.get("verify_tls", "true").lower() != "false", ca_file=query.get("ca_file"))


def redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
