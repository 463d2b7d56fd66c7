from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import invoke, write_config


def _config(home: Path) -> Path:
    return write_config(home, f"sqlite:///{home / 'm.db'}", [])


def test_add_show_and_list_from_the_command_line(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = invoke(config, "thirdparty", "add", "Müller Bau GmbH", "--kind", "supplier", "--external-id", "ERP-1",
                "--domain", "Müller.example", "--address", "Info+web@MÜLLER.example", "--tag", "vip",
                "--field", "vat=DE123", "--language", "de").stdout
    assert out.strip() == "added third party #1 Müller Bau GmbH"
    assert "to #1 Müller Bau GmbH" in invoke(config, "contact", "add", "Anna Schmidt", "--thirdparty",
                                             "muller bau gmbh", "--address", "Anna+Sales@Müller.example",
                                             "--phone", "+49 30 1", "--role", "buyer").stdout
    assert "invoice INV-7" in invoke(config, "document", "add", "INV-7", "--thirdparty", "ERP-1").stdout

    show = invoke(config, "thirdparty", "show", "ERP-1").stdout
    assert "#1 Müller Bau GmbH  (supplier)" in show
    assert "domains: xn--mller-kva.example (müller.example)" in show
    assert "addresses: info@xn--mller-kva.example" in show
    assert "vat: DE123" in show
    assert "contacts: 1" in show
    assert "Anna Schmidt  buyer  anna@xn--mller-kva.example  +49 30 1" in show
    assert "invoice INV-7" in show
    data = json.loads(invoke(config, "thirdparty", "show", "1", "--json").stdout)
    assert data["contacts"][0]["addresses"] == ["anna@xn--mller-kva.example"]

    listing = invoke(config, "thirdparty", "list", "--kind", "supplier", "--tag", "vip").stdout
    assert "ERP-1" in listing and "Müller Bau GmbH" in listing
    assert "no third parties match" in invoke(config, "thirdparty", "list", "--kind", "prospect").stdout
    contacts = invoke(config, "contact", "list", "--thirdparty", "ERP-1").stdout
    assert "Anna Schmidt" in contacts and "anna@xn--mller-kva.example" in contacts


def test_errors_are_one_clean_line(tmp_path: Path) -> None:
    config = _config(tmp_path)
    missing = invoke(config, "thirdparty", "show", "Nobody", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: no third party with id, external id, name or mail address 'Nobody'"
    bad = invoke(config, "thirdparty", "add", "Acme", "--address", "not-an-address", check=False)
    assert bad.returncode == 1 and "not a valid mail address: 'not-an-address'" in bad.stderr
    assert "Traceback" not in bad.stderr
    mapping = invoke(config, "import", "thirdparties", str(_csv(tmp_path / "a.csv", "name\nA\n")),
                    "--map", "name=title", check=False)
    assert mapping.returncode == 1 and "unknown field" in mapping.stderr and "Traceback" not in mapping.stderr


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reports_rejected_lines_and_export_round_trips(tmp_path: Path) -> None:
    config = _config(tmp_path / "a")
    tps = _csv(tmp_path / "tp.csv", (
        "Id,Company,domains,addresses,tags\n"
        'C-1,Acme,acme.example,info@acme.example,"vip;\nuk"\n'
        "C-2,,beta.example,,\n"
        "C-3,Gamma,,bad address,\n"
        "C-4,Delta,delta.example,,\n"
    ))
    args = ("import", "thirdparties", str(tps), "--map", "Id=external_id", "--map", "Company=name")
    refused = invoke(config, *args, check=False)
    assert refused.returncode == 1
    assert refused.stdout.splitlines() == [
        "nothing imported: 2 row(s) rejected (all or nothing; fix them and import again, or import the other 2 "
        "row(s) with --skip-invalid)",
        f"{tps}:4: name is missing",
        f"{tps}:5: not a valid mail address: 'bad address'",
    ]
    assert invoke(config, "thirdparty", "list").stdout.startswith("no third parties yet")
    result = invoke(config, *args, "--skip-invalid", check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "inserted 2, updated 0, rejected 2",
        f"{tps}:4: name is missing",
        f"{tps}:5: not a valid mail address: 'bad address'",
    ]
    contacts = _csv(tmp_path / "c.csv", "thirdparty\tname\taddresses\nC-1\tAnna\tanna@acme.example\n")
    assert invoke(config, "import", "contacts", str(contacts), "--delimiter", "tab").stdout.startswith(
        "inserted 1, updated 0, rejected 0")

    copy = _config(tmp_path / "b")
    for entity in ("thirdparties", "contacts"):
        out = tmp_path / f"{entity}-export.csv"
        assert invoke(config, "export", entity, "--output", str(out)).stdout.strip() == f"wrote {out}"
        assert invoke(copy, "import", entity, str(out)).stdout.startswith("inserted")
        assert invoke(copy, "export", entity).stdout == invoke(config, "export", entity).stdout
    exported = json.loads(invoke(copy, "export", "thirdparties", "--format", "json").stdout)
    assert [(t["external_id"], t["tags"]) for t in exported] == [("C-1", ["vip", "uk"]), ("C-4", [])]
