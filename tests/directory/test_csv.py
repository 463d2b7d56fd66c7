from __future__ import annotations

import json
from pathlib import Path

import pytest

from maild.directory import service
from maild.directory.csv_export import export
from maild.directory.csv_import import import_csv
from maild.directory.csv_rows import ImportOptions
from maild.store.db import Database

SKIP = ImportOptions(skip_invalid=True)


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_bad_rows_are_rejected_with_their_physical_line_and_good_rows_import(db: Database, tmp_path: Path) -> None:
    csv_file = _write(tmp_path / "tp.csv", (
        "external_id,name,kind,domains,addresses,custom.note\n"   # 1
        "C-1,Acme,customer,acme.example,info@acme.example,\n"     # 2
        'C-2,Beta,supplier,beta.example,,"first line\n'           # 3
        'second line\n'                                           # 4
        'third line"\n'                                           # 5
        "C-3,,customer,,,\n"                                      # 6  missing name
        "\n"                                                      # 7  blank: skipped
        "C-4,Gamma,customer,,not-an-address,\n"                   # 8  bad address
        "C-5,Delta,friend,,,\n"                                   # 9  unknown kind
        "C-6,Epsilon,prospect,eps.example,Sales+x@EPS.example;b@eps.example,\n"  # 10
        "C-7,Zeta,customer,,,,surplus\n"                          # 11 too many cells
    ))
    refused = import_csv(db, "thirdparties", csv_file)
    assert (refused.committed, refused.inserted, [line for line, _ in refused.rejected]) == (False, 3, [6, 8, 9, 11])
    assert service.list_thirdparties(db) == []  # all or nothing
    report = import_csv(db, "thirdparties", csv_file, options=ImportOptions(skip_invalid=True))
    assert (report.committed, report.inserted, report.updated) == (True, 3, 0)
    assert report.rejected == refused.rejected
    reasons = dict(report.rejected)
    assert reasons[6] == "name is missing"
    assert reasons[8] == "not a valid mail address: 'not-an-address'"
    assert reasons[9].startswith("unknown kind 'friend'")
    assert "header has 6 columns" in reasons[11]
    assert [tp.name for tp in service.list_thirdparties(db)] == ["Acme", "Beta", "Epsilon"]
    beta = service.resolve_thirdparty(db, "C-2")
    assert beta.custom_fields == {"note": "first line\nsecond line\nthird line"} and beta.kind == "supplier"
    eps = service.describe_thirdparty(db, service.resolve_thirdparty(db, "Epsilon").id or 0)
    assert eps["addresses"] == ["b@eps.example", "sales@eps.example"]


def test_contacts_with_unknown_company_or_bad_address_are_rejected(db: Database, tmp_path: Path) -> None:
    service.add_thirdparty(db, name="Acme Ltd", external_id="C-1")
    service.add_thirdparty(db, name="Beta GmbH")
    csv_file = _write(tmp_path / "contacts.csv", (
        "external_id,thirdparty,name,addresses,phones,role\n"                    # 1
        "P-1,C-1,Anna,Anna+x@Acme.example,+44 1;+44 2,buyer\n"                   # 2
        '"P-2","beta gmbh","Bob\nthe builder",bob@beta.example,,\n'              # 3-4 multi-line name
        "P-3,Nobody Inc,Carl,carl@nobody.example,,\n"                            # 5 unknown company
        "P-4,C-1,Dora,dora@@acme.example,,\n"                                    # 6 bad address
        "P-5,C-1,,eve@acme.example,,\n"                                          # 7 missing name
    ))
    report = import_csv(db, "contacts", csv_file, options=SKIP)
    assert (report.inserted, report.updated) == (2, 0)
    assert report.rejected == [
        (5, "no third party with external id, name or mail address 'Nobody Inc'"),
        (6, "not a valid mail address: 'dora@@acme.example'"),
        (7, "name is missing"),
    ]
    assert [tp.name for tp in service.thirdparties_with_address(db, "anna@acme.example")] == ["Acme Ltd"]
    anna = service.list_contacts(db, service.resolve_thirdparty(db, "C-1").id)[0]
    assert anna["phones"] == ["+44 1", "+44 2"] and anna["role"] == "buyer"

    again = import_csv(db, "contacts", csv_file, options=SKIP)   # same file again: upserts by external id
    assert (again.inserted, again.updated, len(again.rejected)) == (0, 2, 3)
    assert len(service.list_contacts(db)) == 2


def test_bom_mapping_and_other_delimiter(db: Database, tmp_path: Path) -> None:
    csv_file = _write(tmp_path / "erp.csv", (
        "Customer No;Company;Type;E-Mail;VAT;Unused\n"
        "1001;Müller Bau;supplier;INFO@Müller.example;DE123;x\n"
        "1002;Acme;;sales@acme.example;;\n"
    ), bom=True)
    mapping = {"Customer No": "external_id", "Company": "name", "Type": "kind", "E-Mail": "addresses",
               "VAT": "custom.vat"}
    report = import_csv(db, "thirdparties", csv_file, mapping, delimiter=";")
    assert (report.inserted, report.rejected, report.ignored_columns) == (2, [], ["Unused"])
    muller = service.resolve_thirdparty(db, "1001", by_id=False)
    assert (muller.name, muller.kind, muller.custom_fields) == ("Müller Bau", "supplier", {"vat": "DE123"})
    assert service.describe_thirdparty(db, muller.id or 0)["addresses"] == ["info@xn--mller-kva.example"]
    assert service.resolve_thirdparty(db, "1002", by_id=False).kind == "customer"


def test_bom_before_a_plain_header(db: Database, tmp_path: Path) -> None:
    report = import_csv(db, "thirdparties", _write(tmp_path / "bom.csv", "name,kind\nAcme,other\n", bom=True))
    assert (report.inserted, report.rejected, report.ignored_columns) == (1, [], [])
    assert service.resolve_thirdparty(db, "Acme").kind == "other"


def test_explicit_mapping_wins_over_a_same_named_column(db: Database, tmp_path: Path) -> None:
    csv_file = _write(tmp_path / "c.csv", "name,company\nAnna,Acme\n")
    service.add_thirdparty(db, name="Acme")
    report = import_csv(db, "contacts", csv_file, {"company": "thirdparty"})
    assert (report.inserted, report.rejected) == (1, [])


@pytest.mark.parametrize(("text", "mapping", "message"), [
    ("name\nAcme\n", {"name": "title"}, "names an unknown field"),
    ("name\nAcme\n", {"Company": "name"}, "names column 'Company'"),
    ("company,kind\nAcme,customer\n", None, "no column for the required field"),
    ("a,b\n", {"a": "name", "b": "name"}, "several columns feed the field 'name'"),
    ("", None, "is empty"),
])
def test_bad_header_or_mapping_fails_clearly(db: Database, tmp_path: Path, text: str,
                                             mapping: dict[str, str] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        import_csv(db, "thirdparties", _write(tmp_path / "x.csv", text), mapping)
    assert service.list_thirdparties(db) == []


def test_missing_required_column_for_contacts(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"required field.* thirdparty"):
        import_csv(db, "contacts", _write(tmp_path / "c.csv", "name,addresses\nAnna,a@b.example\n"))


def test_not_utf8_fails_clearly(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("name\nMüller\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        import_csv(db, "thirdparties", path)


def _fill(db: Database) -> None:
    acme = service.add_thirdparty(db, name="Acme, Ltd", external_id="C-1", kind="customer", tags=["vip", "uk"],
                                  custom_fields={"vat": "GB1", "note": 'two\nlines, "quoted"'}, owner="bob",
                                  language="en", domains=["acme.example", "Müller.example"],
                                  addresses=["info@acme.example"])
    plain = service.add_thirdparty(db, name="No Id Supplies", kind="supplier", custom_fields={"size": "3"})
    service.add_contact(db, thirdparty_id=acme, name="Anna", addresses=["anna@acme.example", "a@acme.example"],
                        phones=["+44 1"], role="buyer", external_id="P-1", language="en")
    service.add_contact(db, thirdparty_id=plain, name="Bob", addresses=["bob@nois.example"])
    service.add_document(db, ref="INV-1", thirdparty_id=acme)
    service.add_document(db, ref="Q-7", thirdparty_id=plain, kind="proposal")


def _without_ids(data: dict) -> dict:
    drop = {"id", "created_at", "updated_at"}
    out = {k: v for k, v in data.items() if k not in drop}
    out["contacts"] = [{k: v for k, v in c.items() if k != "id"} for c in data["contacts"]]
    out["documents"] = [{k: v for k, v in d.items() if k != "id"} for d in data["documents"]]
    return out


def test_export_then_import_into_an_empty_database_gives_the_same_directory(db: Database, tmp_path: Path) -> None:
    _fill(db)
    copy = Database(f"sqlite:///{tmp_path / 'copy.db'}")
    copy.upgrade()
    try:
        for entity in ("thirdparties", "contacts", "documents"):
            path = _write(tmp_path / f"{entity}.csv", export(db, entity, "csv"))
            report = import_csv(copy, entity, path)
            assert report.rejected == [] and report.updated == 0
        for entity in ("thirdparties", "contacts", "documents"):
            assert export(copy, entity, "csv") == export(db, entity, "csv")
        originals = [_without_ids(service.describe_thirdparty(db, tp.id or 0)) for tp in service.list_thirdparties(db)]
        copies = [_without_ids(service.describe_thirdparty(copy, tp.id or 0))
                  for tp in service.list_thirdparties(copy)]
        assert copies == originals
        # importing the same export again only updates
        again = import_csv(copy, "thirdparties", tmp_path / "thirdparties.csv")
        assert (again.inserted, again.updated) == (1, 1)  # the row without external id is inserted again
    finally:
        copy.dispose()


def test_json_export(db: Database) -> None:
    _fill(db)
    tps = json.loads(export(db, "thirdparties", "json"))
    assert tps[0]["name"] == "Acme, Ltd" and tps[0]["tags"] == ["vip", "uk"]
    assert tps[0]["domains"] == ["acme.example", "xn--mller-kva.example"]
    assert tps[0]["custom_fields"]["vat"] == "GB1"
    contacts = json.loads(export(db, "contacts", "json"))
    assert [(c["name"], c["thirdparty"]) for c in contacts] == [("Anna", "C-1"), ("Bob", "No Id Supplies")]
    docs = json.loads(export(db, "documents", "json"))
    assert [(d["ref"], d["kind"], d["thirdparty"]) for d in docs] == [("INV-1", "invoice", "C-1"),
                                                                      ("Q-7", "proposal", "No Id Supplies")]
    with pytest.raises(ValueError, match="unknown format"):
        export(db, "thirdparties", "xml")
