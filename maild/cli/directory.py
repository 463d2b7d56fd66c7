"""`maild thirdparty|contact|document|import|export`: the third-party directory from the command line."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from maild.business import ENTITIES as BUSINESS_ENTITIES
from maild.cli.context import AppContext, parse_since, pass_app
from maild.cli.lazy import LazyGroup
from maild.cli.render import printable, say
from maild.directory.fields import KINDS

if TYPE_CHECKING:
    pass

ENTITIES = ("thirdparties", "contacts", "documents")
F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    """Invalid input and unknown references end the command with their message, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, LookupError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _pairs(values: tuple[str, ...], option: str, what: str) -> dict[str, str]:
    """KEY=VALUE options as a dict (split at the last `=` for --map, whose column names may hold one)."""
    out = {}
    for value in values:
        key, eq, rest = value.rpartition("=") if option == "--map" else value.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"{value!r} is not {what}", param_hint=option)
        out[key.strip()] = rest
    return out


# --- thirdparty --------------------------------------------------------------------------------


@click.group()
def thirdparty() -> None:
    """Customers, suppliers and prospects: the owners of timelines."""


def _postal_options(command: Any) -> Any:
    """--street, --zip, --town, --country."""
    for option in reversed((click.option("--street", help="Postal address: street and number."),
                            click.option("--zip", "zip_code", help="Postal code."),
                            click.option("--town", help="Town."),
                            click.option("--country", help="Country (leave out for your own country)."))):
        command = option(command)
    return command


@thirdparty.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS, case_sensitive=False), default="customer", show_default=True)
@click.option("--external-id", help="Its id in your ERP/CRM (import and export match on it).")
@click.option("--domain", "domains", multiple=True, metavar="D", help="A mail domain of the company (repeatable).")
@click.option("--address", "addresses", multiple=True, metavar="A",
              help="A general address such as info@ (repeatable); people's addresses go on contacts.")
@click.option("--tag", "tags", multiple=True, metavar="T", help="A tag (repeatable).")
@click.option("--owner", help="Who looks after this third party.")
@click.option("--language", help="Preferred language, e.g. de or fr-CH.")
@click.option("--field", "custom", multiple=True, metavar="KEY=VALUE", help="A custom field (repeatable).")
@_postal_options
@pass_app
@_friendly
def thirdparty_add(app: AppContext, name: str, kind: str, external_id: str | None, domains: tuple[str, ...],
                   addresses: tuple[str, ...], tags: tuple[str, ...], owner: str | None, language: str | None,
                   custom: tuple[str, ...], street: str | None, zip_code: str | None, town: str | None,
                   country: str | None) -> None:
    """Add a third party called NAME (with --street, --zip, --town, --country: the postal address letters use)."""
    from maild.services import directory
    from maild.services.actor import cli_actor

    fields = _pairs(custom, "--field", "KEY=VALUE")
    new_id = directory.add_thirdparty(app.database(), cli_actor(), name=name, kind=kind, external_id=external_id,
                                      tags=tags, custom_fields=fields, owner=owner, language=language,
                                      domains=domains, addresses=addresses,
                                      postal_address={"street": street, "zip": zip_code, "town": town,
                                                      "country": country})
    say(f"added third party #{new_id} {name.strip()}")


@thirdparty.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
@_friendly
def thirdparty_show(app: AppContext, ref: str, as_json: bool) -> None:
    """Everything about one third party. REF: its id, external id, exact name or a mail address of it."""
    from maild.directory import service

    db = app.database()
    tp = service.resolve_thirdparty(db, ref)
    assert tp.id is not None
    data = service.describe_thirdparty(db, tp.id)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    _print_description(data, app.config.rules.timezone)


@thirdparty.command("list")
@click.option("--kind", type=click.Choice(KINDS, case_sensitive=False), help="Only this kind.")
@click.option("--tag", help="Only third parties with this tag.")
@pass_app
@_friendly
def thirdparty_list(app: AppContext, kind: str | None, tag: str | None) -> None:
    """One line per third party: id, kind, external id, name, tags."""
    from maild.directory import service

    found = service.list_thirdparties(app.database(), kind=kind, tag=tag)
    if not found:
        click.echo("no third parties" + (" match" if kind or tag else " yet: `maild thirdparty add` or `maild import`"))
        return
    _table([("ID", "KIND", "EXTERNAL ID", "NAME", "TAGS")],
           [(f"#{tp.id}", tp.kind, tp.external_id or "-", tp.name, ", ".join(tp.tags or [])) for tp in found])


# --- contact -----------------------------------------------------------------------------------


@click.group(cls=LazyGroup, lazy_commands={"show": "maild.cli.machine:contact_show"})  # address health
def contact() -> None:
    """The people at a third party, with their addresses."""


@contact.command("add")
@click.argument("name")
@click.option("--thirdparty", "thirdparty_ref", required=True, metavar="REF",
              help="Their company: id, external id or exact name.")
@click.option("--address", "addresses", multiple=True, metavar="A", help="A mail address (repeatable).")
@click.option("--phone", "phones", multiple=True, metavar="P", help="A phone number (repeatable).")
@click.option("--role", help="E.g. buyer, accounting.")
@click.option("--external-id", help="Their id in your ERP/CRM.")
@click.option("--language", help="Preferred language.")
@click.option("--salutation", help="Frau, Herr, Ms, Mr ... (letters: \"Sehr geehrte Frau Dr. Nord\").")
@click.option("--title", help="Academic title, e.g. Dr. or Prof. Dr.")
@click.option("--first-name", help="First name.")
@click.option("--last-name", help="Last name (used in the letter's salutation).")
@_postal_options
@pass_app
@_friendly
def contact_add(app: AppContext, name: str, thirdparty_ref: str, addresses: tuple[str, ...], phones: tuple[str, ...],
                role: str | None, external_id: str | None, language: str | None, salutation: str | None,
                title: str | None, first_name: str | None, last_name: str | None, street: str | None,
                zip_code: str | None, town: str | None, country: str | None) -> None:
    """Add a contact called NAME to a third party (a postal address of their own is optional: letters use
    their company's otherwise)."""
    from maild.directory import service
    from maild.services import directory
    from maild.services.actor import cli_actor

    db = app.database()
    company = service.resolve_thirdparty(db, thirdparty_ref)
    assert company.id is not None
    letter = {"salutation": salutation, "title": title, "first_name": first_name, "last_name": last_name,
              "street": street, "zip": zip_code, "town": town, "country": country}
    new_id = directory.add_contact(db, cli_actor(), thirdparty_id=company.id, name=name, addresses=addresses,
                                   phones=phones, role=role, external_id=external_id, language=language,
                                   letter=letter)
    say(f"added contact #{new_id} {name.strip()} to #{company.id} {company.name}")


@contact.command("list")
@click.option("--thirdparty", "thirdparty_ref", metavar="REF", help="Only the contacts of this third party.")
@pass_app
@_friendly
def contact_list(app: AppContext, thirdparty_ref: str | None) -> None:
    """One line per contact: id, name, role, company, addresses."""
    from maild.directory import service

    db = app.database()
    tp_id = service.resolve_thirdparty(db, thirdparty_ref).id if thirdparty_ref else None
    found = service.list_contacts(db, tp_id)
    if not found:
        click.echo("no contacts")
        return
    _table([("ID", "NAME", "ROLE", "THIRD PARTY", "ADDRESSES")],
           [(f"#{c['id']}", c["name"], c["role"] or "-", f"#{c['thirdparty_id']} {c['thirdparty_name']}",
             ", ".join(c["addresses"]) or "-") for c in found])


# --- document ----------------------------------------------------------------------------------


@click.group()
def document() -> None:
    """Business documents (invoices, proposals, orders) whose reference can appear in mail."""


@document.command("add")
@click.argument("ref")
@click.option("--thirdparty", "thirdparty_ref", required=True, metavar="TP", help="Id, external id or name.")
@click.option("--kind", default="invoice", show_default=True, help="invoice, proposal, order, ...")
@pass_app
@_friendly
def document_add(app: AppContext, ref: str, thirdparty_ref: str, kind: str) -> None:
    """Record document REF as belonging to a third party (an existing REF of that kind moves to it)."""
    from maild.directory import service
    from maild.services import directory
    from maild.services.actor import cli_actor

    db = app.database()
    company = service.resolve_thirdparty(db, thirdparty_ref)
    assert company.id is not None
    doc_id, created = directory.upsert_document(db, cli_actor(), ref=ref, thirdparty_id=company.id, kind=kind)
    say(f"{'added' if created else 'updated'} document #{doc_id} {kind.strip().lower()} {ref.strip()} "
        f"of #{company.id} {company.name}")


# --- import / export ---------------------------------------------------------------------------


@click.command("import")
@click.argument("entity", type=click.Choice(ENTITIES + BUSINESS_ENTITIES))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "mapping", multiple=True, metavar="CSVCOLUMN=FIELD",
              help="Feed a field from a differently named column (repeatable); e.g. --map Company=name.")
@click.option("--delimiter", default=",", show_default=True, help="Cell separator; `tab` for tab-separated files.")
@click.option("--skip-invalid", is_flag=True,
              help="Import the good rows even when others are rejected (default: all rows or none).")
@click.option("--raw", is_flag=True,
              help="Keep a leading ' before =, +, -, @ (default: take off the one `maild export` adds).")
@pass_app
@_friendly
def import_(app: AppContext, entity: str, file: Path, mapping: tuple[str, ...], delimiter: str, skip_invalid: bool,
            raw: bool) -> None:
    """Import (upsert) thirdparties, contacts, documents, invoices, payments or meetings from a CSV file.

    \b
    Fields (a column named like a field feeds it; multiple values separated by ';'):
      thirdparties  external_id, name*, kind, tags, domains, addresses, owner, language, custom.NAME
      contacts      external_id, thirdparty* (external id or name), name*, addresses, phones, role, language
      documents     ref*, kind, thirdparty*
      invoices      ref*, thirdparty*, issued_on*, due_on* (YYYY-MM-DD), amount*, currency, status
      payments      invoice* (ref), amount*, paid_on*, reference (unique per invoice: a re-run pays once)
      meetings      uid, subject*, start*, end* (ISO 8601; without offset: rules.timezone), thirdparty,
                    location, attendees, organizer, owner, next_steps, status
    Upsert by external_id, invoice ref or meeting uid. The file is UTF-8 (a BOM is fine).

    All or nothing: bad rows are reported as FILE:LINE: reason and then no row is imported (exit 1);
    with --skip-invalid the other rows are imported (still exit 1). A cell `maild export` protected
    against spreadsheet formulas ('=..., '+..., '-..., '@...) loses that ' again unless --raw.
    """
    from maild.directory.csv_rows import ImportOptions

    sep = "\t" if delimiter in ("tab", "\\t") else delimiter
    columns = _pairs(mapping, "--map", "CSVCOLUMN=FIELD")
    options = ImportOptions(skip_invalid=skip_invalid, raw=raw)
    from maild.business.csv_import import ImportSettings
    from maild.business.meetings import OwnMail
    from maild.services.actor import cli_actor
    from maild.services.imports import import_file

    settings = (ImportSettings(OwnMail.from_config(app.config), app.config.rules.timezone)
                if entity in BUSINESS_ENTITIES else None)
    report = import_file(app.database(), cli_actor(), entity, file, columns, sep, options, settings)
    rejected = len(report.rejected)
    if report.committed:
        say(f"inserted {report.inserted}, updated {report.updated}, rejected {rejected}")
    else:
        good = report.inserted + report.updated
        others = f", or import the other {good} row(s) with --skip-invalid" if good else ""
        say(f"nothing imported: {rejected} row(s) rejected (all or nothing; fix them and import again{others})")
    if report.ignored_columns:
        say(f"ignored columns: {', '.join(report.ignored_columns)}")
    for line, reason in report.rejected:
        say(f"{file}:{line}: {reason}")
    if report.rejected:
        sys.exit(1)


@click.command("export")
@click.argument("entity", type=click.Choice(ENTITIES))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--raw", is_flag=True, help="CSV cells exactly as stored, without the ' put before a cell that "
                                          "starts with =, +, -, @, tab or CR (unsafe to open in a spreadsheet).")
@pass_app
@_friendly
def export_(app: AppContext, entity: str, fmt: str, output: Path | None, raw: bool) -> None:
    """Export thirdparties, contacts or documents; the CSV reads back with `maild import`.

    A CSV cell that starts with =, +, -, @, tab or CR gets a ' in front (as OWASP recommends), so that a
    spreadsheet shows it as text instead of running it as a formula (mail display names come from
    outsiders); `maild import` takes the ' off again. --raw leaves the cells as they are.
    """
    from maild.directory.csv_export import export

    text = export(app.database(), entity, fmt, raw=raw)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8", newline="")
    say(f"wrote {output}")


@click.command("timeline")
@click.argument("ref")
@click.option("--since", metavar="AGE", help="Only events since then: 30d, 12h, or a date such as 2026-11-01.")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only these kinds (repeatable): mail, invoice, payment, meeting, task, note, rule, or a full type "
                   "such as mail.sent.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="The newest this many events.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with each event's data).")
@pass_app
@_friendly
def timeline(app: AppContext, ref: str, since: str | None, types: tuple[str, ...], limit: int, as_json: bool) -> None:
    """The history of one third party, oldest first: mail in and out, opens and clicks, filing, invoices and
    payments, meetings, tasks, notes and what the rules did.

    REF: its id, external id, exact name, or a mail address of it or of one of its contacts.

    Times are in the rules' time zone (`rules.timezone`)."""
    from maild.business import history
    from maild.cli.render import local_time
    from maild.clock import utcnow
    from maild.directory import service

    db = app.database()
    tp = service.resolve_thirdparty(db, ref)
    assert tp.id is not None
    start = parse_since(since, utcnow()) if since else None
    entries = history.read(db, tp.id, since=start, types=types, limit=limit, zone=app.config.rules.timezone)
    if as_json:
        click.echo(json.dumps([e.as_json() for e in entries], indent=2, ensure_ascii=False, default=str))
        return
    if not entries:
        say(f"#{tp.id} {tp.name}: no events" + (" match" if since or types else " yet"))
        return
    zone = app.config.rules.timezone
    say(f"#{tp.id} {tp.name}: {len(entries)} event(s), oldest first")
    for entry in entries:
        say(f"{local_time(entry.occurred_at, zone)}  {entry.text}")




# --- helpers -----------------------------------------------------------------------------------


def _table(header: list[tuple[str, ...]], rows: list[tuple[str, ...]]) -> None:
    lines = [tuple(printable(cell) for cell in line) for line in header + rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _unicode_domain(domain: str) -> str:
    try:
        readable = domain.encode("ascii").decode("idna")
    except UnicodeError:
        return domain
    return domain if readable == domain else f"{domain} ({readable})"


def _postal(data: dict[str, Any]) -> str:
    """`Hafenstr. 1, 20457 Hamburg, DE` (the parts given), or ""."""
    town = " ".join(p for p in (data.get("zip"), data.get("town")) if p)
    return ", ".join(p for p in (data.get("street"), town, data.get("country")) if p)


def _print_description(data: dict[str, Any], zone: str = "UTC") -> None:
    from maild.business.history import describe

    say(f"#{data['id']} {data['name']}  ({data['kind']})")
    for label, value in (("external id", data["external_id"]), ("tags", ", ".join(data["tags"])),
                         ("owner", data["owner"]), ("language", data["language"]),
                         ("domains", ", ".join(_unicode_domain(d) for d in data["domains"])),
                         ("addresses", ", ".join(data["addresses"])), ("postal address", _postal(data))):
        if value:
            say(f"{label}: {value}")
    for key, value in sorted(data["custom_fields"].items()):
        say(f"{key}: {value}")
    say(f"contacts: {len(data['contacts'])}")
    for c in data["contacts"]:
        extra = [c["role"] or "", ", ".join(c["addresses"]), ", ".join(c["phones"]), _postal(c)]
        say(f"  #{c['id']} {c['name']}  " + "  ".join(part for part in extra if part))
    say(f"documents: {len(data['documents'])}")
    for d in data["documents"]:
        say(f"  {d['kind']} {d['ref']}")
    say(f"events (newest {len(data['events'])}):" if data["events"] else "events: none yet")
    for e in data["events"]:
        say(f"  {e['occurred_at'][:16].replace('T', ' ')}  {describe(e['type'], e['data'] or {}, zone)}")
    if data["events"]:
        say(f"(the whole history: maild timeline {data['id']})")
