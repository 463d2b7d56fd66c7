from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from maild.directory import service
from maild.store.db import Database
from maild.store.models import Event, MailAddress, MailDomain, ThirdParty


def test_contact_address_resolves_to_its_company(db: Database) -> None:
    acme = service.add_thirdparty(db, name="Acme Ltd", domains=["acme.example"], addresses=["info@acme.example"])
    service.add_thirdparty(db, name="Other plc")
    anna = service.add_contact(db, thirdparty_id=acme, name="Anna Smith", addresses=["Anna.Smith+orders@ACME.example"])

    owners = service.thirdparties_with_address(db, "anna.smith@acme.example")
    assert [tp.id for tp in owners] == [acme]
    assert [tp.name for tp in service.thirdparties_with_address(db, "INFO@acme.example")] == ["Acme Ltd"]
    assert service.thirdparties_with_address(db, "nobody@acme.example") == []
    with db.session() as session:
        rows = session.exec(select(MailAddress).order_by(MailAddress.id)).all()
    assert [(r.address, r.thirdparty_id, r.contact_id) for r in rows] == [
        ("info@acme.example", acme, None), ("anna.smith@acme.example", acme, anna)]


def test_idn_domains_and_addresses_are_normalised(db: Database) -> None:
    tp = service.add_thirdparty(db, name="  Müller-Bau GmbH ", domains=["Müller.EXAMPLE.", "@muller.example"],
                                addresses=["INFO+Web@Müller.example", "Büro <Buero@MÜLLER.example>"])
    service.add_contact(db, thirdparty_id=tp, name="Jörg", addresses=["Joerg+Sales@Müller.Example"])
    data = service.describe_thirdparty(db, tp)
    assert data["name"] == "Müller-Bau GmbH"
    assert data["domains"] == ["muller.example", "xn--mller-kva.example"]
    assert data["addresses"] == ["buero@xn--mller-kva.example", "info@xn--mller-kva.example"]
    assert data["contacts"][0]["addresses"] == ["joerg@xn--mller-kva.example"]
    with db.session() as session:
        assert session.get(ThirdParty, tp).name_key == "muller bau gmbh"  # type: ignore[union-attr]


def test_duplicate_addresses_and_domains_are_stored_once(db: Database) -> None:
    tp = service.add_thirdparty(db, name="Acme", domains=["acme.example", "ACME.example"],
                                addresses=["a@acme.example", "A+x@acme.example"])
    with db.session() as session:
        assert len(session.exec(select(MailDomain).where(MailDomain.thirdparty_id == tp)).all()) == 1
        assert len(session.exec(select(MailAddress).where(MailAddress.thirdparty_id == tp)).all()) == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "   "}, "name is missing"),
    ({"name": "Acme", "kind": "friend"}, "unknown kind 'friend'"),
    ({"name": "Acme", "addresses": ["not-an-address"]}, "not a valid mail address: 'not-an-address'"),
    ({"name": "Acme", "addresses": ["anna@acme"]}, "not a valid mail address"),
    ({"name": "Acme", "addresses": ["anna smith@acme.example"]}, "not a valid mail address"),
    ({"name": "Acme", "domains": ["acme example"]}, "not a valid domain"),
    ({"name": "Acme", "tags": ["a;b"]}, "contains ';'"),
    ({"name": "x" * 301}, "longer than 300"),
])
def test_invalid_input_is_refused_and_nothing_is_stored(db: Database, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        service.add_thirdparty(db, **kwargs)
    assert service.list_thirdparties(db) == []


def test_contact_needs_an_existing_company_and_valid_input(db: Database) -> None:
    with pytest.raises(LookupError, match="no third party with id 99"):
        service.add_contact(db, thirdparty_id=99, name="Anna")
    tp = service.add_thirdparty(db, name="Acme")
    with pytest.raises(ValueError, match="name is missing"):
        service.add_contact(db, thirdparty_id=tp, name="")
    with pytest.raises(ValueError, match="not a valid mail address"):
        service.add_contact(db, thirdparty_id=tp, name="Anna", addresses=["anna@"])
    assert service.list_contacts(db) == []


def test_external_ids_are_unique(db: Database) -> None:
    service.add_thirdparty(db, name="Acme", external_id="C-1")
    with pytest.raises(ValueError, match="external id 'C-1' already exists"):
        service.add_thirdparty(db, name="Other", external_id="C-1")


def test_upsert_thirdparty_by_external_id(db: Database) -> None:
    tp, created = service.upsert_thirdparty(
        db, external_id="C-1", name="Acme", kind="prospect", tags=["new"], owner="bob", language="en",
        custom_fields={"vat": "GB1", "segment": "retail"}, domains=["acme.example"], addresses=["info@acme.example"])
    assert created
    again, created = service.upsert_thirdparty(db, external_id="C-1", name="Acme Ltd", kind="customer",
                                               domains=["acme.example", "acme.test"], owner="",
                                               custom_fields={"vat": "", "size": "10"})
    assert (again, created) == (tp, False)
    data = service.describe_thirdparty(db, tp)
    assert data["name"] == "Acme Ltd" and data["kind"] == "customer"
    assert data["tags"] == ["new"]                 # None: unchanged
    assert data["owner"] is None                   # "": cleared
    assert data["language"] == "en"
    assert data["custom_fields"] == {"segment": "retail", "size": "10"}   # merged; empty value removes
    assert data["domains"] == ["acme.example", "acme.test"]
    assert data["addresses"] == ["info@acme.example"]
    assert service.resolve_thirdparty(db, "acme ltd").id == tp
    other, created = service.upsert_thirdparty(db, external_id=None, name="Acme Ltd")
    assert created and other != tp


def test_upsert_contact_by_external_id_moves_addresses_with_the_person(db: Database) -> None:
    old = service.add_thirdparty(db, name="Old Co")
    new = service.add_thirdparty(db, name="New Co")
    anna, created = service.upsert_contact(db, external_id="P-1", thirdparty_id=old, name="Anna",
                                           addresses=["anna@old.example"], phones=["+1 555"], role="buyer")
    assert created
    same, created = service.upsert_contact(db, external_id="P-1", thirdparty_id=new, name="Anna Smith",
                                           addresses=["anna@old.example", "anna@new.example"])
    assert (same, created) == (anna, False)
    assert [tp.id for tp in service.thirdparties_with_address(db, "anna@old.example")] == [new]
    contact = service.list_contacts(db, new)[0]
    assert contact["name"] == "Anna Smith" and contact["role"] == "buyer" and contact["phones"] == ["+1 555"]
    assert contact["addresses"] == ["anna@new.example", "anna@old.example"]
    assert service.describe_thirdparty(db, old)["contacts"] == []


def test_documents_upsert_by_ref_and_kind(db: Database) -> None:
    a = service.add_thirdparty(db, name="A")
    b = service.add_thirdparty(db, name="B")
    inv = service.add_document(db, ref="INV-2026-001", thirdparty_id=a)
    assert service.add_document(db, ref="INV-2026-001", thirdparty_id=b) == inv
    quote = service.add_document(db, ref="INV-2026-001", thirdparty_id=a, kind="Proposal")
    assert quote != inv
    assert service.describe_thirdparty(db, b)["documents"] == [{"id": inv, "ref": "INV-2026-001", "kind": "invoice"}]
    assert service.describe_thirdparty(db, a)["documents"][0]["kind"] == "proposal"
    with pytest.raises(LookupError):
        service.add_document(db, ref="X", thirdparty_id=404)


def test_resolve_by_id_external_id_or_name(db: Database) -> None:
    acme = service.add_thirdparty(db, name="Müller Bau", external_id="ERP-7")
    assert service.resolve_thirdparty(db, str(acme)).id == acme
    assert service.resolve_thirdparty(db, "ERP-7").id == acme
    assert service.resolve_thirdparty(db, "  MULLER bau ").id == acme
    with pytest.raises(LookupError, match="no third party with id, external id, name or mail address 'Nobody'"):
        service.resolve_thirdparty(db, "Nobody")
    twin = service.add_thirdparty(db, name="Twin")
    service.add_thirdparty(db, name="twin")
    with pytest.raises(LookupError, match="several third parties are named 'Twin'"):
        service.resolve_thirdparty(db, "Twin")
    assert service.resolve_thirdparty(db, str(twin)).id == twin
    with pytest.raises(LookupError):
        service.resolve_thirdparty(db, str(acme), by_id=False)
    # a mail address of the third party, or of one of its contacts (normalised)
    service.add_contact(db, thirdparty_id=acme, name="Anna", addresses=["Anna.Becker@mueller.example"])
    assert service.resolve_thirdparty(db, " anna.becker@MUELLER.example").id == acme
    service.add_contact(db, thirdparty_id=twin, name="Shared", addresses=["info@shared.example"])
    service.add_contact(db, thirdparty_id=acme, name="Shared too", addresses=["info@shared.example"])
    with pytest.raises(LookupError, match=r"several third parties have the address 'info@shared\.example'"):
        service.resolve_thirdparty(db, "info@shared.example")
    with pytest.raises(LookupError, match=r"no third party with id, external id, name or mail address 'x@y\.example'"):
        service.resolve_thirdparty(db, "x@y.example")


def test_list_filters_by_kind_and_tag(db: Database) -> None:
    service.add_thirdparty(db, name="Beta", kind="supplier", tags=["Paper"])
    service.add_thirdparty(db, name="Alpha", kind="customer", tags=["vip", "paper"])
    service.add_thirdparty(db, name="Gamma", kind="prospect")
    assert [tp.name for tp in service.list_thirdparties(db)] == ["Alpha", "Beta", "Gamma"]
    assert [tp.name for tp in service.list_thirdparties(db, kind="supplier")] == ["Beta"]
    assert [tp.name for tp in service.list_thirdparties(db, tag="paper")] == ["Alpha", "Beta"]
    assert [tp.name for tp in service.list_thirdparties(db, kind="customer", tag="PAPER")] == ["Alpha"]
    with pytest.raises(ValueError, match="unknown kind"):
        service.list_thirdparties(db, kind="friend")


def test_describe_shows_the_twenty_newest_events(db: Database) -> None:
    tp = service.add_thirdparty(db, name="Acme")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as session:
        session.add_all(Event(type="note", occurred_at=start + timedelta(days=i), thirdparty_id=tp, data={"n": i})
                        for i in range(25))
        session.add(Event(type="note", occurred_at=start + timedelta(days=99), thirdparty_id=None))
    events = service.describe_thirdparty(db, tp)["events"]
    assert [e["data"]["n"] for e in events] == list(range(24, 4, -1))
    assert events[0]["occurred_at"].startswith("2026-01-25T00:00:00")
    with pytest.raises(LookupError):
        service.describe_thirdparty(db, 404)
