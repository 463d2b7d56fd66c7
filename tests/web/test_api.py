"""The JSON API: bearer tokens, cursor pages, JSON errors, the OpenAPI document, and its changes audited."""

from __future__ import annotations

import pytest

from maild.services import audit
from tests.web.support import Site, seed


def test_read_the_history_through_the_api(site: Site) -> None:
    data = seed(site)
    client = site.client()
    auth = site.token("vic")
    listing = client.get("/api/v1/thirdparties", params={"q": "müller"}, headers=auth).json()
    [tp] = listing["items"]
    assert tp["name"] == "Müller Bau GmbH" and tp["last_in"] is not None and listing["next_cursor"] is None
    one = client.get(f"/api/v1/thirdparties/{data.customer_id}", headers=auth).json()
    assert one["contacts"][0]["addresses"] == ["anna@mueller.example"]
    seen, cursor = [], None
    while True:  # cursor pages, 2 at a time, newest first, each event once
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/v1/thirdparties/{data.customer_id}/timeline", params=params, headers=auth).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len({e["id"] for e in seen}) == 5  # four mails in, the refused send
    assert [e["occurred_at"] for e in seen] == sorted((e["occurred_at"] for e in seen), reverse=True)
    message = client.get(f"/api/v1/messages/{data.hostile_id}", headers=auth).json()
    assert message["subject"] == "Hostile newsletter" and message["decision"]["matcher"] == "address"
    raw = client.get(f"/api/v1/messages/{data.hostile_id}/raw", headers=auth)
    assert raw.headers["content-type"] == "message/rfc822"
    hits = client.get("/api/v1/search", params={"q": "Ziegel"}, headers=auth).json()
    assert [h["subject"] for h in hits["items"]] == ["Frage zur Lieferung"]
    assert client.get("/api/v1/triage", headers=auth).json()["items"][0]["id"] == data.triage_id
    assert client.get("/api/v1/outbox", params={"status": "failed"}, headers=auth).json()["items"][0]["id"] \
        == data.failed_outbox_id
    document = client.get("/api/v1/openapi.json", headers=auth).json()
    assert document["openapi"].startswith("3.") and "/api/v1/thirdparties/{id}/timeline" in document["paths"]
    assert "post" in document["paths"]["/api/v1/triage/assign"]


def test_errors_are_json_with_a_clear_message(site: Site) -> None:
    client = site.client()
    auth = site.token("sam")
    missing = client.get("/api/v1/messages/424242", headers=auth)
    assert missing.status_code == 404 and missing.json() == {"error": {"status": 404, "message": "no message 424242"}}
    bad = client.get("/api/v1/thirdparties", params={"cursor": "%%%"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "invalid cursor"
    assert client.get("/api/v1/thirdparties", params={"limit": "0"}, headers=auth).status_code == 400
    not_json = client.post("/api/v1/thirdparties", content=b"{nope", headers=auth)
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    no_name = client.post("/api/v1/thirdparties", json={}, headers=auth)
    assert no_name.status_code == 400 and "'name' is required" in no_name.json()["error"]["message"]
    assert client.get("/api/v1/nothing-here", headers=auth).json()["error"]["status"] == 404


def test_changes_through_the_api_are_audited(site: Site) -> None:
    data = seed(site)
    client = site.client()
    auth = site.token("sam")
    created = client.post("/api/v1/thirdparties", json={"name": "Dach & Co", "domains": ["dach.example"]},
                          headers=auth)
    assert created.status_code == 201 and created.json()["domains"] == ["dach.example"]
    new_id = created.json()["id"]
    changed = client.patch(f"/api/v1/thirdparties/{new_id}", json={"owner": "lena", "tags": ["roof"]}, headers=auth)
    assert changed.status_code == 200 and (changed.json()["owner"], changed.json()["tags"]) == ("lena", ["roof"])
    refused = client.patch(f"/api/v1/thirdparties/{new_id}", json={"id": 7}, headers=auth)
    assert refused.status_code == 400 and "cannot change id" in refused.json()["error"]["message"]
    contact = client.post(f"/api/v1/thirdparties/{new_id}/contacts", json={"name": "Karl", "addresses": []},
                          headers=auth)
    assert contact.status_code == 201
    assigned = client.post("/api/v1/triage/assign", json={"message_ids": [data.triage_id], "thirdparty": str(new_id),
                                                          "learn": True}, headers=auth)
    assert assigned.status_code == 200 and assigned.json()["assigned"][0]["learned_contact_id"] is not None
    retried = client.post(f"/api/v1/outbox/{data.failed_outbox_id}/retry", json={}, headers=auth)
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    assert client.post(f"/api/v1/outbox/{data.failed_outbox_id}/retry", json={}, headers=auth).status_code == 409
    invoice = client.post("/api/v1/invoices", json={"ref": "FA2612-0001", "thirdparty": "C-1", "amount": "100.00",
                                                    "due_on": "2026-12-20"}, headers=auth)
    assert invoice.status_code == 201, invoice.text
    paid = client.post(f"/api/v1/invoices/{invoice.json()['id']}/payments",
                       json={"amount": "100", "paid_on": "2026-12-02", "reference": "BANK-9"}, headers=auth)
    assert paid.status_code == 201 and paid.json()["status"] == "paid"
    actions = [e.action for e in audit.entries(site.db) if e.via == "api"]
    assert actions == ["invoice.payment", "invoice.upsert", "outbox.retry", "triage.assign", "contact.create",
                       "thirdparty.update", "thirdparty.create"]
    [update] = [e for e in audit.entries(site.db) if e.action == "thirdparty.update"]
    assert update.before == {"name": "Dach & Co", "owner": None, "tags": []}
    assert update.after == {"name": "Dach & Co", "owner": "lena", "tags": ["roof"]}


def test_send_a_template_through_the_api_once_per_key(site: Site) -> None:
    data = seed(site)
    template = site.home / "templates" / "thanks"
    template.mkdir(parents=True)
    (template / "subject.txt").write_text("Danke, {{ contact.name }}\n")
    (template / "body.txt").write_text("Danke für Ihre Anfrage.\n")
    client = site.client()
    auth = site.token("sam")
    body = {"template": "thanks", "to": "anna@mueller.example", "key": "api-thanks-1"}
    first = client.post("/api/v1/send", json=body, headers=auth)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    again = client.post("/api/v1/send", json=body, headers=auth)
    assert again.status_code == 200 and again.json() == {**first.json(), "created": False}
    row = client.get(f"/api/v1/outbox/{first.json()['outbox_id']}", headers=auth).json()
    assert row["subject"] == "Danke, Anna Becker" and row["recipients"] == ["anna@mueller.example"]
    assert row["thirdparty_id"] == data.customer_id and row["status"] == "queued"
    [entry] = [e for e in audit.entries(site.db) if e.action == "outbox.send"]
    assert entry.actor == "sam" and entry.after == {"template": "thanks", "to": "anna@mueller.example",
                                                    "key": "api-thanks-1"}
    missing = client.post("/api/v1/send", json={"template": "nope", "to": "C-1"}, headers=auth)
    assert missing.status_code in (400, 404) and "nope" in missing.json()["error"]["message"]
    viewer = client.post("/api/v1/send", json=body, headers=site.token("vic"))
    assert viewer.status_code == 403


def test_a_send_through_the_api_and_its_audit_entry_commit_together(site: Site) -> None:
    """Before, the outbox row committed first and the entry in a second transaction: a failed entry left an
    unaudited mail queued (and sent)."""
    from maild.outbound import outbox as ob
    from tests.support.audit_refused import audit_refused

    seed(site)
    template = site.home / "templates" / "thanks"
    template.mkdir(parents=True)
    (template / "subject.txt").write_text("Danke\n")
    (template / "body.txt").write_text("Danke.\n")
    client = site.client()
    body = {"template": "thanks", "to": "anna@mueller.example", "key": "api-atomic-1"}
    auth = site.token("sam")  # (creating a token is audited too)
    with audit_refused(site.db), pytest.raises(Exception, match="audit entry refused"):
        client.post("/api/v1/send", json=body, headers=auth)
    assert ob.by_key(site.db, "api-atomic-1") is None
    again = client.post("/api/v1/send", json=body, headers=auth)
    assert again.status_code == 201 and again.json()["created"] is True
    [entry] = [e for e in audit.entries(site.db) if e.action == "outbox.send"]
    assert entry.target == f"outbox:{again.json()['outbox_id']}"
