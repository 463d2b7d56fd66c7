"""The pages over real data (Maildir ingest, matching, the outbox): timeline with kinds and paging, a constant number
of queries per page, a hostile message's body under its own CSP, search, triage with learn, outbox retry, the
audit entries those changes write."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from sqlalchemy import select, update

from maild.daemon import Daemon
from maild.services import audit
from maild.store.db import Database
from maild.store.models import Message, MessageMatch, OutboxMessage
from tests.helpers import make_message
from tests.web.support import Site, follow, make_site, seed


@pytest.fixture
def small_pages(tmp_path: Path, db: Database) -> Site:
    return make_site(tmp_path, db, page_size=2)


def test_customer_list_timeline_filters_and_paging(small_pages: Site) -> None:
    site = small_pages
    data = seed(site)
    client, _csrf = site.logged_in("vic")
    found = client.get("/customers", params={"q": "müller"})
    assert "Müller Bau GmbH" in found.text and f'href="/customers/{data.customer_id}"' in found.text
    assert "Müller" not in client.get("/customers", params={"q": "nobody-like-this"}).text.split("<tbody>")[1]
    first = client.get(f"/customers/{data.customer_id}")
    assert first.status_code == 200
    assert first.text.count('<tr class="event') == 2 and "Older" in first.text  # newest two, then a link
    older = client.get(f"/customers/{data.customer_id}?" + _more(first.text))
    assert older.status_code == 200 and older.text.count('<tr class="event') == 2
    seen: list[str] = []
    page = first.text
    while True:  # walk every page: each event once, newest first
        seen += [line for line in page.splitlines() if 'class="event' in line]
        if "Older" not in page:
            break
        page = client.get(f"/customers/{data.customer_id}?" + _more(page)).text
    assert len(seen) == 5  # three mails, the hostile one and the refused send, all Anna's company's
    only_mail = client.get(f"/customers/{data.customer_id}", params={"kind": "mail_in"})
    assert "mail in" in only_mail.text
    notes = client.get(f"/customers/{data.customer_id}", params={"kind": "notes"})
    assert 'class="event' not in notes.text and "Nothing on the timeline of these kinds" in notes.text
    assert client.get(f"/customers/{data.customer_id}", params={"kind": "bogus"}).status_code == 400
    assert client.get(f"/customers/{data.customer_id}", params={"cursor": "garbage!"}).status_code == 400
    assert client.get("/customers/999999").status_code == 404


def _more(html: str) -> str:
    import html as h
    import re

    found = re.search(r'class="more" href="/customers/\d+\?([^"]+)"', html)
    assert found
    return h.unescape(found.group(1))


def test_queries_per_page_do_not_grow_with_rows(site: Site) -> None:
    data = seed(site)
    client, csrf = site.logged_in("sam")
    stats = site.app.state.stats
    client.get(f"/customers/{data.customer_id}")
    client.get(f"/messages/{data.hostile_id}")
    client.get("/search", params={"q": "Angebot"})
    few = {route: stats.query_counts(route) for route in
           ("GET /customers/{id:int}", "GET /messages/{id:int}", "GET /search")}
    for n in range(40):  # many more rows of every kind the pages show
        client.post(f"/customers/{data.customer_id}/notes", data={"csrf": csrf, "text": f"Angebot note {n}"})
    box = mailbox.Maildir(str(data.maildir))
    for n in range(30):
        box.add(make_message(subject=f"Angebot weitere {n}", body="Angebot", sender="anna@mueller.example"))
    assert not Daemon(site.config, site.db).ingest_once().errors
    stats.reset()
    client.get(f"/customers/{data.customer_id}")
    client.get(f"/messages/{data.hostile_id}")
    client.get("/search", params={"q": "Angebot"})
    many = {route: stats.query_counts(route) for route in few}
    assert many == few and all(len(counts) == 1 for counts in many.values())
    assert max(next(iter(c)) for c in many.values()) <= 12


def test_hostile_message_body_is_served_under_a_policy_that_blocks_scripts_and_remote_content(site: Site) -> None:
    data = seed(site)
    client, _csrf = site.logged_in("vic")
    page = client.get(f"/messages/{data.hostile_id}")
    assert page.status_code == 200
    assert f'<iframe class="mailbody" title="The mail\'s HTML (nothing in it runs or loads)" sandbox ' \
           f'src="/messages/{data.hostile_id}/body"' in page.text
    assert "<script>window.top" not in page.text  # the HTML is only in the frame's own route
    assert "matched" in page.text and "Müller Bau GmbH" in page.text and "address" in page.text
    body = client.get(f"/messages/{data.hostile_id}/body")
    policy = body.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy.split(";")[-1]
    assert "script-src" not in policy and "img-src data:" in policy
    assert body.headers["x-content-type-options"] == "nosniff"
    raw = client.get(f"/messages/{data.hostile_id}/raw")
    assert raw.headers["content-type"] == "message/rfc822" and b"Hostile newsletter" in raw.content
    assert "attachment" in raw.headers["content-disposition"]


def test_search_finds_mail_by_word_and_address_with_filters_and_paging(small_pages: Site) -> None:
    site = small_pages
    data = seed(site)
    client, _csrf = site.logged_in("vic")
    hits = client.get("/search", params={"q": "Angebot"})
    assert hits.text.count("Angebot Dachsanierung") == 2 and "More" in hits.text  # 3 hits, 2 a page
    assert "<mark>Angebot</mark>" in hits.text
    by_address = client.get("/search", params={"q": "karl@unknown-roofing.example"})
    assert "Frage zur Lieferung" in by_address.text
    assert "Frage zur Lieferung" in client.get("/search", params={"q": "ziegel"}).text  # body, any case
    filtered = client.get("/search", params={"q": "Lieferung", "thirdparty": str(data.customer_id)})
    assert "Frage zur Lieferung" not in filtered.text  # that one waits in triage
    assert "No mail matches" in client.get("/search", params={"q": "Angebot", "attachment": "yes"}).text
    assert "No mail matches" in client.get("/search", params={"q": "Angebot", "until": "2020-01-01"}).text
    prefix = client.get("/search", params={"q": "Angeb dachsan"})  # the start of words, any case, all of them
    assert prefix.text.count("Angebot Dachsanierung") == 2 and "<mark>Angeb</mark>ot" in prefix.text
    assert "Frage zur Lieferung" in client.get("/search", params={"q": "zieg"}).text
    assert "No mail matches" in client.get("/search", params={"q": "Angeb zzzq"}).text
    assert "No mail matches" in client.get("/search", params={"q": "gebot"}).text  # not the middle of a word
    for odd_query in ('"unbalanced AND ( NEAR * ^', "O'Brien \\ x:* & !y | (z"):
        odd = client.get("/search", params={"q": odd_query})
        assert odd.status_code == 200 and "No mail matches" in odd.text  # words, never query syntax


def test_assign_from_triage_with_learn_files_the_next_mail_and_is_audited(site: Site) -> None:
    data = seed(site)
    client, csrf = site.logged_in("sam")
    queue = client.get("/triage")
    assert "Frage zur Lieferung" in queue.text
    done = client.post("/triage/assign", data={"csrf": csrf, "message": str(data.triage_id), "thirdparty": "C-1",
                                               "learn": "1"})
    assert done.status_code == 303
    assert "Triage is empty" in follow(client, done).text
    [entry] = audit.entries(site.db, action="triage.assign")
    assert (entry.actor, entry.via, entry.target) == ("sam", "web", f"message:{data.triage_id}")
    assert entry.before == {"status": "unmatched", "thirdparty_id": None}
    assert entry.after is not None and entry.after["thirdparty_id"] == data.customer_id
    box = mailbox.Maildir(str(data.maildir))
    box.add(make_message(subject="Noch eine Frage", sender="karl@unknown-roofing.example"))
    assert not Daemon(site.config, site.db).ingest_once().errors
    with site.db.engine.connect() as conn:
        decisions = conn.execute(select(MessageMatch.__table__.c.status, MessageMatch.__table__.c.thirdparty_id,
                                        MessageMatch.__table__.c.matcher)).all()
    assert ("matched", data.customer_id, "address") in decisions
    timeline = client.get(f"/customers/{data.customer_id}").text
    assert "Noch eine Frage" in timeline


def test_retry_a_failed_outbox_row_and_see_its_story(site: Site) -> None:
    data = seed(site)
    client, csrf = site.logged_in("sam")
    failed = client.get("/outbox", params={"status": "failed"})
    assert "550 mailbox unavailable" in failed.text and f"/outbox/{data.failed_outbox_id}/retry" in failed.text
    story = client.get(f"/outbox/{data.failed_outbox_id}")
    assert "550 5.1.1 no such user" in story.text and "1 attempt(s)" in story.text
    retried = client.post(f"/outbox/{data.failed_outbox_id}/retry", data={"csrf": csrf},
                          headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert retried.status_code == 200 and '<td class="status">queued</td>' in retried.text
    with site.db.engine.connect() as conn:
        assert conn.execute(select(OutboxMessage.__table__.c.status)).scalar() == "queued"
    again = client.post(f"/outbox/{data.failed_outbox_id}/retry", data={"csrf": csrf})
    assert again.status_code == 400 and "cannot be retried" in again.text
    [entry] = audit.entries(site.db, action="outbox.retry")
    assert entry.before == {"status": "failed", "attempts": 1} and entry.after == {"status": "queued", "attempts": 0}


def test_the_other_pages_render_for_a_viewer(site: Site) -> None:
    seed(site)
    client, _csrf = site.logged_in("vic")
    for path in ("/rules", "/rules/simulate?since=7d", "/invoices", "/invoices?overdue=1", "/quarantine", "/status",
                 "/triage", "/outbox"):
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
    assert "local" in client.get("/status").text
    assert 'id="unclassified"' not in client.get("/status").text
    with site.db.engine.begin() as conn:  # mail stored before classification existed
        conn.execute(update(Message.__table__).values(kind=None))
    assert "Stored before classification, not yet classified: " in client.get("/status").text


def test_hostile_headers_huge_subjects_and_broken_charsets_are_shown_as_text(site: Site) -> None:
    data = seed(site)
    box = mailbox.Maildir(str(data.maildir))
    script = '<script>document.title="PWNED"</script><img src=x onerror=alert(1)>'
    box.add(make_message(subject=script + "A" * 20000, body="javascript:alert(1) " + script,
                         sender="anna@mueller.example"))
    box.add(b"From: anna@mueller.example\r\nTo: sales@ourco.example\r\nSubject: =?x-unknown?B?/////w==?=\r\n"
            b"Content-Type: text/plain; charset=bogus-charset\r\n\r\nbroken \xff\xfe bytes\r\n")
    assert not Daemon(site.config, site.db).ingest_once().errors
    client, _csrf = site.logged_in("vic")
    timeline = client.get(f"/customers/{data.customer_id}")
    assert timeline.status_code == 200
    assert "<script>document.title" not in timeline.text and "&lt;script&gt;document.title" in timeline.text
    with site.db.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(MessageMatch.__table__.c.message_id)
                                          .order_by(MessageMatch.__table__.c.message_id.desc()).limit(2))]
    for message_id in ids:
        page = client.get(f"/messages/{message_id}")
        assert page.status_code == 200
        assert "<script>document.title" not in page.text and "<img src=x onerror" not in page.text
    found = client.get("/search", params={"q": "javascript:alert(1)"})
    assert found.status_code == 200 and "<script>document.title" not in found.text


def test_the_other_changes_through_the_pages_are_made_and_audited(site: Site) -> None:
    from maild.business import invoices
    from maild.services import users as user_service

    data = seed(site)
    client, csrf = site.logged_in("sam")
    created = client.post(f"/triage/{data.triage_id}/create", data={"csrf": csrf, "name": "Unknown Roofing AG"})
    assert created.status_code == 303
    new_customer = follow(client, client.get("/customers", params={"q": "Unknown Roofing"}))
    assert "Unknown Roofing AG" in new_customer.text
    task = client.post(f"/customers/{data.customer_id}/tasks", data={"csrf": csrf, "title": "Call back",
                                                                    "due": "2026-12-10T09:00"})
    contact = client.post(f"/customers/{data.customer_id}/contacts",
                          data={"csrf": csrf, "name": "Bernd", "addresses": "bernd@mueller.example", "role": "CEO"})
    note = client.post(f"/customers/{data.customer_id}/notes", data={"csrf": csrf, "text": "Wants a discount"})
    assert task.status_code == contact.status_code == note.status_code == 303
    page = client.get(f"/customers/{data.customer_id}").text
    assert "Call back" in page and "Bernd" in page and "Wants a discount" in page
    invoices.upsert_invoice(site.db, ref="FA2611-0001", thirdparty_id=data.customer_id, issued_on="2026-11-01",
                            due_on="2026-11-15", amount="300.00")
    listed = client.get("/invoices", params={"overdue": "1"})
    assert "FA2611-0001" in listed.text
    invoice_id = invoices.describe_invoice(site.db, "FA2611-0001")["id"]
    paid = client.post(f"/invoices/{invoice_id}/payments", data={"csrf": csrf, "amount": "300,00",
                                                                 "paid_on": "2026-12-01", "reference": "BANK-1"})
    assert paid.status_code == 303
    assert invoices.describe_invoice(site.db, "FA2611-0001")["status"] == "paid"
    bad = client.post(f"/invoices/{invoice_id}/payments", data={"csrf": csrf, "amount": "lots"})
    assert bad.status_code == 400
    admin, admin_csrf = site.logged_in("ada")
    assert admin.post("/users/new", data={"csrf": admin_csrf, "username": "neo", "password": "a long password",
                                          "role": "staff"}).status_code == 303
    assert admin.post("/users/vic/disable", data={"csrf": admin_csrf}).status_code == 303
    assert [u.disabled for u in user_service.list_users(site.db) if u.username == "vic"] == [True]
    actions = [(e.action, e.via, e.actor) for e in audit.entries(site.db) if e.via == "web"]
    assert actions == [("user.disable", "web", "ada"), ("user.add", "web", "ada"), ("invoice.payment", "web", "sam"),
                       ("note.add", "web", "sam"), ("contact.create", "web", "sam"), ("task.add", "web", "sam"),
                       ("triage.assign", "web", "sam"), ("thirdparty.create", "web", "sam")]
    audit_page = admin.get("/audit").text
    assert "invoice.payment" in audit_page and "sam" in audit_page
