"""Changes made with the CLI (invoices, payments, directory, imports) are in the audit log, with the CLI's actor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maild.business.tasks import create_task
from maild.store.db import Database
from tests.helpers import config_at, invoke, write_config

CLERK = {"LOGNAME": "clara"}  # the CLI's actor is the operating-system user (getpass reads LOGNAME first)


def _run(config: Path, *args: str, check: bool = True) -> str:
    return invoke(config, *args, env=CLERK, check=check).stdout


def _audit(config: Path, *args: str) -> list[dict[str, Any]]:
    return json.loads(_run(config, "audit", "--json", "--limit", "100", *args))


def test_cli_changes_are_audited_with_before_and_after(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path / "home", db_url, [])
    _run(config, "thirdparty", "add", "Müller & Söhne", "--external-id", "C-1", "--domain", "mueller.example",
         "--town", "Köln", "--field", "segment=A")
    _run(config, "contact", "add", "Jürgen Weiß", "--thirdparty", "C-1", "--address", "jw@mueller.example",
         "--role", "buyer")
    _run(config, "thirdparty", "add", "Other GmbH", "--external-id", "C-2")
    _run(config, "invoice", "add", "FA-1", "--thirdparty", "C-1", "--date", "2026-11-03", "--due", "2026-11-17",
         "--amount", "1.428,00")
    _run(config, "invoice", "add", "FA-1", "--currency", "chf")
    _run(config, "invoice", "pay", "FA-1", "1.000,00", "--date", "2026-11-20", "--reference", "B-1")
    _run(config, "invoice", "pay", "FA-1", "1.000,00", "--date", "2026-11-20", "--reference", "B-1")  # once only
    _run(config, "invoice", "dispute", "FA-1", "--reason", "wrong amount")
    _run(config, "document", "add", "AN-7", "--thirdparty", "C-1", "--kind", "proposal")
    _run(config, "document", "add", "AN-7", "--thirdparty", "C-2", "--kind", "proposal")

    entries = _audit(config)
    assert all((e["actor"], e["via"]) == ("clara", "cli") for e in entries)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in reversed(entries):  # oldest first
        by_action.setdefault(entry["action"], []).append(entry)
    assert [e["action"] for e in reversed(entries)] == [
        "thirdparty.create", "contact.create", "thirdparty.create", "invoice.create", "invoice.update",
        "invoice.payment", "invoice.dispute", "document.create", "document.update"]

    [tp, other] = by_action["thirdparty.create"]
    assert tp["before"] is None and tp["target"] == "thirdparty:1" and other["after"]["name"] == "Other GmbH"
    assert (tp["after"]["name"], tp["after"]["external_id"], tp["after"]["domains"]) == (
        "Müller & Söhne", "C-1", ["mueller.example"])
    assert tp["after"]["postal_address"] == {"town": "Köln"} and tp["after"]["custom_fields"] == {"segment": "A"}
    [contact] = by_action["contact.create"]
    assert (contact["after"]["thirdparty_id"], contact["after"]["addresses"], contact["after"]["role"]) == (
        1, ["jw@mueller.example"], "buyer")

    [created] = by_action["invoice.create"]
    assert created["before"] is None
    assert (created["after"]["ref"], created["after"]["amount"], created["after"]["currency"]) == (
        "FA-1", "1428.00", "EUR")
    [updated] = by_action["invoice.update"]
    assert (updated["before"]["currency"], updated["after"]["currency"]) == ("EUR", "CHF")
    [payment] = by_action["invoice.payment"]
    assert payment["before"] == {"status": "open", "paid_amount": "0.00"}
    assert payment["after"]["paid_amount"] == "1000.00" and payment["after"]["payment"]["reference"] == "B-1"
    [dispute] = by_action["invoice.dispute"]
    assert (dispute["before"]["status"], dispute["after"]["status"]) == ("open", "disputed")
    assert dispute["after"]["reason"] == "wrong amount"

    [doc_new] = by_action["document.create"]
    [doc_moved] = by_action["document.update"]
    assert doc_new["before"] is None and doc_new["after"]["thirdparty_id"] == 1
    assert (doc_moved["before"]["thirdparty_id"], doc_moved["after"]["thirdparty_id"]) == (1, 2)

    # a change that fails writes no entry
    assert "no third party" in invoke(config, "invoice", "add", "FA-9", "--thirdparty", "C-404", "--date",
                                      "2026-11-03", "--due", "2026-11-17", "--amount", "5", env=CLERK,
                                      check=False).stderr
    assert len(_audit(config)) == len(entries)


def test_an_import_is_one_audit_entry_with_its_counts(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path / "home", db_url, [])
    good = tmp_path / "parties.csv"
    good.write_text("external_id,name\nC-1,Müller\nC-2,Schmidt\n", encoding="utf-8")
    _run(config, "import", "thirdparties", str(good))
    good.write_text("external_id,name\nC-1,Müller AG\nC-3,Weber\n", encoding="utf-8")
    _run(config, "import", "thirdparties", str(good))
    bad = tmp_path / "invoices.csv"
    bad.write_text("ref,thirdparty,issued_on,due_on,amount\nFA-1,C-1,2026-11-01,2026-11-15,100\n"
                   "FA-2,C-404,2026-11-01,2026-11-15,100\n", encoding="utf-8")
    assert "nothing imported" in invoke(config, "import", "invoices", str(bad), env=CLERK, check=False).stdout
    invoke(config, "import", "invoices", str(bad), "--skip-invalid", env=CLERK, check=False)

    [second, first] = _audit(config, "--action", "import.thirdparties")
    assert (first["actor"], first["via"], first["target"]) == ("clara", "cli", "file:parties.csv")
    assert (first["after"]["inserted"], first["after"]["updated"], first["after"]["rejected"]) == (2, 0, 0)
    assert (second["after"]["inserted"], second["after"]["updated"]) == (1, 1)
    [invoices] = _audit(config, "--action", "import.invoices")  # the all-or-nothing run stored nothing: no entry
    assert invoices["after"]["file"] == str(bad) and invoices["after"]["skip_invalid"] is True
    assert (invoices["after"]["inserted"], invoices["after"]["rejected"]) == (1, 1)


def test_meeting_and_task_changes_are_audited(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path / "home", db_url, [])
    _run(config, "thirdparty", "add", "Müller", "--external-id", "C-1")
    out = _run(config, "meeting", "add", "Kick-off", "--start", "2026-12-03T10:00:00+00:00", "--minutes", "30",
               "--thirdparty", "C-1", "--next-step", "send offer")
    assert "added meeting #1" in out
    _run(config, "meeting", "cancel", "1")
    _run(config, "meeting", "cancel", "1")  # already cancelled: no change, no entry
    db = Database(config_at(config).database_url)
    try:
        with db.engine.begin() as conn:
            create_task(conn, title="Call Müller", owner="lena", thirdparty_id=1, rule="dunning")
    finally:
        db.dispose()
    _run(config, "task", "done", "1")
    _run(config, "task", "done", "1")  # already done: no entry

    [done, cancel, created, _tp] = _audit(config)
    assert all((e["actor"], e["via"]) == ("clara", "cli") for e in (done, cancel, created))
    assert (created["action"], created["target"], created["before"]) == ("meeting.create", "meeting:1", None)
    assert (created["after"]["subject"], created["after"]["thirdparty_id"], created["after"]["next_steps"]) == (
        "Kick-off", 1, ["send offer"])
    assert cancel["action"] == "meeting.cancel"
    assert (cancel["before"]["status"], cancel["after"]["status"]) == ("confirmed", "cancelled")
    assert (done["action"], done["target"], done["before"]["status"], done["after"]["status"]) == (
        "task.done", "task:1", "open", "done")
