"""Load and validate rule files: YAML in, a frozen `RuleSet` out, or `RuleErrors` listing every problem.

    load_rules(directory, timezone=..., templates_dir=..., webhook_secrets=...) -> RuleSet
        every *.yaml / *.yml, in name order
    load_rule_file(path, timezone=..., templates_dir=..., webhook_secrets=...) -> list[Rule]

Each problem reads `FILE:LINE:COLUMN: key.path: what was expected` (1-based, from PyYAML's node marks);
the file format is described in maild/rules/model.py and, for users, docs/rules.md. A missing directory
is an empty rule set. Files whose name starts with a dot (editor backups) are skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from maild.rules.durations import format_duration
from maild.rules.load_actions import ActionReader
from maild.rules.load_expressions import ExpressionReader
from maild.rules.model import (
    EVENT_TYPES,
    SWEEP_DATES,
    EventTrigger,
    Position,
    Rule,
    RuleError,
    RuleErrors,
    RuleSet,
    ScheduleTrigger,
    SweepTrigger,
    Trigger,
)
from maild.rules.yaml_nodes import (
    Errors,
    compose,
    describe,
    duration,
    is_scalar,
    mapping,
    string,
    strings,
    suggestion,
    value_of,
)

RULE_FILE_SUFFIXES = (".yaml", ".yml")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
FILE_KEYS = ("timezone", "rules")
RULE_KEYS = ("name", "description", "enabled", "on", "if", "once_per", "do")
TRIGGER_KINDS = ("event", "schedule", "sweep")
SWEEP_KEYS = ("date", "offset", "until")


def load_rules(directory: Path, *, timezone: str = "UTC", templates_dir: Path | None = None,
               webhook_secrets: Collection[str] | None = None) -> RuleSet:
    """Every rule file of `directory`, validated together (names unique across files, one timezone).

    `timezone` is the config's `rules.timezone`, used unless the files set their own; `templates_dir`,
    when given, is where every `send.template` must exist; `webhook_secrets`, when given, the names a webhook's
    `secret:` may use (the config's `rules.webhook_secrets`). Raises RuleErrors with all problems found.
    """
    directory = Path(directory)
    if not directory.exists():
        return RuleSet(timezone=timezone)
    if not directory.is_dir():
        raise RuleErrors([RuleError(None, "", f"{_display(directory)}: the rules directory is not a directory")])
    paths = sorted(p for p in directory.iterdir()
                   if p.suffix in RULE_FILE_SUFFIXES and not p.name.startswith(".") and p.is_file())
    secrets = frozenset(webhook_secrets) if webhook_secrets is not None else None
    results = [_read_file(path, timezone, templates_dir, secrets) for path in paths]
    errors = [error for result in results for error in result.errors]
    errors += _unique_names(results)
    zone, zone_errors = _agreed_timezone(results, timezone)
    errors += zone_errors
    if errors:
        raise RuleErrors(errors)
    rules = tuple(_in_zone(rule, zone) for result in results for rule in result.rules)
    return RuleSet(rules=rules, files=tuple(p.name for p in paths), timezone=zone)


def load_rule_file(path: Path, *, timezone: str = "UTC", templates_dir: Path | None = None,
                   webhook_secrets: Collection[str] | None = None) -> list[Rule]:
    """The rules of one file (its own `timezone:` wins over `timezone`); RuleErrors on any problem."""
    secrets = frozenset(webhook_secrets) if webhook_secrets is not None else None
    result = _read_file(Path(path), timezone, templates_dir, secrets)
    errors = result.errors + _unique_names([result])
    if errors:
        raise RuleErrors(errors)
    zone = result.timezone or timezone
    return [_in_zone(rule, zone) for rule in result.rules]


@dataclass
class _FileResult:
    rules: list[Rule] = field(default_factory=list)
    names: list[tuple[str, str, Position]] = field(default_factory=list)  # (name, key path, position of name)
    timezone: str | None = None
    timezone_at: Position | None = None
    errors: list[RuleError] = field(default_factory=list)


def _read_file(path: Path, default_timezone: str, templates_dir: Path | None,
               webhook_secrets: frozenset[str] | None) -> _FileResult:
    errors = Errors(_display(path))
    result = _FileResult(errors=errors.items)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.add(None, "", f"cannot read the rule file: {getattr(exc, 'strerror', None) or exc}")
        return result
    root = compose(text, errors)
    if root is None:
        return result  # empty file (or a syntax error, already recorded)
    items = mapping(root, "", errors, allowed=FILE_KEYS, required=("rules",),
                    expected="a mapping with `rules:` (a list of rules) and optionally `timezone:`")
    if items is None:
        return result
    if "timezone" in items:
        zone_node = items["timezone"][1]
        result.timezone = _timezone(zone_node, errors)
        result.timezone_at = errors.position(zone_node)
    zone = result.timezone or default_timezone
    if "rules" in items:
        rules_node = items["rules"][1]
        if not isinstance(rules_node, yaml.SequenceNode):
            errors.add(rules_node, "rules", f"expected a list of rules (each starting with `- name:`); "
                                            f"got {describe(rules_node)}")
            return result
        for index, rule_node in enumerate(rules_node.value):
            _read_rule(rule_node, f"rules[{index}]", path.name, zone, templates_dir, webhook_secrets, errors,
                       result)
    return result


def _read_rule(node: yaml.Node, key: str, file: str, zone: str, templates_dir: Path | None,
               webhook_secrets: frozenset[str] | None, errors: Errors, result: _FileResult) -> None:
    items = mapping(node, key, errors, allowed=RULE_KEYS, required=("name", "on", "do"),
                    expected="a rule: a mapping with name, on and do")
    if items is None:
        return
    before = len(errors.items)
    name = None
    if "name" in items:
        name_node = items["name"][1]
        name = string(name_node, f"{key}.name", errors, "a rule name")
        if name is not None and not NAME_RE.match(name):
            errors.add(name_node, f"{key}.name", f"expected a rule name of letters, digits, '.', '_' and '-' "
                                                 f"(it goes into the ledger's keys); got {name!r}")
            name = None
        if name is not None:
            result.names.append((name, f"{key}.name", errors.position(name_node)))
    trigger = _trigger(items["on"][1], f"{key}.on", zone, errors) if "on" in items else None
    kind = _context_kind(trigger)
    exprs = ExpressionReader(errors, kind)
    conditions = _conditions(items["if"][1], f"{key}.if", exprs) if "if" in items else ()
    once_per = exprs.expression(items["once_per"][1], f"{key}.once_per") if "once_per" in items else None
    description = ""
    if "description" in items:
        description_node = items["description"][1]
        description = string(description_node, f"{key}.description", errors, "a text") or ""
    enabled = True
    if "enabled" in items:
        enabled_node = items["enabled"][1]
        value = value_of(enabled_node) if is_scalar(enabled_node) else None
        if not isinstance(value, bool):
            errors.add(enabled_node, f"{key}.enabled", f"expected true or false; got {describe(enabled_node)}")
        enabled = value is not False
    mail_events = (all(t.startswith("mail.") for t in trigger.types) if isinstance(trigger, EventTrigger)
                   else None if trigger is None else False)
    reader = ActionReader(errors, exprs, mail_events=mail_events, templates_dir=templates_dir,
                          webhook_secrets=webhook_secrets)
    actions = reader.actions(items["do"][1], f"{key}.do") if "do" in items else ()
    if len(errors.items) > before or name is None or trigger is None or conditions is None:
        return
    result.rules.append(Rule(name=name, file=file, position=errors.position(node), trigger=trigger,
                             actions=actions, conditions=conditions, once_per=once_per, description=description,
                             enabled=enabled))


def _context_kind(trigger: Trigger | None) -> str | None:
    if trigger is None:
        return None
    return f"sweep:{trigger.record}" if isinstance(trigger, SweepTrigger) else trigger.kind


def _conditions(node: yaml.Node, key: str, exprs: ExpressionReader) -> tuple | None:
    if isinstance(node, yaml.SequenceNode):
        compiled = [exprs.expression(item, f"{key}[{index}]") for index, item in enumerate(node.value)]
        return tuple(compiled) if None not in compiled else None
    expression = exprs.expression(node, key)
    return (expression,) if expression is not None else None


# --- triggers ------------------------------------------------------------------------------------------


def _trigger(node: yaml.Node, key: str, zone: str, errors: Errors) -> Trigger | None:
    items = mapping(node, key, errors, allowed=(*TRIGGER_KINDS, *SWEEP_KEYS),
                    expected="a mapping with one of event:, schedule: or sweep:")
    if items is None:
        return None
    kinds = [kind for kind in TRIGGER_KINDS if kind in items]
    if len(kinds) != 1:
        got = f"{' and '.join(kinds)}" if kinds else "none"
        errors.add(node, key, f"expected exactly one trigger kind (event, schedule or sweep); got {got}")
        return None
    kind = kinds[0]
    if kind != "sweep":
        for extra in SWEEP_KEYS:
            if extra in items:
                errors.add(items[extra][0], f"{key}.{extra}", f"only with sweep: (a {kind} trigger has no {extra})")
                return None
    value_node = items[kind][1]
    if kind == "event":
        return _event(value_node, f"{key}.event", errors)
    if kind == "schedule":
        return _schedule(value_node, f"{key}.schedule", zone, errors)
    return _sweep(value_node, key, items, errors)


def _event(node: yaml.Node, key: str, errors: Errors) -> EventTrigger | None:
    types = strings(node, key, errors, "an event type such as mail.matched, or a list of them")
    if types is None:
        return None
    ok = True
    for name, item in types:
        if name not in EVENT_TYPES:
            ok = False
            errors.add(item, key, f"unknown event type {name!r}{suggestion(name, EVENT_TYPES)}; expected one of "
                                  f"{', '.join(sorted(EVENT_TYPES))}")
    return EventTrigger(types=tuple(dict.fromkeys(name for name, _ in types))) if ok else None


def _schedule(node: yaml.Node, key: str, zone: str, errors: Errors) -> ScheduleTrigger | None:
    expected = 'a mapping {cron: "0 8 * * mon-fri"} or {every: 15m}'
    items = mapping(node, key, errors, allowed=("cron", "every"), expected=expected)
    if items is None:
        return None
    if len(items) != 1:
        errors.add(node, key, f"expected {expected}: exactly one of cron or every")
        return None
    if "every" in items:
        every_node = items["every"][1]
        every = duration(every_node, f"{key}.every", errors)
        if every is not None and every.total_seconds() <= 0:
            errors.add(every_node, f"{key}.every", f"expected a positive duration; got {describe(every_node)}")
            return None
        return ScheduleTrigger(cron=None, every=every, timezone=zone) if every is not None else None
    cron_node = items["cron"][1]
    cron = string(cron_node, f"{key}.cron", errors, 'a cron expression of 5 fields, e.g. "0 8 * * mon-fri"')
    if cron is None:
        return None
    problem = _cron_problem(cron, zone)
    if problem:
        errors.add(cron_node, f"{key}.cron", problem)
        return None
    return ScheduleTrigger(cron=cron, every=None, timezone=zone)


def _cron_problem(cron: str, zone: str) -> str | None:
    from apscheduler.triggers.cron import CronTrigger

    fields = cron.split()
    if len(fields) == 5 and re.search(r"\d", fields[4]):
        return (f"write weekdays by name in the 5th field (mon-fri, sun); numbers are ambiguous (cron counts from "
                f"Sunday=0, APScheduler from Monday=0); got {cron!r}")
    try:
        CronTrigger.from_crontab(cron, timezone=zone)
    except (ValueError, TypeError) as exc:
        return f"expected a cron expression of 5 fields (minute hour day month weekday); got {cron!r}: {exc}"
    return None


def _sweep(node: yaml.Node, key: str, items: dict[str, tuple[yaml.Node, yaml.Node]],
           errors: Errors) -> SweepTrigger | None:
    record = string(node, f"{key}.sweep", errors, f"a record kind ({', '.join(sorted(SWEEP_DATES))})")
    if record is None:
        return None
    if record not in SWEEP_DATES:
        errors.add(node, f"{key}.sweep", f"unknown record kind {record!r}{suggestion(record, SWEEP_DATES)}; "
                                         f"expected one of {', '.join(sorted(SWEEP_DATES))}")
        return None
    dates = sorted(SWEEP_DATES[record])
    if "date" not in items:
        errors.add(node, f"{key}.date", f"missing: the {record} date to count from ({', '.join(dates)})")
        return None
    date_node = items["date"][1]
    date = string(date_node, f"{key}.date", errors, f"a date field of {record} ({', '.join(dates)})")
    if date is None:
        return None
    if date not in SWEEP_DATES[record]:
        errors.add(date_node, f"{key}.date", f"{record} has no date field {date!r}{suggestion(date, dates)}; "
                                             f"expected one of {', '.join(dates)}")
        return None
    offset: timedelta | None = timedelta(0)
    if "offset" in items:
        offset = duration(items["offset"][1], f"{key}.offset", errors)
    until = duration(items["until"][1], f"{key}.until", errors) if "until" in items else None
    if offset is None or ("until" in items and until is None):
        return None
    if until is not None and until <= offset:
        until_node = items["until"][1]
        errors.add(until_node, f"{key}.until", f"expected a duration later than offset ({format_duration(offset)}), "
                                               f"or the window is empty; got {describe(until_node)}")
        return None
    return SweepTrigger(record=record, date=date, offset=offset, until=until)  # type: ignore[arg-type]


# --- across files ----------------------------------------------------------------------------------------


def _timezone(node: yaml.Node, errors: Errors) -> str | None:
    name = string(node, "timezone", errors, "an IANA time zone such as Europe/Berlin")
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.add(node, "timezone", f"expected an IANA time zone such as Europe/Berlin; got {name!r}")
        return None
    return name


def _agreed_timezone(results: list[_FileResult], default: str) -> tuple[str, list[RuleError]]:
    first: tuple[str, Position] | None = None
    errors = []
    for result in results:
        if result.timezone is None or result.timezone_at is None:
            continue
        if first is None:
            first = (result.timezone, result.timezone_at)
        elif result.timezone != first[0]:
            errors.append(RuleError(result.timezone_at, "timezone",
                                    f"{result.timezone!r} differs from {first[0]!r} set at {first[1]}; all rule "
                                    f"files must use one timezone (or leave it to the config's rules.timezone)"))
    return (first[0] if first else default), errors


def _unique_names(results: list[_FileResult]) -> list[RuleError]:
    seen: dict[str, Position] = {}
    errors = []
    for result in results:
        for name, key, position in result.names:
            if name in seen:
                errors.append(RuleError(position, key, f"rule name {name!r} is already used at {seen[name]}; "
                                                       "names must be unique across all rule files"))
            else:
                seen[name] = position
    return errors


def _in_zone(rule: Rule, zone: str) -> Rule:
    if isinstance(rule.trigger, ScheduleTrigger) and rule.trigger.timezone != zone:
        return dataclasses.replace(rule, trigger=dataclasses.replace(rule.trigger, timezone=zone))
    return rule


def _display(path: Path) -> str:
    """The path relative to the working directory when it is below it (shorter messages), else as given."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative
