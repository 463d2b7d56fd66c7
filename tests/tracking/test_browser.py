"""The tracking endpoint as a reader's browser meets it: Debian's Chromium (headless, driven by Playwright) shows
an HTML mail with maild's tracked links and open pixel, loads the pixel, and follows a click through maild's
redirect to the real page; a forged link ends at 404 with nothing recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from maild.tracking.links import instrument
from tests.support.browser import chromium
from tests.support.http_server import LocalHttpServer, Reply
from tests.tracking.support import SECRET, TOKEN, Endpoint

PERSON = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 "
          "Safari/537.36")


PAGE = b"<html><head><title>Our offer</title></head><body><h1>Offer 1</h1></body></html>"


@pytest.fixture
def shop() -> Iterator[LocalHttpServer]:
    """The site a mail links to."""
    with LocalHttpServer(lambda request: Reply(200, PAGE, "text/html; charset=utf-8")) as server:
        yield server


def _asked(shop: LocalHttpServer) -> list[str]:
    """The paths the browser asked the shop for (not its own /favicon.ico)."""
    return [r.path for r in shop.requests if r.path != "/favicon.ico"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def _mail(endpoint: Endpoint, shop: LocalHttpServer) -> str:
    endpoint.add_outbox(TOKEN)  # sent half an hour ago
    html = (f'<html><body><p>Dear Anna, see <a id="offer" href="{shop.url}/offer?id=1&amp;x=2">our offer</a>.</p>'
            "</body></html>")
    return instrument(endpoint.db, html, TOKEN, endpoint.base_url, SECRET)


def test_a_person_opens_the_mail_and_clicks_through_to_the_page(endpoint: Endpoint, shop: LocalHttpServer,
                                                                browser: Any) -> None:
    context = browser.new_context(user_agent=PERSON)
    try:
        page = context.new_page()
        mail = _mail(endpoint, shop)
        page.set_content(mail, wait_until="load")  # the mail client shows it: the pixel loads
        [opened] = endpoint.events("mail.opened", at_least=1)
        assert opened.data["user_agent"] == PERSON and opened.data["machine"] is None
        with page.expect_navigation():
            page.click("#offer")
        assert page.url == f"{shop.url}/offer?id=1&x=2" and page.title() == "Our offer"
        assert _asked(shop) == ["/offer?id=1&x=2"]
        [clicked] = endpoint.events("mail.clicked", at_least=1)
        assert clicked.data["url"] == f"{shop.url}/offer?id=1&x=2" and clicked.data["machine"] is None

        link = _tracked_link(mail)
        assert link.startswith(endpoint.base_url) and shop.url not in link  # the mail names only maild's URL
        forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        response = page.goto(forged)
        assert response is not None and response.status == 404
        assert len(endpoint.events("mail.clicked")) == 1 and _asked(shop) == ["/offer?id=1&x=2"]
    finally:
        context.close()


def test_a_headless_scanner_is_flagged_not_dropped(endpoint: Endpoint, shop: LocalHttpServer, browser: Any) -> None:
    page = browser.new_page()  # Chromium's own headless user agent, as link scanners run it
    try:
        page.set_content(_mail(endpoint, shop), wait_until="load")
        with page.expect_navigation():
            page.click("#offer")
        assert page.title() == "Our offer"
        [opened] = endpoint.events("mail.opened", at_least=1)
        [clicked] = endpoint.events("mail.clicked", at_least=1)
        assert "HeadlessChrome" in opened.data["user_agent"]
        assert opened.data["machine"] == clicked.data["machine"] == "scanner:headless"
    finally:
        page.close()


def _tracked_link(html: str) -> str:
    start = html.index('<a id="offer" href="') + len('<a id="offer" href="')
    return html[start:html.index('"', start)].replace("&amp;", "&")
