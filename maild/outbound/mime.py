"""MIME bytes for outbound mail, written directly: 7-bit clean, CRLF, headers folded below 78 characters.

`compose` (the only caller) validates every value first (no CR, LF or NUL reaches this module); this
module only encodes: RFC 2047 encoded words for non-ASCII header text, quoted strings for display names,
IDNA for non-ASCII domains, RFC 2231 for attachment file names, quoted-printable for non-ASCII or
long-lined text, base64 for attachments. It does what `EmailMessage(policy=policy.SMTP)` did for these
messages, without the header registry's parsing of every value, which cost milliseconds per mail.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from urllib.parse import quote

MAX_LINE = 78
MAX_HARD_LINE = 998
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")
_ATOM = re.compile(rf"{_ATEXT}\Z")
_PHRASE_SAFE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*\Z")
_TOKEN = re.compile(r"[A-Za-z0-9!#$&^_.+\-]+\Z")
_FILENAME_SAFE = re.compile(r"[A-Za-z0-9 !#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~]*\Z")
_B_PREFIX, _B_SUFFIX = "=?utf-8?b?", "?="


def encoded_words(text: str, first_room: int) -> list[str]:
    """`text` as RFC 2047 base64 encoded words, each fitting its line (the first after `first_room`)."""
    words: list[str] = []
    room = max(first_room, 24)
    chunk = bytearray()
    for ch in text:
        data = ch.encode("utf-8")
        limit = (room - len(_B_PREFIX) - len(_B_SUFFIX)) // 4 * 3
        if chunk and len(chunk) + len(data) > limit:
            words.append(_B_PREFIX + base64.b64encode(bytes(chunk)).decode("ascii") + _B_SUFFIX)
            chunk = bytearray()
            room = MAX_LINE - 1
        chunk += data
    words.append(_B_PREFIX + base64.b64encode(bytes(chunk)).decode("ascii") + _B_SUFFIX)
    return words


def fold(name: str, pieces: Sequence[str]) -> str:
    """`Name: piece piece ...` with CRLF before the space of a piece that would not fit on its line.

    Unfolding (removing the CRLFs) gives back the pieces joined by single spaces.
    """
    lines: list[str] = []
    line = f"{name}:"
    for index, piece in enumerate(pieces):
        if index and piece and len(line) + 1 + len(piece) > MAX_LINE:
            lines.append(line)
            line = " " + piece
        else:
            line = f"{line} {piece}"
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def unstructured(name: str, value: str) -> str:
    """A Subject-like header: plain ASCII folded at spaces, anything else as encoded words."""
    words = value.split(" ")
    if value.isascii() and "=?" not in value and all(len(w) < MAX_HARD_LINE - len(name) - 4 for w in words) \
            and value.strip(" \t") == value and not any(c in value for c in "\t\x0b\x0c"):
        return fold(name, words)
    return fold(name, encoded_words(value, MAX_LINE - len(name) - 2))


def addr_spec(local: str, domain: str) -> str:
    """`local@domain` on the wire: local part as a dot-atom or quoted string (ASCII only), IDNA domain."""
    if not local.isascii():
        raise ValueError(f"non-ASCII local part {local!r} needs SMTPUTF8, which maild does not send")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"not a valid domain: {domain!r}: {exc}") from None
    if not _DOT_ATOM.match(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"


def mailbox_pieces(display_name: str, spec: str) -> list[str]:
    """One mailbox as foldable pieces: the display name (atoms, a quoted string or encoded words), `<spec>`.

    Non-ASCII words become encoded words, consecutive ones together with the spaces between them (a
    decoder drops the whitespace between two encoded words); plain ASCII words stay as they are.
    """
    if not display_name:
        return [spec]
    tokens = display_name.split(" ")
    if display_name.isascii() and "=?" not in display_name:
        if _PHRASE_SAFE.match(display_name) and "" not in tokens:
            return [*tokens, f"<{spec}>"]
        quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
        return [f'"{quoted}"', f"<{spec}>"]
    if "" in tokens:  # leading, trailing or repeated spaces: keep them inside one run of encoded words
        return [*encoded_words(display_name, MAX_LINE - 12), f"<{spec}>"]
    pieces: list[str] = []
    run: list[str] = []
    for token in [*tokens, None]:
        if token is None or (_ATOM.match(token) and "=?" not in token):
            if run:
                pieces += encoded_words(" ".join(run), MAX_LINE - 12)
                run = []
            if token is not None:
                pieces.append(token)
        else:
            run.append(token)
    return [*pieces, f"<{spec}>"]


def address_header(name: str, mailboxes: Sequence[list[str]]) -> str:
    """`To: a, b` with each mailbox's pieces; a fold may come between pieces or after a comma."""
    pieces: list[str] = []
    for index, mailbox in enumerate(mailboxes):
        if index:
            pieces[-1] += ","
        pieces += mailbox
    return fold(name, pieces)


def text_part(subtype: str, text: str) -> bytes:
    """A text/<subtype> part in UTF-8: 7bit if plain ASCII with short lines, else quoted-printable."""
    lines = text.encode("utf-8").splitlines()
    if all(len(line) <= MAX_HARD_LINE and line.isascii() for line in lines):
        cte, body = "7bit", b"\r\n".join(lines) + b"\r\n"
    else:
        cte = "quoted-printable"
        body = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True).replace(b"\n", b"\r\n")
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    return head.encode("ascii") + body


def attachment_part(filename: str, content_type: str, data: bytes) -> bytes:
    maintype, _, subtype = content_type.partition("/")
    if not (_TOKEN.match(maintype) and _TOKEN.match(subtype)):
        maintype, subtype = "application", "octet-stream"
    head = (f"Content-Type: {maintype.lower()}/{subtype.lower()}\r\nContent-Transfer-Encoding: base64\r\n"
            f"{_disposition(filename)}\r\n")
    return head.encode("ascii") + base64.encodebytes(data).replace(b"\n", b"\r\n")


def _disposition(filename: str) -> str:
    if len(filename) <= 60 and _FILENAME_SAFE.match(filename):
        escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
        return f'Content-Disposition: attachment; filename="{escaped}"\r\n'
    encoded = quote(filename.encode("utf-8"), safe="!#$&+-.^_`|~")
    if len(encoded) <= 50:
        return f"Content-Disposition: attachment;\r\n filename*=utf-8''{encoded}\r\n"
    chunks: list[str] = []  # RFC 2231 continuations, never splitting a %XX escape
    rest = encoded
    while rest:
        cut = min(len(rest), 50)
        while cut < len(rest) and "%" in rest[max(0, cut - 2):cut]:
            cut -= 1
        chunks.append(rest[:cut])
        rest = rest[cut:]
    params = [f" filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{chunk}" for i, chunk in enumerate(chunks)]
    return "Content-Disposition: attachment;\r\n" + ";\r\n".join(params) + "\r\n"


def multipart(subtype: str, parts: Sequence[bytes]) -> tuple[str, bytes]:
    """(Content-Type value, body) with a random boundary that occurs in none of the parts."""
    while True:
        boundary = "=_maild_" + secrets.token_hex(16)
        marker = boundary.encode("ascii")
        if not any(marker in part for part in parts):
            break
    body = b"".join(b"--" + marker + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + marker + b"--\r\n"
    return f'multipart/{subtype};\r\n boundary="{boundary}"', body


def entity(part_or_multipart: bytes | tuple[str, bytes]) -> bytes:
    """A (sub)entity: a leaf part as is, a multipart as its Content-Type header and body."""
    if isinstance(part_or_multipart, bytes):
        return part_or_multipart
    content_type, body = part_or_multipart
    return f"Content-Type: {content_type}\r\n\r\n".encode("ascii") + body
