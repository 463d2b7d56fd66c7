"""Human-readable output for the CLI: tables, times, and text from mail or the directory made safe to print."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

# C0 controls (CR, LF, ESC, ...), DEL, C1 controls, bidi marks/overrides/isolates, line/paragraph separators
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value: object) -> str:
    """`value` as text that is safe on a terminal: control characters and bidi overrides (from mail headers,
    directory imports, server replies) are shown escaped (`\\n`, `\\x1b`, `\\u202e`), so they cannot start a
    new line, move the cursor, recolour the screen or reverse the text around them."""
    return _UNSAFE.sub(_escaped, "" if value is None else str(value))


def say(line: str, *, err: bool = False) -> None:
    """Print one line whose parts may come from mail or the directory (see `printable`)."""
    click.echo(printable(line), err=err)


def _escaped(found: re.Match[str]) -> str:
    char = found.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def local_time(value: datetime | None, zone: str) -> str:
    """`2026-11-27 14:05` in the time zone `zone` (the rules' one), or "-"."""
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") if value else "-"


def print_status(data: dict[str, Any]) -> None:
    totals = data["totals"]
    click.echo(f"messages {totals['messages']}   locations {totals['locations']}   "
               f"quarantined {totals['quarantined']}   events {totals['events']}")
    outbox = data.get("outbox") or {}
    if outbox:
        click.echo("outbox   " + "   ".join(f"{status} {count}" for status, count in sorted(outbox.items())))
    rules = data.get("rules") or {}
    if rules:
        actions = "   ".join(f"{status} {count}" for status, count in sorted(rules["actions"].items())) or "none yet"
        behind = "-" if rules["events_behind"] is None else rules["events_behind"]
        click.echo(f"rules    actions: {actions}   events not yet seen: {behind}   "
                   f"scheduler: {rules['scheduler'] or 'not running'}")
    classify = data.get("classify") or {}
    if classify.get("on") and classify.get("unclassified"):
        by = f"daemon {classify['backfill']} classifies them" if classify.get("backfill") else \
            "`maild run` classifies them in the background, or `maild classify --backfill`"
        click.echo(f"classify {classify['unclassified']} stored message(s) without a kind yet ({by})")
    print_workers(data.get("workers") or [])
    if not data["folders"]:
        click.echo("no folders yet: configure sources and run `maild run` or `maild ingest --once`")
        return
    rows = [("SOURCE", "FOLDER", "UIDVALIDITY", "LAST UID", "SEEN", "QUAR", "LAG", "LAST SYNC", "HELD BY", "VIA")]
    for f in data["folders"]:
        ago = f["seconds_since_success"]
        last_uid = str(f["last_uid"]) if f["kind"] == "imap" else "-"
        rows.append((f["source"], f["folder"] or "(maildir)", _s(f["uidvalidity"]), last_uid,
                     str(f["locations"]), str(f["quarantined"]), _s(f["lag"]),
                     "never" if ago is None else f"{_age(ago)} ago", f["held_by"] or "-", _s(f.get("connection"))))
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for f in data["folders"]:
        if f["last_error"]:
            say(f"last error {f['source']}/{f['folder']} at {f['last_error_at']}: {f['last_error']}")


def print_workers(workers: list[dict[str, Any]]) -> None:
    """One line per worker of each running daemon; its last error (and when it retries) below it."""
    for w in workers:
        extra = f"   restarts {w['restarts']}" if w["restarts"] else ""
        if w["attempt"]:
            extra += f"   failed {w['attempt']}x in a row"
        say(f"worker   {w['name']}: {w['state']}{extra}   (daemon {w['owner']})")
        if w["last_error"] and (w["state"] != "running" or w["restarts"]):
            retry = f", next try {w['retry_at']}" if w["retry_at"] and w["state"] != "running" else ""
            say(f"  last error at {w['last_error_at']}{retry}: {w['last_error']}")


def _s(value: Any) -> str:
    return "-" if value is None else str(value)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
