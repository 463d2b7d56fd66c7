"""Folder paths for filing: render a template such as ``Customers/{{ thirdparty.name }}`` safely.

A path is a string whose ``/`` separates hierarchy levels, whatever the server's own delimiter is
(`to_server_path` turns it into the server's form). Only the ``/`` written in the template creates levels:
every string taken from the context is cleaned first (`clean_level`), so no value can bring in a level,
IMAP wildcards (``*``, ``%``), brackets (which imapclient cannot read back in a LIST), control characters,
a leading ``.``, ``-`` or ``~``, or ``..``. Non-ASCII stays as it is (NFC-normalised); imapclient encodes
folder names to modified UTF-7 on the wire, and a level stays within `MAX_LEVEL_BYTES` of that encoding.

Distinct per record: when cleaning changed a value (not just its spacing) two names could meet in one
folder ("Müller / Söhne" and "Müller - Söhne"; ``*`` and ``..``), so the level gets a stable suffix, the
``id`` of the record the value belongs to (`` ~12``), else a short digest of the value. A level cut to fit
gets one too. `compact_level` is the last resort for a name a server refuses: short, ASCII, suffixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from imapclient.imap_utf7 import encode as encode_utf7
from jinja2 import TemplateError

from maild.templates.sandbox import sandbox

MAX_PATH_CHARS = 500  # a whole path, as filing tasks record it
MAX_LEVEL_BYTES = 100  # one level, modified UTF-7 as sent (Dovecot's Maildir++ keeps a whole path in 255 bytes)
COMPACT_CHARS = 40  # the ASCII part of a `compact_level` name
SUFFIX_SEPARATOR = " ~"
UNNAMED = "unnamed"  # a level whose value cleaned away to nothing (a name such as "*" or "..")

_env = sandbox(autoescape=False, keep_trailing_newline=False)
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ALWAYS_REPLACED = {"\\": "-", "*": "-", "%": "-", "[": "(", "]": ")"}
_WHITESPACE = re.compile(r"\s+")
_DOTS = re.compile(r"\.{2,}")
_LEADING = " .-~"
# A cleaned value that lost something carries its suffix through the template between these two marks.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKED = re.compile(f"{_OPEN}([^{_OPEN}{_CLOSE}]*){_CLOSE}")
_MARKS = re.compile(f"[{_OPEN}{_CLOSE}]")
_TRANSLIT = str.maketrans({"ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe",
                           "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "Th"})
_NOT_COMPACT = re.compile(r"[^A-Za-z0-9 _~-]+")


def clean_level(value: str, *, replace: str = "/", cap: bool = True) -> tuple[str, bool]:
    """(one folder level's worth of `value`, whether cleaning lost information).

    Characters in `replace` and ``\\``, ``*``, ``%`` become ``-``; ``[`` and ``]`` become ``(`` and ``)``;
    control, private-use and bidi-override characters go (whitespace ones become spaces); runs of dots
    become one; leading spaces, dots, dashes and tildes go. Spacing is collapsed and stripped without
    counting as a loss. With `cap`, the result is cut to `MAX_LEVEL_BYTES` on the wire.
    """
    text = unicodedata.normalize("NFC", value)
    out = []
    lost = False
    for char in text:
        if char in replace or char in _ALWAYS_REPLACED:
            out.append(_ALWAYS_REPLACED.get(char, "-"))
            lost = True
        elif char.isspace():
            out.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cs", "Co") or char in _BIDI_CONTROLS:
            lost = True
        else:
            out.append(char)
    text = _WHITESPACE.sub(" ", "".join(out)).strip()
    undotted = _DOTS.sub(".", text)
    stripped = undotted.lstrip(_LEADING)
    lost = lost or stripped != text
    if cap:
        capped = shorten(stripped, MAX_LEVEL_BYTES)
        lost = lost or capped != stripped
        stripped = capped
    return stripped, lost


def sanitize_name(value: str, *, replace: str = "/") -> str:
    """`clean_level`'s text alone: one folder level, without the suffix that marks a loss."""
    return clean_level(value, replace=replace)[0]


def folder_for(template: str, context: Mapping[str, Any]) -> str:
    """Render `template` with `context` into a folder path (levels joined with ``/``).

    Raises ValueError when the template does not parse or render (an unknown variable included:
    undefined names are errors, not empty strings), when the result has no level at all, or more than
    `MAX_PATH_CHARS` characters.
    """
    try:
        rendered = _env.from_string(template).render(_sanitize_value(dict(context), None))
    except TemplateError as exc:
        raise ValueError(f"folder template {template!r}: {exc}") from exc
    except Exception as exc:  # e.g. {{ 1 / 0 }} or a filter applied to the wrong type
        raise ValueError(f"folder template {template!r}: {type(exc).__name__}: {exc}") from exc
    levels = [_finish_level(level) for level in rendered.split("/")]
    levels = [level for level in levels if level]
    if not levels:
        raise ValueError(f"folder template {template!r} renders to an empty folder name")
    path = "/".join(levels)
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"folder template {template!r} renders to a path of {len(path)} characters "
                         f"(at most {MAX_PATH_CHARS})")
    return path


def wire_length(text: str) -> int:
    """Bytes of `text` as an IMAP folder name on the wire (modified UTF-7)."""
    return len(encode_utf7(text))


def shorten(text: str, max_bytes: int) -> str:
    """`text` cut (at the end, then stripped of trailing spaces, dots, dashes) to `max_bytes` on the wire."""
    if wire_length(text) <= max_bytes:
        return text
    text = text[:max_bytes]  # a character is at least one byte
    while text and wire_length(text) > max_bytes:
        text = text[:-1]
    return text.rstrip(" .-")


def digest(text: str, length: int = 6) -> str:
    """A short, stable fingerprint of `text` (hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def ascii_fold(text: str) -> str:
    """`text` with letters stripped of their accents (Müller -> Muller, Straße -> Strasse)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def compact_level(level: str) -> str:
    """`level` as a short ASCII name (letters, digits, space, ``_``, ``-``, ``~``) with a stable suffix.

    For a server that refused the name as it was. A level that already is such a name stays as it is.
    """
    ascii_text = _WHITESPACE.sub(" ", _NOT_COMPACT.sub("-", ascii_fold(level))).strip().lstrip(_LEADING)
    if ascii_text == level and len(level) <= COMPACT_CHARS:
        return level
    return (ascii_text[:COMPACT_CHARS].rstrip(" -_~") or "folder") + "~" + digest(level, 8)


def _finish_level(rendered: str) -> str:
    """One rendered level: the template's own text cleaned, the marked values' suffixes appended once."""
    suffixes = list(dict.fromkeys(found.lower() for found in _MARKED.findall(rendered) if found))
    text, _ = clean_level(_MARKS.sub("", _MARKED.sub("", rendered)), replace="", cap=False)
    if not suffixes:
        if wire_length(text) <= MAX_LEVEL_BYTES:
            return text
        suffixes = [digest(text)]
    tail = "".join(SUFFIX_SEPARATOR + suffix for suffix in suffixes)
    return shorten(text or UNNAMED, MAX_LEVEL_BYTES - wire_length(tail)) + tail


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


def _sanitize_value(value: Any, owner: int | None) -> Any:
    """The context with every string cleaned, containers walked, records turned into dicts.

    A string that cleaning changed carries a suffix mark: the `id` of the nearest record around it, or a
    digest of the string when there is none.
    """
    if isinstance(value, str):
        text, lost = clean_level(value)
        if not lost:
            return text
        return f"{text}{_OPEN}{owner if owner is not None else digest(value)}{_CLOSE}"
    if value is None or isinstance(value, bool | int | float | date | datetime):
        return value
    if isinstance(value, Mapping):
        record_id = value.get("id")
        if isinstance(record_id, int) and not isinstance(record_id, bool):
            owner = record_id
        return {key: _sanitize_value(item, owner) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_sanitize_value(item, owner) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _sanitize_value(dataclasses.asdict(value), owner)
    if hasattr(value, "model_dump"):  # pydantic / SQLModel rows such as ThirdParty
        return _sanitize_value(value.model_dump(), owner)
    return _sanitize_value(str(value), owner)
