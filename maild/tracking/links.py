"""Instrumenting outbound HTML: click links through the tracking endpoint, and an open pixel.

Each http(s) `href` of an `<a>` or `<area>` becomes `{base_url}/c/<signed>`; the original URL is stored in
`tracking_links` under (token, link index), and the click endpoint redirects only to that stored URL.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from html.parser import HTMLParser

from sqlalchemy import Connection, select

from maild.store.db import Database
from maild.store.models import TrackingLink
from maild.tracking.signing import sign

# One attribute inside a start tag, as html.parser's tolerant scanner reads it.
_ATTR = re.compile(r"""((?<=['"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*))?(?:\s|/(?!>))*""")
_TAG_NAME = re.compile(r"<[a-zA-Z][^\t\n\r\f />\x00]*(?:\s|/(?!>))*")
_HTTP = re.compile(r"https?://", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class _Tags(HTMLParser):
    """Collects (offset, raw text) of every <a>/<area> start tag, skipping comments, scripts and styles."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.tags: list[tuple[int, str]] = []
        self._line_starts = [0]
        for index, char in enumerate(text):
            if char == "\n":
                self._line_starts.append(index + 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            raw = self.get_starttag_text()
            if raw:
                line, column = self.getpos()
                self.tags.append((self._line_starts[line - 1] + column, raw))

    handle_startendtag = handle_starttag


def _rewrite_tag(raw: str, replace: Callable[[str], str | None]) -> str:
    """The start tag with its first href value passed through `replace` (which may return None: keep)."""
    name = _TAG_NAME.match(raw)
    if not name:
        return raw
    position = name.end()
    while True:
        match = _ATTR.match(raw, position)
        if not match or match.end() == position:
            return raw
        if match.group(1).lower() == "href" and match.group(3) is not None:
            quoted = match.group(3)
            value = quoted[1:-1] if quoted[:1] in ("'", '"') else quoted
            new = replace(html.unescape(value))
            if new is None:
                return raw
            start, end = match.span(3)
            return f'{raw[:start]}"{html.escape(new, quote=True)}"{raw[end:]}'
        position = match.end()


def instrument(db: Database, html_text: str, token: str, base_url: str, secret: bytes) -> str:
    """`html_text` with tracked links and an open pixel; the links are stored for `token` (idempotent)."""
    result, urls = rewrite(html_text, token, base_url, secret)
    if urls:
        store_links(db, [(token, urls)])
    return result


def rewrite(html_text: str, token: str, base_url: str, secret: bytes) -> tuple[str, list[str]]:
    """`html_text` with tracked links and an open pixel, and the original URLs (link i is urls[i]).

    Nothing is stored: the caller stores the URLs (`store_links`) before the mail can be sent.
    """
    base = base_url.rstrip("/")
    parser = _Tags(html_text)
    parser.feed(html_text)
    parser.close()

    urls: list[str] = []

    def replace(url: str) -> str | None:
        url = url.strip()
        if not _HTTP.match(url) or url.startswith((f"{base}/c/", f"{base}/o/")):
            return None
        urls.append(url)
        return f"{base}/c/{sign(secret, 'c', token, len(urls) - 1)}"

    pieces: list[str] = []
    done = 0
    for offset, raw in parser.tags:
        if html_text.startswith(raw, offset) and offset >= done:
            pieces += [html_text[done:offset], _rewrite_tag(raw, replace)]
            done = offset + len(raw)
    pieces.append(html_text[done:])
    result = "".join(pieces)

    src = html.escape(f"{base}/o/{sign(secret, 'o', token, None)}", quote=True)
    pixel = f'<img src="{src}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px" />'
    ends = list(_BODY_END.finditer(result))
    if ends:
        at = ends[-1].start()
        return result[:at] + pixel + result[at:], urls
    return result + pixel, urls


def store_links(db: Database, links: Sequence[tuple[str, Sequence[str]]], conn: Connection | None = None) -> None:
    """Store each (token, urls) in one transaction (or in `conn`'s); idempotent for the same URLs.

    Raises ValueError if a token already has different URLs (the transaction then rolls back).
    """
    rows = [{"token": token, "link": index, "url": url} for token, urls in links for index, url in enumerate(urls)]
    if not rows:
        return
    if conn is None:
        with db.engine.begin() as own:
            store_links(db, links, own)
        return
    table = TrackingLink.__table__
    returned = conn.execute(db.insert_ignore(table).returning(table.c.token, table.c.link), rows)
    inserted = {(token, link) for token, link in returned}
    others = [row for row in rows if (row["token"], row["link"]) not in inserted]
    if not others:
        return
    tokens = sorted({row["token"] for row in others})  # already stored: the same URL (idempotent) or a clash
    stored = {(token, link): url for token, link, url in conn.execute(
        select(table.c.token, table.c.link, table.c.url).where(table.c.token.in_(tokens)))}
    clashes = [(row["token"], row["link"]) for row in others if stored.get((row["token"], row["link"])) != row["url"]]
    if clashes:
        raise ValueError(f"token {clashes[0][0]!r} already has different links stored (links {clashes[:5]})")
