"""Postal addresses on third parties and contacts, and a contact's name parts for letters: CSV import and export,
the service, the CLI."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner

from maild.cli.context import AppContext
from maild.cli.directory import contact as contact_group
from maild.cli.directory import thirdparty as thirdparty_group
from maild.directory import service
from maild.directory.csv_export import export
from maild.directory.csv_import import import_csv
from maild.store.db import Database
from tests.rules.test_engine_support import make_config

THIRDPARTIES = """external_id,name,street,zip,town,country
C-1,Nordlicht Handel GmbH,Hafenstraße 12,20457,Hamburg,
C-2,Bergblick AG,Bahnhofstrasse 3,8001,Zürich,Schweiz
"""
CONTACTS = """external_id,thirdparty,name,addresses,salutation,title,first_name,last_name,street,zip,town
P-1,C-1,Dr. Greta Nord,greta@nordlicht.example,Frau,Dr.,Greta,Nord,,,
P-2,C-2,Urs Berg,urs@bergblick.example,Herr,,Urs,Berg,Postfach 44,8021,Zürich
"""


def test_csv_import_export_round_trip_of_postal_addresses_and_names(db: Database, tmp_path: Path) -> None:
    (tmp_path / "tp.csv").write_text(THIRDPARTIES, encoding="utf-8")
    (tmp_path / "c.csv").write_text(CONTACTS, encoding="utf-8")
    assert import_csv(db, "thirdparties", tmp_path / "tp.csv").committed
    assert import_csv(db, "contacts", tmp_path / "c.csv").committed
    tps = list(csv.DictReader(io.StringIO(export(db, "thirdparties"))))
    assert [(t["name"], t["street"], t["zip"], t["town"], t["country"]) for t in tps] == [
        ("Nordlicht Handel GmbH", "Hafenstraße 12", "20457", "Hamburg", ""),
        ("Bergblick AG", "Bahnhofstrasse 3", "8001", "Zürich", "Schweiz")]
    people = list(csv.DictReader(io.StringIO(export(db, "contacts"))))
    assert [(p["salutation"], p["title"], p["first_name"], p["last_name"], p["street"], p["town"]) for p in people] == [
        ("Frau", "Dr.", "Greta", "Nord", "", ""), ("Herr", "", "Urs", "Berg", "Postfach 44", "Zürich")]
    # A file without the columns leaves them as they are; an empty cell clears one.
    (tmp_path / "tp2.csv").write_text("external_id,name,country\nC-1,Nordlicht Handel GmbH,Deutschland\n"
                                      "C-2,Bergblick AG,\n", encoding="utf-8")
    assert import_csv(db, "thirdparties", tmp_path / "tp2.csv").committed
    tps = list(csv.DictReader(io.StringIO(export(db, "thirdparties"))))
    assert [(t["street"], t["country"]) for t in tps] == [("Hafenstraße 12", "Deutschland"), ("Bahnhofstrasse 3", "")]
    # An address line is one line.
    (tmp_path / "bad.csv").write_text('external_id,name,street\nC-3,X,"a\nb"\n', encoding="utf-8")
    report = import_csv(db, "thirdparties", tmp_path / "bad.csv")
    assert not report.committed and report.rejected == [(2, "street must be one line: 'a\\nb'")]


def test_cli_adds_and_shows_postal_addresses(db: Database, tmp_path: Path) -> None:
    make_config(tmp_path, db)
    app = AppContext(str(tmp_path / "maild.yaml"), False)
    runner = CliRunner()
    result = runner.invoke(thirdparty_group, ["add", "Nordlicht Handel GmbH", "--street", "Hafenstraße 12", "--zip",
                                              "20457", "--town", "Hamburg"], obj=app)
    assert result.exit_code == 0, result.output
    result = runner.invoke(contact_group, ["add", "Greta Nord", "--thirdparty", "Nordlicht Handel GmbH",
                                           "--salutation", "Frau", "--title", "Dr.", "--first-name", "Greta",
                                           "--last-name", "Nord", "--address", "greta@nordlicht.example"], obj=app)
    assert result.exit_code == 0, result.output
    result = runner.invoke(thirdparty_group, ["show", "Nordlicht Handel GmbH"], obj=app)
    assert result.exit_code == 0 and "postal address: Hafenstraße 12, 20457 Hamburg" in result.output, result.output
    contact = service.list_contacts(db)[0]
    assert (contact["salutation"], contact["title"], contact["last_name"]) == ("Frau", "Dr.", "Nord")
