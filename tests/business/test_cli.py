"""`maild invoice|meeting|task|import` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

from maild.business.tasks import create_task
from maild.store.db import Database
from tests.helpers import config_at, invoke, write_config


def _config(home: Path) -> Path:
    path = write_config(home, f"sqlite:///{home / 'm.db'}", [])
    path.write_text(path.read_text() + "matching:\n  own_domains: [nordlicht.example]\n"
                    "rules:\n  timezone: Europe/Berlin\n")
    invoke(path, "thirdparty", "add", "Müller & Söhne", "--external-id", "C-1", "--domain", "mueller.example")
    invoke(path, "contact", "add", "Jürgen Weiß", "--thirdparty", "C-1", "--address", "jw@mueller.example")
    return path


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_invoice_lifecycle(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = invoke(config, "invoice", "add", "FA-1", "--thirdparty", "C-1", "--date", "2026-11-03", "--due-days", "14",
                "--line", "Wartung|2|100|19|h").stdout
    assert out.strip() == "added invoice #1 FA-1 of #1 Müller & Söhne: 238.00 EUR, due 2026-11-17, open"
    assert "updated invoice #1 FA-1" in invoke(config, "invoice", "add", "FA-1", "--currency", "chf").stdout
    assert "invoice FA-1" in invoke(config, "document", "add", "FA-1", "--thirdparty", "C-1").stdout  # same document
    listing = invoke(config, "invoice", "list", "--overdue").stdout
    assert "FA-1" in listing and "238.00 CHF" in listing
    pay = invoke(config, "invoice", "pay", "FA-1", "200,00", "--date", "2026-11-20", "--reference", "B-1").stdout
    assert pay.strip() == "recorded payment #1 on invoice FA-1: paid 200.00, due 38.00, open"
    again = invoke(config, "invoice", "pay", "FA-1", "200,00", "--date", "2026-11-20", "--reference", "B-1").stdout
    assert "already recorded" in again
    done = invoke(config, "invoice", "pay", "FA-1", "38", "--date", "2026-11-21", "--reference", "B-2").stdout
    assert done.strip().endswith("paid (now fully paid)")
    show = invoke(config, "invoice", "show", "FA-1").stdout
    assert "Wartung: 2 x 100.00 CHF (VAT 19%) = 200.00 CHF" in show and "2026-11-21  38.00 CHF  B-2" in show
    data = json.loads(invoke(config, "invoice", "show", "FA-1", "--json").stdout)
    assert data["status"] == "paid" and data["amount_due"] == "0.00" and len(data["payments"]) == 2
    assert "invoice FA-1: disputed" in invoke(config, "invoice", "status", "FA-1", "disputed").stdout
    assert json.loads(invoke(config, "invoice", "list", "--status", "disputed", "--json").stdout)[0]["ref"] == "FA-1"


def test_clean_errors(tmp_path: Path) -> None:
    config = _config(tmp_path)
    cases = [
        (("invoice", "add", "FA-2", "--date", "2026-01-01", "--due", "2026-01-31", "--amount", "5"),
         "a new invoice needs --thirdparty"),
        (("invoice", "add", "FA-2", "--thirdparty", "C-1", "--date", "2026-01-01", "--due", "2026-01-31",
          "--amount", "-5"), "must not be negative"),
        (("invoice", "add", "FA-2", "--thirdparty", "C-1", "--date", "2026-01-01", "--due", "2026-01-31",
          "--amount", "lots"), "not an amount"),
        (("invoice", "add", "FA-2", "--thirdparty", "Nobody", "--date", "x"), "no third party"),
        (("invoice", "pay", "FA-404", "5"), "no invoice 'FA-404'"),
        (("invoice", "show", "FA-404"), "no invoice 'FA-404'"),
        (("meeting", "add", "Call", "--start", "soon"), "start is not a time"),
        (("meeting", "add", "Call", "--start", "2026-11-19T10:00", "--attendee", "no-address"),
         "not a valid mail address"),
        (("meeting", "cancel", "99"), "no meeting '99'"),
        (("task", "done", "7"), "no task with id 7"),
    ]
    for args, message in cases:
        result = invoke(config, *args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_meetings_and_tasks(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = invoke(config, "meeting", "add", "Rollout", "--start", "2026-11-19 14:00", "--minutes", "90",
                "--attendee", "Lena <lena@nordlicht.example>", "--attendee", "jw@mueller.example",
                "--next-step", "Send the offer").stdout
    assert out.strip() == "added meeting #1 'Rollout' 2026-11-19 14:00-15:30 (Europe/Berlin) with #1 Müller & Söhne"
    show = invoke(config, "meeting", "show", "1").stdout
    assert "lena@nordlicht.example" in show and "(internal)" in show
    assert "Jürgen Weiß <jw@mueller.example>  (external, contact #1, third party #1)" in show
    data = json.loads(invoke(config, "meeting", "list", "--json").stdout)
    assert data[0]["start_at"] == "2026-11-19T13:00:00+00:00" and data[0]["next_steps"] == ["Send the offer"]
    assert "cancelled" in invoke(config, "meeting", "cancel", "1").stdout
    assert "it already was" in invoke(config, "meeting", "cancel", "1").stdout

    db = Database(config_at(config).database_url)
    with db.engine.begin() as conn:
        create_task(conn, title="Call Müller about FA-1", owner="lena", thirdparty_id=1, rule="dunning")
        create_task(conn, title="Other", owner="max")
    listing = invoke(config, "task", "list", "--owner", "Lena", "--open").stdout
    assert "Call Müller about FA-1" in listing and "Other" not in listing and "dunning" in listing
    assert "task #1: done" in invoke(config, "task", "done", "1").stdout
    assert [t["id"] for t in json.loads(invoke(config, "task", "list", "--open", "--json").stdout)] == [2]


def test_import_invoices_payments_meetings(tmp_path: Path) -> None:
    config = _config(tmp_path)
    invoices = _csv(tmp_path / "inv.csv", "Number,thirdparty,issued_on,due_on,amount,currency\n"
                    "FA-1,C-1,2026-10-01,2026-10-15,\"1.234,50\",EUR\n"
                    "FA-2,Müller & Söhne,2026-10-02,2026-10-16,99.90,\n"
                    "FA-3,Nobody,2026-10-02,2026-10-16,10,\n"
                    "FA-4,C-1,2026-10-02,2026-10-16,-1,\n")
    refused = invoke(config, "import", "invoices", str(invoices), "--map", "Number=ref", check=False)
    assert refused.returncode == 1 and refused.stdout.startswith("nothing imported: 2 row(s) rejected")
    assert f"{invoices}:4: no third party with external id, name or mail address 'Nobody'" in refused.stdout
    assert f"{invoices}:5: invoice amount must not be negative: '-1'" in refused.stdout
    assert json.loads(invoke(config, "invoice", "list", "--json").stdout) == []  # all or nothing
    first = invoke(config, "import", "invoices", str(invoices), "--map", "Number=ref", "--skip-invalid", check=False)
    assert first.returncode == 1
    assert first.stdout.splitlines()[0] == "inserted 2, updated 0, rejected 2"
    rerun = invoke(config, "import", "invoices", str(invoices), "--map", "Number=ref", "--skip-invalid", check=False)
    assert rerun.stdout.splitlines()[0] == "inserted 0, updated 2, rejected 2"

    payments = _csv(tmp_path / "pay.csv", "invoice;amount;paid_on;reference\nFA-2;99.90;2026-10-10;TX-1\n"
                    "FA-1;1000;2026-10-11;TX-2\nFA-1;garbage;2026-10-11;TX-3\n")
    paid = invoke(config, "import", "payments", str(payments), "--delimiter", ";", "--skip-invalid", check=False)
    assert paid.stdout.splitlines()[0] == "inserted 2, updated 0, rejected 1"
    assert invoke(config, "import", "payments", str(payments), "--delimiter", ";", "--skip-invalid",
                 check=False).stdout.splitlines()[0] == "inserted 0, updated 2, rejected 1"
    data = {i["ref"]: i for i in json.loads(invoke(config, "invoice", "list", "--json").stdout)}
    assert data["FA-1"]["paid_amount"] == "1000.00" and data["FA-1"]["amount_due"] == "234.50"
    assert data["FA-2"]["status"] == "paid"

    meetings = _csv(tmp_path / "m.csv", "subject,start,end,attendees,location\n"
                    "Kickoff,2026-11-19 14:00,2026-11-19 15:00,jw@mueller.example;lena@nordlicht.example,HH\n"
                    "Broken,2026-11-19 14:00,2026-11-19 13:00,,\n")
    imported = invoke(config, "import", "meetings", str(meetings), "--skip-invalid", check=False)
    assert imported.stdout.splitlines()[0] == "inserted 1, updated 0, rejected 1"
    assert f"{meetings}:3: the meeting ends" in imported.stdout
    assert invoke(config, "import", "meetings", str(meetings), "--skip-invalid",
                 check=False).stdout.startswith("inserted 0, updated 1")
    [meeting] = json.loads(invoke(config, "meeting", "list", "--json").stdout)
    assert meeting["thirdparty_id"] == 1 and meeting["start_at"] == "2026-11-19T13:00:00+00:00"

    missing = invoke(config, "import", "payments", str(invoices), check=False)
    assert missing.returncode == 1 and "no column for the required field(s) invoice, paid_on" in missing.stderr
