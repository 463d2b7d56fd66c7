"""Rule actions, one function per kind: `plan_*` evaluates the action's values for one subject (no writes),
`apply_*` carries out a DB-only action inside the caller's transaction (the ledger row's), and `send` /
`post_webhook` do the two actions with an outside effect from their stored plan (so a retry or a takeover
after a crash does exactly the same thing).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from maild.business.invoices import invoice_context, set_status_in
from maild.business.notes import add_note
from maild.business.tasks import create_task
from maild.clock import as_utc
from maild.config import Config, ImapSourceConfig, resolve_path
from maild.filing.folders import folder_for
from maild.rules import loops, webhooks
from maild.rules.context import Evaluator, address_of, is_unknown_attendee
from maild.rules.expressions import Expression, TextTemplate
from maild.rules.ledger import jsonable
from maild.rules.model import (
    DUNNING_PDF,
    Action,
    AssignAction,
    MoveAction,
    NoteAction,
    SendAction,
    SetAction,
    TagAction,
    TaskAction,
    WebhookAction,
)
from maild.store.db import Database
from maild.store.models import FilingTask, Invoice, Location, Meeting, Message, Source, ThirdParty

_inv, _tp, _mt = Invoice.__table__, ThirdParty.__table__, Meeting.__table__
_ft, _loc, _src = FilingTask.__table__, Location.__table__, Source.__table__
_msg = Message.__table__
DB_ONLY = frozenset({"move", "tag", "set", "assign", "task", "note", "stop"})
INT_FIELDS = frozenset({"invoice.dunning_level", "invoice.dunning_repeats"})
# Names a folder template sees (the helpers are functions; folder templates take plain data).
FOLDER_NAMES = ("thirdparty", "contact", "message", "event", "invoice", "meeting", "owner", "now", "today", "rule")


@dataclass(slots=True)
class Run:
    """One rule run for one subject: the names its expressions see and the ids its actions act on."""

    rule_name: str
    subject: str
    reason: str
    names: dict[str, Any]
    thirdparty_id: int | None = None
    message_id: int | None = None
    invoice_id: int | None = None
    meeting_id: int | None = None
    event: dict[str, Any] | None = None
    record: dict[str, Any] | None = None  # the swept invoice/meeting
    evaluator: Evaluator = field(default_factory=Evaluator)

    def value(self, expression: Expression) -> Any:
        return self.evaluator.value(expression, self.names)

    def text(self, template: TextTemplate) -> str:
        return self.evaluator.text(template, self.names)


@dataclass(slots=True)
class Planned:
    data: dict[str, Any]
    summary: str


class ActionError(ValueError):
    """An action that cannot be done for this subject (no third party, no message, a bad value)."""


# --- planning (evaluation, no writes) -------------------------------------------------------------------


# What is the same for every subject of a pass: its clock (`now`, `today`) and the rule; the helpers that read
# only the clock.
PASS_NAMES = frozenset({"now", "today", "rule"})
PASS_FUNCTIONS = frozenset({"duration", "business_hours", "days_since", "days_until"})


def same_for_every_subject(action: Action) -> bool:
    """A `set` whose values read only the pass's clock and the rule (`invoice.dunning_level: 1`, `last_dunned_at:
    now`): its plan is the same for every subject of a pass that has the same kinds of records (`plan_set` checks
    only that), so the engine plans it once per pass."""
    if not isinstance(action.spec, SetAction):
        return False
    return all(expression.names <= PASS_NAMES and expression.functions <= PASS_FUNCTIONS
               for _, expression in action.spec.assignments)


def plan(action: Action, run: Run, key: str) -> Planned:
    planner: Callable[[Any, Run, str], Planned] = _PLANNERS[action.name]
    return planner(action.spec, run, key)


def planner(name: str) -> Callable[[Any, Run, str], Planned]:
    """The `plan_*` function of an action kind (`plan` is `planner(action.name)(action.spec, run, key)`)."""
    return _PLANNERS[name]


def plan_send(spec: SendAction, run: Run, key: str) -> Planned:
    value = run.value(spec.to)
    targets = value if isinstance(value, list | tuple) else ([] if value in (None, "") else (value,))
    addresses: list[str] = []
    unknown = 0
    for target in targets:
        if isinstance(target, dict) and target.get("internal"):
            continue  # an attendee who is one of us
        if is_unknown_attendee(target):
            unknown += 1  # named by an invitation, not in the directory: never mailed by a rule
            continue
        address = address_of(target)
        if address is None:
            raise ActionError(f"send: `to: {spec.to.source}` gave {_short(target)}, not a mail address")
        if _answers_machine_mail(run, address):
            raise ActionError(f"send: {address} sent machine mail ({run.names['message']['kind']}): rules never "
                              f"answer it (mail loops)")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        why = f" ({unknown} attendee(s) not in the directory: rules never mail them)" if unknown else ""
        raise ActionError(f"send: `to: {spec.to.source}` gave no recipient{why}")
    files: list[str] = []
    data: dict[str, Any] = {"template": spec.template, "to": addresses, "invoice_ref": None, "files": files,
                            "invoice_id": run.invoice_id, "meeting_id": run.meeting_id, "language": None,
                            "thirdparty_id": run.thirdparty_id, "message_id": run.message_id,
                            "on_event": run.subject.startswith("event:")}
    data["invoice_copy"] = False
    for name in spec.attach:
        letter = DUNNING_PDF.match(name)
        if name == "invoice_pdf" or letter:
            invoice = run.names.get("invoice")
            if not invoice:
                raise ActionError(f"send: attach {name}, but this subject has no invoice")
            data["invoice_ref"] = invoice["ref"]
            if letter:
                data["dunning_level"] = int(letter.group(1)) if letter.group(1) else int(invoice["dunning_level"]) + 1
                today = run.names.get("today")
                data["reminder_date"] = today.isoformat() if today is not None else None
            else:
                data["invoice_copy"] = True
        else:
            files.append(name)
    if spec.language is not None:
        language = run.value(spec.language)
        data["language"] = str(language) if language else None
    documents = [f"{data['invoice_ref']}.pdf"] if data["invoice_copy"] else []
    if data.get("dunning_level"):
        documents.append(f"the level {data['dunning_level']} reminder letter")
    pdf = f" with {' and '.join(documents)}" if documents else ""
    return Planned(data, f"send {spec.template} to {', '.join(addresses)}{pdf}")


def _answers_machine_mail(run: Run, address: str) -> bool:
    message = run.names.get("message")
    if not message or message.get("kind") in (None, "human"):
        return False
    return address.strip().lower() == (message.get("from") or "").lower()


def plan_move(spec: MoveAction, run: Run, key: str) -> Planned:
    if run.message_id is None:
        raise ActionError("move: this subject has no message")
    if spec.folder is None:
        return Planned({"message_id": run.message_id, "folder": None, "thirdparty_id": run.thirdparty_id},
                       f"file message {run.message_id} per the filing config")
    names = {name: run.names[name] for name in FOLDER_NAMES if name in run.names}
    try:
        folder = folder_for(spec.folder.source, names)
    except ValueError as exc:
        raise ActionError(f"move: {exc}") from None
    return Planned({"message_id": run.message_id, "folder": folder}, f"move message {run.message_id} to {folder}")


def plan_tag(spec: TagAction, run: Run, key: str) -> Planned:
    if spec.target == "message":
        if run.message_id is None:
            raise ActionError("tag: target message, but this subject has no message")
        if spec.remove:
            raise ActionError("tag: removing IMAP keywords from a message is not supported")
        return Planned({"target": "message", "message_id": run.message_id, "add": list(spec.add), "remove": []},
                       f"keywords {', '.join(spec.add)} on message {run.message_id}")
    if run.thirdparty_id is None:
        raise ActionError("tag: this subject has no third party")
    parts = [f"+{t}" for t in spec.add] + [f"-{t}" for t in spec.remove]
    return Planned({"target": "thirdparty", "thirdparty_id": run.thirdparty_id, "add": list(spec.add),
                    "remove": list(spec.remove)}, f"tag third party {run.thirdparty_id}: {' '.join(parts)}")


_SET_NEEDS = {"invoice": ("invoice_id", "invoice"), "meeting": ("meeting_id", "meeting"),
              "thirdparty": ("thirdparty_id", "third party")}


def plan_set(spec: SetAction, run: Run, key: str) -> Planned:
    values: dict[str, Any] = {}
    shown: list[str] = []
    for name, expression in spec.assignments:
        value = run.value(expression)
        needs = _SET_NEEDS.get(name.partition(".")[0])
        if needs is not None and getattr(run, needs[0]) is None:
            raise ActionError(f"set {name}: this subject has no {needs[1]}")
        value = values[name] = _coerce(name, value)
        shown.append(f"{name}={_short(jsonable(value))}")
    return Planned({"values": values}, f"set {', '.join(shown)}")


def plan_assign(spec: AssignAction, run: Run, key: str) -> Planned:
    if run.thirdparty_id is None:
        raise ActionError("assign: this subject has no third party")
    owner = run.value(spec.owner)
    owner = address_of(owner) if isinstance(owner, dict) else (str(owner).strip() if owner is not None else None)
    return Planned({"thirdparty_id": run.thirdparty_id, "owner": owner or None},
                   f"assign third party {run.thirdparty_id} to {owner or 'nobody'}")


def plan_task(spec: TaskAction, run: Run, key: str) -> Planned:
    title = run.text(spec.title).strip()
    owner = run.value(spec.owner) if spec.owner is not None else run.names.get("owner")
    owner = address_of(owner) if isinstance(owner, dict) else (str(owner) if owner else None)
    now: datetime = run.names["now"]
    due = now + spec.due if spec.due is not None else None
    data = {"title": title, "kind": spec.kind, "owner": owner, "due_at": due}
    return Planned(data, f"{spec.kind} {title!r} for {owner or 'nobody'}{_due_text(due)}")


@functools.lru_cache(maxsize=64)
def _due_text(due: datetime | None) -> str:
    """`, due 2026-12-01 09:30` (strftime is slow, and a pass gives every task of a rule the same due time)."""
    return f", due {due:%Y-%m-%d %H:%M}" if due else ""


def plan_note(spec: NoteAction, run: Run, key: str) -> Planned:
    if run.thirdparty_id is None:
        raise ActionError("note: this subject has no third party")
    text = run.text(spec.text).strip()
    return Planned({"text": text}, f"note {_short(text)}")


def plan_webhook(spec: WebhookAction, run: Run, key: str) -> Planned:
    body = {"rule": run.rule_name, "key": key, "subject": run.subject, "reason": run.reason,
            "thirdparty_id": run.thirdparty_id, "message_id": run.message_id, "event": run.event,
            "record": run.record, "thirdparty": run.names.get("thirdparty")}
    text = json.dumps(jsonable(body), sort_keys=True, ensure_ascii=False)
    data = {"url": spec.url, "body": text, "secret": spec.secret, "timeout": spec.timeout}
    return Planned(data, f"POST {spec.url}")


def plan_stop(spec: Any, run: Run, key: str) -> Planned:
    return Planned({}, f"stop: no later rule runs for {run.subject}")


_PLANNERS: dict[str, Callable[[Any, Run, str], Planned]] = {
    "send": plan_send, "move": plan_move, "tag": plan_tag, "set": plan_set, "assign": plan_assign,
    "task": plan_task, "note": plan_note, "webhook": plan_webhook, "stop": plan_stop,
}


def _coerce(name: str, value: Any) -> Any:
    if name in INT_FIELDS:
        if type(value) is int and value >= 0:
            return value  # what the general path below gives for it
        if isinstance(value, bool) or not isinstance(value, int | str | Decimal | float):
            raise ActionError(f"set {name}: {value!r} is not a whole number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ActionError(f"set {name}: {value!r} is not a whole number") from None
        if number != number.to_integral_value() or number < 0:
            raise ActionError(f"set {name}: {value!r} is not a whole number >= 0")
        return int(number)
    if name == "invoice.last_dunned_at":
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ActionError(f"set {name}: {value!r} is not a time with a time zone (use `now`)")
        return as_utc(value)
    if name == "invoice.late_fees":
        try:
            fees = Decimal(str(value)).quantize(Decimal("0.01"))
        except InvalidOperation:
            raise ActionError(f"set {name}: {value!r} is not an amount") from None
        if fees < 0:
            raise ActionError(f"set {name}: {value!r} is negative")
        return fees
    if name in ("invoice.status", "meeting.status", "thirdparty.kind", "thirdparty.owner"):
        return None if value is None and name == "thirdparty.owner" else str(value)
    return value  # thirdparty.fields.NAME: any JSON value


# --- DB-only actions, in the ledger row's transaction -----------------------------------------------


@dataclass
class Env:
    config: Config
    db: Database
    plan_filing: Callable[[Connection, dict[int, int | None]], int]


@dataclass(frozen=True, slots=True)
class Nothing:
    """What `apply` returns for an action that had nothing to do, and why (shown by `rules log` and `simulate`)."""

    reason: str


def apply(conn: Connection, env: Env, name: str, planned: Planned, run: Run,
          now: datetime) -> dict[str, Any] | Nothing:
    """Carry out a DB-only action; returns what it did (for the ledger and the timeline), or `Nothing` and why
    (a move of mail that is in no IMAP folder, already where it should be, or whose account's filing is off)."""
    data = planned.data
    if name == "stop":
        return {}
    if name == "set":
        return _apply_set(conn, data["values"], run, now)
    if name == "tag":
        return _apply_tag(conn, data) if data["target"] == "thirdparty" else _tag_message(conn, data, now)
    if name == "assign":
        conn.execute(update(_tp).where(_tp.c.id == data["thirdparty_id"]).values(owner=data["owner"], updated_at=now))
        _update_view(run.names.get("thirdparty"), run.thirdparty_id, "owner", data["owner"])
        _owner_changed(run, data["owner"])
        return {"owner": data["owner"]}
    if name == "task":
        task_id = create_task(conn, title=data["title"], kind=data["kind"], thirdparty_id=run.thirdparty_id,
                              owner=data["owner"], due_at=data["due_at"], invoice_id=run.invoice_id,
                              meeting_id=run.meeting_id, message_id=run.message_id, rule=run.rule_name,
                              reason=run.reason)
        return {"task_id": task_id}
    if name == "note":
        assert run.thirdparty_id is not None
        event_id = add_note(conn, thirdparty_id=run.thirdparty_id, text=data["text"], rule=run.rule_name,
                            message_id=run.message_id)
        return {"note_event_id": event_id}
    if name == "move":
        return _apply_move(conn, env, data, now)
    raise ActionError(f"{name} is not a DB-only action")


def _apply_set(conn: Connection, values: dict[str, Any], run: Run, now: datetime) -> dict[str, Any]:
    invoice_values: dict[str, Any] = {}
    tp_values: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    done: dict[str, Any] = {}
    for name, value in values.items():
        record, _, column = name.partition(".")
        if name == "invoice.status":
            ref = conn.execute(select(_inv.c.ref).where(_inv.c.id == run.invoice_id)).scalar_one()
            set_status_in(conn, ref, value, reason=f"rule {run.rule_name}")
        elif record == "invoice":
            invoice_values[column] = value
        elif name == "meeting.status":
            conn.execute(update(_mt).where(_mt.c.id == run.meeting_id).values(status=value, updated_at=now))
        elif column.startswith("fields."):
            custom[column.removeprefix("fields.")] = value
        else:
            tp_values[column] = value
        done[name] = value
        if name == "thirdparty.owner":
            _owner_changed(run, value)
        view = run.names.get(record)
        if isinstance(view, dict):
            if column.startswith("fields."):
                view.setdefault("fields", {})[column.removeprefix("fields.")] = value
            else:
                view[column] = value
    if invoice_values:  # the SET clause from the parameters' keys: one compiled statement per set of fields
        conn.execute(_UPDATE_INVOICE, {**invoice_values, "updated_at": now, "invoice_key": run.invoice_id})
        invoice = run.names.get("invoice")
        if isinstance(invoice, dict) and "late_fees" in invoice_values:
            invoice["amount_due"] = invoice["amount"] - invoice["paid_amount"] + invoice["late_fees"]
    if custom:
        current = conn.execute(select(_tp.c.custom_fields).where(_tp.c.id == run.thirdparty_id)).scalar_one()
        tp_values["custom_fields"] = {**(current or {}), **jsonable(custom)}
    if tp_values:
        conn.execute(update(_tp).where(_tp.c.id == run.thirdparty_id).values(**tp_values, updated_at=now))
    return {"values": done}


_UPDATE_INVOICE = update(_inv).where(_inv.c.id == bindparam("invoice_key"))


def _apply_tag(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    tp_id = data["thirdparty_id"]
    tags = list(conn.execute(select(_tp.c.tags).where(_tp.c.id == tp_id)).scalar_one() or [])
    removed = {t.casefold() for t in data["remove"]}
    result = [t for t in tags if str(t).casefold() not in removed]
    for tag in data["add"]:
        if tag.casefold() not in {str(t).casefold() for t in result}:
            result.append(tag)
    if result != tags:
        conn.execute(update(_tp).where(_tp.c.id == tp_id).values(tags=result))
    return {"tags": result, "before": tags}


def _tag_message(conn: Connection, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """IMAP keywords through filing tasks: added to a pending move of the message (keywords go first), else a
    keywords task per IMAP location (a finished one is reopened with the new keywords)."""
    message_id, keywords = data["message_id"], list(data["add"])
    locations = _imap_locations(conn, message_id)
    touched = 0
    for location_id in locations:
        tasks = conn.execute(select(_ft).where(_ft.c.location_id == location_id)).all()
        pending = next((t for t in tasks if t.status == "pending" and t.action in ("move", "copy", "keywords")
                        and t.from_folder is None), None)
        if pending is not None:
            merged = sorted(set(pending.keywords or []) | set(keywords))
            conn.execute(update(_ft).where(_ft.c.id == pending.id).values(keywords=merged))
        elif any(t.target_folder == "" for t in tasks):
            conn.execute(update(_ft).where(_ft.c.location_id == location_id, _ft.c.target_folder == "")
                         .values(action="keywords", keywords=keywords, status="pending", attempts=0,
                                 last_error=None, done_at=None))
        else:
            conn.execute(_ft.insert().values(location_id=location_id, message_id=message_id, target_folder="",
                                             keywords=keywords, action="keywords", status="pending", attempts=0,
                                             created_at=now))
        touched += 1
    return {"keywords": keywords, "locations": touched}


def _apply_move(conn: Connection, env: Env, data: dict[str, Any], now: datetime) -> dict[str, Any] | Nothing:
    message_id, folder = data["message_id"], data["folder"]
    if folder is None:  # the filing config's folder, as the matching stage plans it
        reason = _not_filed_because(conn, env.config, message_id)
        if reason is not None:
            return Nothing(reason)
        planned = env.plan_filing(conn, {message_id: data.get("thirdparty_id")})
        return {"filing_tasks": planned} if planned else Nothing("the filing config gives it no folder and no keywords")
    moves = _moves(conn, message_id, folder)
    if not moves:
        return Nothing(_no_move_because(conn, message_id, folder))
    # A move still pending elsewhere would race this one: it is replaced (as triage does on assignment).
    conn.execute(delete(_ft).where(_ft.c.message_id == message_id, _ft.c.status != "done",
                                   _ft.c.action.in_(("move",)), _ft.c.target_folder != folder))
    for location_id, from_folder in moves:
        values = {"location_id": location_id, "message_id": message_id, "target_folder": folder, "action": "move",
                  "keywords": [], "status": "pending", "attempts": 0, "from_folder": from_folder,
                  "created_at": now, "last_error": None}
        conn.execute(_insert_ignore(env.db, _ft).values(**values))
    return {"folder": folder, "filing_tasks": len(moves)}


# The kinds whose `apply` may find nothing to do (returns `Nothing`: the ledger says skipped); `nothing_to_do`
# tells ahead.
MAY_DO_NOTHING = frozenset({"move"})


def signer(owner: str, config: Config) -> dict[str, str]:
    """The `sender` of a mail signed by `owner` (`Lena Berg <lena@ourco.example>`, `lena.berg@ourco.example` or a
    name): name and address; an address alone gives the name from its local part (lena.berg -> Lena Berg)."""
    name, address = parseaddr(owner)
    if "@" not in address:
        name, address = owner.strip(), config.outbound.sender
    elif not name:
        local = address.split("@", 1)[0].split("+", 1)[0]
        name = " ".join(part.capitalize() for part in re.split(r"[._-]+", local) if part)
    return {"name": name, "email": address, "address": address}


def nothing_to_do(conn: Connection, config: Config, name: str, data: dict[str, Any]) -> str | None:
    """Why this planned action (`plan_*`'s data) would do nothing, or None when it would do something. Read only,
    for `simulate`; what `apply` returning `Nothing` means for the real run. A move: not for a message in no IMAP
    folder (a Maildir message stays where it is), nor one already moved to that folder; `move: true` not for an
    account whose `filing.action` is `none` (filing off means off)."""
    if name not in MAY_DO_NOTHING:
        return None
    message_id, folder = data["message_id"], data["folder"]
    if folder is None:
        return _not_filed_because(conn, config, message_id)
    return None if _moves(conn, message_id, folder) else _no_move_because(conn, message_id, folder)


def _not_filed_because(conn: Connection, config: Config, message_id: int) -> str | None:
    """Why `move: true` files nothing for this message: it is in no IMAP folder, or every account it is in has
    `filing.action: none`. None when some account files it."""
    accounts = sorted(set(_imap_accounts(conn, message_id)))
    if not accounts:
        return f"message {message_id} is in no IMAP folder"
    filing = {s.name: (s.filing or config.filing) for s in config.sources if isinstance(s, ImapSourceConfig)}
    if any(name in filing and filing[name].action != "none" for name in accounts):
        return None
    off = [name for name in accounts if name in filing]
    if not off:
        return f"account {', '.join(accounts)} is no longer an IMAP source of the config"
    return (f"filing is off for account {', '.join(off)} (filing.action: none): `move: true` files nothing; "
            "to file by rule, write move: {folder: ...}")


def _no_move_because(conn: Connection, message_id: int, folder: str) -> str:
    if not _imap_locations(conn, message_id):
        return f"message {message_id} is in no IMAP folder"
    return f"message {message_id} is already in {folder}"


def _moves(conn: Connection, message_id: int, folder: str) -> list[tuple[int, str | None]]:
    """(location, the folder an earlier move put it in) for each IMAP copy of the message not yet in `folder`."""
    done_moves = {t.location_id: (t.target_folder, t.filed_folder or t.target_folder) for t in conn.execute(
        select(_ft.c.location_id, _ft.c.target_folder, _ft.c.filed_folder).where(
            _ft.c.message_id == message_id, _ft.c.status == "done", _ft.c.action == "move",
            _ft.c.target_folder != "").order_by(_ft.c.id))}
    return [(location_id, done_moves[location_id][1] if location_id in done_moves else None)
            for location_id in _imap_locations(conn, message_id)
            if done_moves.get(location_id, (None,))[0] != folder]


def _imap_locations(conn: Connection, message_id: int) -> list[int]:
    return [row[0] for row in conn.execute(
        select(_loc.c.id).join(_src, _src.c.id == _loc.c.source_id)
        .where(_loc.c.message_id == message_id, _src.c.kind == "imap").order_by(_loc.c.id))]


def _imap_accounts(conn: Connection, message_id: int) -> list[str]:
    """The IMAP accounts (source names) holding a copy of the message."""
    return list(conn.execute(select(_src.c.name).join(_loc, _loc.c.source_id == _src.c.id)
                             .where(_loc.c.message_id == message_id, _src.c.kind == "imap")).scalars())


def _insert_ignore(db: Database, table: Any) -> Any:
    return db.insert_ignore(table)


def _owner_changed(run: Run, owner: str | None) -> None:
    """`owner` is the meeting's owner, else the third party's: a new third-party owner shows in later steps."""
    if not (run.names.get("meeting") or {}).get("owner"):
        run.names["owner"] = owner


def _update_view(view: Any, thirdparty_id: int | None, key: str, value: Any) -> None:
    if isinstance(view, dict) and view.get("id") == thirdparty_id:
        view[key] = value


# --- send and webhook: from the stored plan ---------------------------------------------------------


def send(env: Env, data: dict[str, Any], key: str, daily_cap: loops.DailyCap | None = None) -> dict[str, Any]:
    """Prepare and queue one mail per recipient; the outbox key is the ledger key (per recipient when several),
    so doing this again after a crash queues nothing new. An event rule's mail is held back from an address
    over the daily cap (`daily_cap`: the batch's tally, else one for this send)."""
    from maild.outbound.mailing import prepare, queue

    extra: dict[str, Any] = {}
    with env.db.engine.connect() as conn:
        if data.get("invoice_id") is not None:
            extra["invoice"] = invoice_context(conn, int(data["invoice_id"]))
        if data.get("meeting_id") is not None:
            row = conn.execute(select(_mt).where(_mt.c.id == data["meeting_id"])).first()
            if row is not None:  # the templates' view (date, attendees' names...), like invoice_context
                from maild.business.meetings import meeting_context

                extra["meeting"] = meeting_context(conn, row, env.config.rules.timezone)
                if row.owner:  # the follow-up is signed by the meeting's owner (From stays the shared sender)
                    extra["sender"] = signer(row.owner, env.config)
        # The mail is about the rule's subject: its third party (also for a notice to an owner, who is none of
        # its contacts) and the message that triggered it.
        if data.get("thirdparty_id") is not None:
            row = conn.execute(select(_tp).where(_tp.c.id == data["thirdparty_id"])).first()
            if row is not None:
                from maild.business.people import thirdparty_view

                extra["thirdparty"] = thirdparty_view(conn, dict(row._mapping))
        if data.get("message_id") is not None:
            row = conn.execute(select(_msg).where(_msg.c.id == data["message_id"])).first()
            if row is not None:
                from maild.rules.context import message_view

                extra["message"] = message_view(row)
                # Whether the mail is (being) filed on the server, so a notice says so only when it is true.
                extra["filing"] = {"on": _not_filed_because(conn, env.config, int(data["message_id"])) is None}
    files = tuple(resolve_path(env.config.base_dir, name) for name in data.get("files") or [])
    outbox: list[dict[str, Any]] = []
    recipients = list(data["to"])
    keys = [key if len(recipients) == 1 else f"{key}/{address.lower()}" for address in recipients]
    cap = env.config.machine_mail.rule_mail_daily_cap
    if cap and data.get("on_event"):
        daily_cap = daily_cap or loops.DailyCap(env.db, cap)
        held = daily_cap.held_back(recipients, keys)
    else:
        daily_cap, held = None, [False] * len(recipients)
    for address, outbox_key, over in zip(recipients, keys, held, strict=True):
        if over:
            loops.hold_back(env.db, address, data, outbox_key, cap)
            outbox.append({"to": address, "held_back": f"already {cap} rule mails to it in 24 h"})
            continue
        mail = prepare(env.config, env.db, template=data["template"], to=address, invoice_ref=data.get("invoice_ref"),
                       attach=files, language=data.get("language"), extra=extra, auto_submitted=True,
                       invoice_copy=bool(data.get("invoice_copy", True)), dunning_level=data.get("dunning_level"),
                       reminder_date=data.get("reminder_date"))
        outbox_id, created = queue(env.config, env.db, mail, key=outbox_key, template=data["template"])
        if daily_cap is not None:
            daily_cap.queued(address, outbox_key)
        outbox.append({"to": address, "outbox_id": outbox_id, "queued": created, "key": outbox_key})
    return {"outbox": outbox}


def post_webhook(env: Env, data: dict[str, Any], key: str) -> dict[str, Any]:
    """POST the stored body, signed with the config's webhook secret the rule names (`maild.rules.webhooks`: public
    targets only unless allowed); raises on a refused target, a transport error or a non-2xx answer."""
    if not data.get("secret"):  # planned by an older maild, with secret_env/secret_file: no longer allowed
        raise ActionError("webhook: planned with secret_env/secret_file, which rules may no longer use; declare "
                          "the secret in the config's rules.webhook_secrets and name it in the rule (secret: NAME)")
    status = webhooks.post(env.config, data["url"], data["body"].encode("utf-8"), secret=data["secret"], key=key,
                           timeout=float(data.get("timeout") or 10.0))
    return {"status_code": status}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 1] + "…"
