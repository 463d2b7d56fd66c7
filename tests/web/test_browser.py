"""The web app in a real browser (Debian's Chromium via Playwright): log in, find a customer, read the timeline, open
a hostile HTML mail (nothing runs, no request leaves for anywhere but maild), assign a triage mail and see the
sender's next mail filed to the customer, retry a failed outbox row, search; and reading with JavaScript off."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from maild.daemon import Daemon
from maild.tracking.server import TrackingServer
from maild.web.server import start_web
from tests.helpers import make_message
from tests.support.browser import chromium
from tests.support.http_server import LocalHttpServer, Reply
from tests.web.support import PASSWORDS, Seeded, Site, seed

WAIT = 60_000  # ms: generous, the machine is loaded


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def canary() -> Iterator[LocalHttpServer]:
    """Where the hostile mail tries to load and send things: it must never be asked anything."""
    with LocalHttpServer(lambda request: Reply(200, b"pwned", "text/plain")) as server:
        yield server


@pytest.fixture
def served(site: Site, canary: LocalHttpServer) -> Iterator[tuple[Site, Seeded, str]]:
    data = seed(site, canary=canary.url)
    server: TrackingServer = start_web(site.config, site.db)
    try:
        yield site, data, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _log_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/customers", timeout=WAIT)
    assert "/login" in page.url
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}/customers", timeout=WAIT)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_day_in_the_office(served: tuple[Site, Seeded, str], canary: LocalHttpServer, browser: Any) -> None:
    site, data, base = served
    context = browser.new_context()
    requests: list[str] = []
    blocked: dict[str, str] = {}
    context.on("request", lambda request: requests.append(request.url))
    context.on("requestfailed", lambda request: blocked.__setitem__(request.url, request.failure or ""))
    page = context.new_page()
    page.set_default_timeout(WAIT)
    try:
        _log_in(page, base, "sam")
        # find a customer, read the timeline
        page.fill("input[name=q]", "Müller")
        page.click("button:has-text('Find')")
        page.click("text=Müller Bau GmbH")
        page.wait_for_url(f"{base}/customers/{data.customer_id}")
        timeline = page.inner_text("#timeline")
        assert "Angebot Dachsanierung" in timeline and "Hostile newsletter" in timeline

        # a hostile HTML mail: shown, but no script runs and nothing is fetched from elsewhere
        page.goto(f"{base}/messages/{data.hostile_id}")
        frame = page.frame_locator("iframe.mailbody")
        assert frame.locator("#greeting").inner_text() == "Hello from a customer"
        frame.locator("#js").click()  # a javascript: link does nothing
        page.wait_for_load_state("load")
        assert page.title() == "Hostile newsletter · maild"
        assert page.url == f"{base}/messages/{data.hostile_id}"
        assert canary.requests == []
        # The browser may announce a request it then refuses: each one for elsewhere was refused by the policy
        # before it left (and the canary, the only other server, was asked nothing).
        elsewhere = [url for url in requests if not url.startswith(base)]
        assert len(elsewhere) >= 5 and all(blocked.get(url) == "csp" for url in elsewhere), (elsewhere, blocked)

        # triage: assign with learn, then the sender's next mail goes to the customer by itself
        page.goto(f"{base}/triage")
        page.check(f"input[name=message][value='{data.triage_id}']")
        page.fill("input[name=thirdparty]", "C-1")
        page.click("button:has-text('Assign the chosen mail')")
        page.wait_for_selector("text=Triage is empty")
        box = mailbox.Maildir(str(data.maildir))
        box.add(make_message(subject="Noch eine Frage zu den Ziegel-Preisen", sender="karl@unknown-roofing.example"))
        assert not Daemon(site.config, site.db).ingest_once().errors
        page.goto(f"{base}/customers/{data.customer_id}?kind=mail_in")
        assert "Noch eine Frage zu den Ziegel-Preisen" in page.inner_text("#timeline")
        assert "[address:" in page.inner_text("#timeline")

        # retry a failed outbox row (htmx swaps the row in place)
        page.goto(f"{base}/outbox?status=failed")
        row = page.locator(f"#outbox-{data.failed_outbox_id}")
        assert "550 mailbox unavailable" in row.inner_text()
        row.locator("button:has-text('Retry')").click()
        page.wait_for_selector(f"#outbox-{data.failed_outbox_id} td.status:has-text('queued')")
        assert page.url == f"{base}/outbox?status=failed"  # swapped in place, no navigation

        # search
        page.goto(f"{base}/search")
        page.fill("input[name=q]", "Ziegel")
        page.click("button:has-text('Search')")
        hits = page.inner_text("#hits")
        assert "Frage zur Lieferung" in hits and "Noch eine Frage zu den Ziegel-Preisen" in hits
        assert canary.requests == []
    finally:
        context.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_reading_works_with_javascript_off(served: tuple[Site, Seeded, str], browser: Any) -> None:
    _site, data, base = served
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(WAIT)
    try:
        _log_in(page, base, "vic")
        page.goto(f"{base}/customers/{data.customer_id}")
        assert page.locator("#timeline tr.event").count() == 5  # four mails in, the refused send
        page.goto(f"{base}/messages/{data.hostile_id}")
        assert "The text part of the hostile mail." in page.inner_text("pre.mailtext")
        page.goto(f"{base}/search?q=Angebot")
        assert page.locator("#hits li").count() == 3
    finally:
        context.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_older_timeline_entries_load_in_place(tmp_path: Path, db: Any, browser: Any) -> None:
    from tests.web.support import make_site

    site = make_site(tmp_path, db, page_size=2)
    data = seed(site)
    server = start_web(site.config, site.db)
    base = f"http://127.0.0.1:{server.port}"
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT)
    try:
        _log_in(page, base, "vic")
        page.goto(f"{base}/customers/{data.customer_id}")
        assert page.locator("#timeline tr.event").count() == 2
        page.click("a.more")
        expect(page.locator("#timeline tr.event")).to_have_count(4, timeout=WAIT)  # no eval: the page's CSP forbids it
        assert page.url == f"{base}/customers/{data.customer_id}"  # appended in place
        page.click("a.more")
        expect(page.locator("#timeline tr.event")).to_have_count(5, timeout=WAIT)  # no eval: the page's CSP forbids it
        assert page.locator("a.more").count() == 0  # the oldest entry is shown: no more link
        texts = page.locator("#timeline tr.event").all_inner_texts()
        assert len(set(texts)) == 5
    finally:
        context.close()
        server.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pages_show_times_in_the_office_time_zone_and_the_api_in_utc(site: Site, browser: Any) -> None:
    site.config = site.config.model_copy(update={"rules": site.config.rules.model_copy(
        update={"timezone": "Europe/Berlin"})})
    data = seed(site)  # the hostile mail's Date: 2026-11-21 09:30 UTC, 10:30 in Berlin (winter time, CET)
    server: TrackingServer = start_web(site.config, site.db)
    base = f"http://127.0.0.1:{server.port}"
    context = browser.new_context(timezone_id="America/New_York")  # the browser's own zone plays no part
    page = context.new_page()
    page.set_default_timeout(WAIT)
    try:
        _log_in(page, base, "sam")
        page.goto(f"{base}/messages/{data.hostile_id}")
        assert page.inner_text("tr:has(th:text-is('Date')) td") == "2026-11-21 10:30 CET"
        page.goto(f"{base}/search?q=Hostile")
        assert "2026-11-21 10:30 CET" in page.inner_text("#hits")
        page.goto(f"{base}/customers/{data.customer_id}")
        times = page.locator("#timeline td.when").all_inner_texts()
        assert times and all(t.endswith((" CET", " CEST")) for t in times), times
        answer = page.request.get(f"{base}/api/v1/messages/{data.hostile_id}", headers=site.token("sam"))
        assert answer.json()["date"] == "2026-11-21T09:30:00+00:00"
    finally:
        context.close()
        server.stop()
