"""Folder paths for filing: render a template such as ``Customers/{{ thirdparty.name }}`` safely.

A path is a string whose ``/`` separates hierarchy levels, whatever the server's own delimiter is
(`to_server_path` turns it into the server's form). Only the ``/`` written in the template creates levels:
every string taken from the context is sanitised first, so a customer called "Müller / Söhne GmbH" becomes
ONE level "Müller - Söhne GmbH", and no value can bring in IMAP wildcards (``*``, ``%``), control
characters or a ``.``/``..`` level. Non-ASCII stays as it is (NFC-normalised); imapclient encodes folder
names to modified UTF-7 on the wire.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

MAX_LEVEL_CHARS = 100

_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_REPLACED = re.compile(r"[/\\*%]")
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WHITESPACE = re.compile(r"\s+")


def sanitize_name(value: str, *, replace: str = "/\\*%") -> str:
    """One folder level's worth of text: no hierarchy separators, wildcards, control characters.

    Characters in `replace` (and ``\\``, ``*``, ``%``) become ``-``; control and bidi-override characters
    go (whitespace ones become spaces); runs of whitespace collapse to one space; the result is stripped,
    capped at `MAX_LEVEL_CHARS` and never ``.``-only (``.``/``..`` would mean "this"/"parent" to some
    servers): such a name becomes ``-``.
    """
    text = unicodedata.normalize("NFC", value)
    out = []
    for char in text:
        if char in replace or char in "\\*%":
            out.append("-")
        elif char.isspace():
            out.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS:
            continue
        else:
            out.append(char)
    text = _WHITESPACE.sub(" ", "".join(out)).strip()
    text = text[:MAX_LEVEL_CHARS].rstrip()
    if text and set(text) == {"."}:
        return "-"
    return text


def folder_for(template: str, context: Mapping[str, Any]) -> str:
    """Render `template` with `context` into a folder path (levels joined with ``/``).

    Raises ValueError when the template does not parse or render (an unknown variable included:
    undefined names are errors, not empty strings) or when the result has no level at all.
    """
    try:
        rendered = _env.from_string(template).render(_sanitize_value(dict(context)))
    except TemplateError as exc:
        raise ValueError(f"folder template {template!r}: {exc}") from exc
    except Exception as exc:  # e.g. {{ 1 / 0 }} or a filter applied to the wrong type
        raise ValueError(f"folder template {template!r}: {type(exc).__name__}: {exc}") from exc
    levels = [sanitize_name(level, replace="") for level in rendered.split("/")]
    levels = [level for level in levels if level]
    if not levels:
        raise ValueError(f"folder template {template!r} renders to an empty folder name")
    return "/".join(levels)


def split_path(path: str) -> list[str]:
    """The non-empty, stripped levels of a ``/``-separated path."""
    return [level.strip() for level in path.split("/") if level.strip()]


def to_server_path(path: str, delimiter: str | None) -> str:
    """`path` (levels separated by ``/``) with the server's hierarchy delimiter between the levels.

    A delimiter character inside a level (say ``.`` on a server whose delimiter is ``.``) would create
    a level of its own, so it becomes ``-``. A server without hierarchy (delimiter None) takes only
    one-level paths.
    """
    levels = split_path(path)
    if not levels:
        raise ValueError("empty folder path")
    if not delimiter:
        if len(levels) > 1:
            raise ValueError(f"the server has no folder hierarchy; cannot create {path!r}")
        return levels[0]
    if delimiter != "/":
        levels = [level.replace(delimiter, "-") for level in levels]
    return delimiter.join(levels)


def _sanitize_value(value: Any) -> Any:
    """The context with every string sanitised, containers walked, records turned into dicts."""
    if isinstance(value, str):
        return sanitize_name(value)
    if value is None or isinstance(value, bool | int | float | date | datetime):
        return value
    if isinstance(value, Mapping):
        return {key: _sanitize_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_sanitize_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _sanitize_value(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):  # pydantic / SQLModel rows such as ThirdParty
        return _sanitize_value(value.model_dump())
    return sanitize_name(str(value))
