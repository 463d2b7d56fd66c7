"""The tracking endpoint, served for real by uvicorn on a free port and spoken to over loopback."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlmodel import select

from maild.config import TrackingConfig
from maild.store.db import Database
from maild.store.models import TrackingLink
from maild.tracking.app import PIXEL, create_app, truncate_ip
from maild.tracking.links import instrument
from maild.tracking.server import TrackingServer
from maild.tracking.signing import sign
from tests.tracking.support import HUMAN, OTHER, SECRET, TOKEN, Endpoint

HTML = """<html><body>
<p>Hello <a href="https://shop.example/offer?id=1&amp;x=2">offer</a>,
<a href="mailto:sales@example.com">mail us</a>, <a href="tel:+331234">call</a>, <a href="#top">top</a>,
<a href='http://docs.example/guide'>guide</a></p>
</BODY></html>"""


def _links(html: str, base_url: str) -> list[str]:
    return re.findall(rf'href="({re.escape(base_url)}/c/[^"]+)"', html)


def _path(url: str, base_url: str) -> str:
    return url.removeprefix(base_url)


def test_instrument_rewrites_http_links_only_and_adds_pixel(endpoint: Endpoint) -> None:
    out = instrument(endpoint.db, HTML, TOKEN, endpoint.base_url + "/", SECRET)
    links = _links(out, endpoint.base_url)
    assert len(links) == 2
    assert 'href="mailto:sales@example.com"' in out and 'href="tel:+331234"' in out and 'href="#top"' in out
    assert "shop.example" not in out and "docs.example" not in out
    pixel = f'<img src="{endpoint.base_url}/o/{sign(SECRET, "o", TOKEN, None)}"'
    assert pixel in out and out.index(pixel) < out.index("</BODY>")
    with endpoint.db.session() as session:
        stored = session.exec(select(TrackingLink.link, TrackingLink.url).where(TrackingLink.token == TOKEN)).all()
    assert sorted(stored) == [(0, "https://shop.example/offer?id=1&x=2"), (1, "http://docs.example/guide")]
    # Instrumenting the same mail again (a retried send) is a no-op for the stored links.
    assert instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET) == out
    # No </body>: the pixel goes at the end.
    assert instrument(endpoint.db, "<p>hi</p>", OTHER, endpoint.base_url, SECRET).endswith("/>")


def test_open_records_event_with_truncated_ip_and_user_agent(endpoint: Endpoint) -> None:
    outbox = endpoint.add_outbox(TOKEN)
    response = endpoint.http.get(f"/o/{sign(SECRET, 'o', TOKEN, None)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL
    assert "no-store" in response.headers["cache-control"]
    [event] = endpoint.events("mail.opened", at_least=1)
    assert event.thirdparty_id == outbox.thirdparty_id
    assert event.data == {"outbox_id": outbox.id, "user_agent": HUMAN, "ip": "127.0.0.0", "machine": None}


def test_open_for_unknown_token_gives_pixel_but_no_event(endpoint: Endpoint) -> None:
    response = endpoint.http.get(f"/o/{sign(SECRET, 'o', 'NoSuchOutboxRow', None)}")
    assert response.status_code == 200 and response.content == PIXEL
    assert endpoint.events() == []


def test_click_redirects_to_stored_url_and_records_event(endpoint: Endpoint) -> None:
    outbox = endpoint.add_outbox(TOKEN)
    out = instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    first, second = _links(out, endpoint.base_url)
    response = endpoint.http.get(_path(second, endpoint.base_url))
    assert response.status_code in (302, 303)
    assert response.headers["location"] == "http://docs.example/guide"
    response = endpoint.http.get(_path(first, endpoint.base_url))
    assert response.headers["location"] == "https://shop.example/offer?id=1&x=2"
    events = endpoint.events("mail.clicked")
    assert [e.data["url"] for e in events] == ["http://docs.example/guide", "https://shop.example/offer?id=1&x=2"]
    assert events[0].data == {"outbox_id": outbox.id, "user_agent": HUMAN, "ip": "127.0.0.0", "machine": None,
                              "url": "http://docs.example/guide", "link": 1}
    assert events[0].thirdparty_id == outbox.thirdparty_id


def test_altered_or_forged_values_get_404_and_no_event(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    good_click = sign(SECRET, "c", TOKEN, 0)
    good_open = sign(SECRET, "o", TOKEN, None)
    flipped = "A" if good_click[-1] != "A" else "B"
    bad = [
        f"/c/{good_click[:-1]}{flipped}",                      # signature altered
        f"/c/{good_click.replace(f'.{TOKEN}.0.', f'.{TOKEN}.1.')}",  # link index altered
        f"/c/{sign(b'an-attacker-secret-0123456789', 'c', TOKEN, 0)}",  # signed with another key
        f"/c/{good_open}",                                      # an open value used as a click
        "/c/garbage",
        f"/o/{good_open[:-2]}xx",
        f"/o/{good_click}",                                     # a click value used as an open
        "/o/c.x.y",
    ]
    for path in bad:
        response = endpoint.http.get(path)
        assert response.status_code == 404, path
        assert "location" not in response.headers
    assert endpoint.events() == []


def test_link_index_of_another_token_is_404(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    endpoint.add_outbox(OTHER)
    instrument(endpoint.db, HTML, OTHER, endpoint.base_url, SECRET)  # OTHER has links 0 and 1; TOKEN has none
    response = endpoint.http.get(f"/c/{sign(SECRET, 'c', TOKEN, 1)}")
    assert response.status_code == 404
    assert "location" not in response.headers
    assert endpoint.events() == []


def test_url_parameter_never_redirects_elsewhere(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    value = sign(SECRET, "c", TOKEN, 0)
    for path in (f"/c/{value}?url=https://evil.example", f"/c/{value}?url=https%3A%2F%2Fevil.example&x=1",
                 "/c/?url=https://evil.example", "/c?url=https://evil.example"):
        response = endpoint.http.get(path)
        assert response.status_code == 404, path
        assert "evil.example" not in response.headers.get("location", "")
    assert endpoint.events() == []


def test_scanner_user_agent_is_flagged_not_dropped(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN)
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    response = endpoint.http.get(f"/c/{sign(SECRET, 'c', TOKEN, 0)}",
                                 headers={"User-Agent": "Mozilla/5.0 (compatible; Proofpoint URL Defense)"})
    assert response.status_code == 302
    assert endpoint.http.get(f"/o/{sign(SECRET, 'o', TOKEN, None)}",
                             headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
    clicked, = endpoint.events("mail.clicked")
    opened, = endpoint.events("mail.opened", at_least=1)
    assert clicked.data["machine"] == "scanner:proofpoint"
    assert opened.data["machine"] == "apple-mail-privacy-protection"


def test_click_right_after_sending_is_flagged(endpoint: Endpoint) -> None:
    endpoint.add_outbox(TOKEN, sent_minutes_ago=0.05)  # 3 seconds ago, scanner_seconds is 10
    instrument(endpoint.db, HTML, TOKEN, endpoint.base_url, SECRET)
    response = endpoint.http.get(f"/c/{sign(SECRET, 'c', TOKEN, 1)}")
    assert response.status_code == 302 and response.headers["location"] == "http://docs.example/guide"
    event, = endpoint.events("mail.clicked")
    assert event.data["machine"] == "within-10s-of-sending"


def test_health(endpoint: Endpoint) -> None:
    response = endpoint.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True}


def test_server_stops_and_frees_the_port(db: Database) -> None:
    server = TrackingServer(create_app(db, SECRET, TrackingConfig()), "127.0.0.1", 0)
    server.start()
    port = server.port
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    again = TrackingServer(create_app(db, SECRET, TrackingConfig()), "127.0.0.1", port)
    again.start()
    again.stop()


@pytest.mark.parametrize(("ip", "expected"), [
    ("203.0.113.77", "203.0.113.0"),
    ("2001:db8:abcd:1234::1", "2001:db8:abcd::"),
    ("::ffff:198.51.100.9", "198.51.100.0"),
    ("not-an-ip", None),
    (None, None),
])
def test_truncate_ip(ip: str | None, expected: str | None) -> None:
    assert truncate_ip(ip) == expected
