"""The rule loader: every promised error message (FILE:LINE:COLUMN: key: expectation), from real files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from maild.rules.loader import load_rule_file, load_rules
from maild.rules.model import (
    EVENT_TYPES,
    AssignAction,
    EventTrigger,
    MoveAction,
    RuleErrors,
    ScheduleTrigger,
    SendAction,
    SetAction,
    StopAction,
    SweepTrigger,
    TagAction,
    TaskAction,
    WebhookAction,
)

OK_RULE = """\
  - name: {name}
    on: {{event: mail.matched}}
    do:
      - stop: true
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # positions then read rules/FILE.yaml:LINE:COLUMN, as users see them


def write(name: str, text: str) -> Path:
    path = Path("rules") / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(dedent(text), encoding="utf-8")
    return path


def errors(text: str, name: str = "r.yaml", **kwargs: object) -> list[str]:
    write(name, text)
    with pytest.raises(RuleErrors) as info:
        load_rules(Path("rules"), **kwargs)  # type: ignore[arg-type]
    return [str(error) for error in info.value.errors]


def one_rule(body: str, **kwargs: object) -> list[str]:
    """Errors of a file with one rule named r whose remaining lines are `body` (indented 4)."""
    text = "rules:\n  - name: r\n" + "".join(f"    {line}\n" for line in dedent(body).strip("\n").splitlines())
    return errors(text, **kwargs)


# --- files -------------------------------------------------------------------------------------------


def test_a_missing_directory_is_an_empty_rule_set(tmp_path: Path) -> None:
    ruleset = load_rules(tmp_path / "nothing-here", timezone="Europe/Berlin")
    assert ruleset.rules == () and ruleset.files == () and ruleset.timezone == "Europe/Berlin"


def test_files_load_in_name_order_yml_included_dotfiles_skipped() -> None:
    write("b.yml", "rules:\n" + OK_RULE.format(name="second"))
    write("a.yaml", "rules:\n" + OK_RULE.format(name="first"))
    write(".a.yaml.swp.yaml", "not: [valid")
    write("notes.txt", "ignored")
    write("empty.yaml", "# nothing yet\n")
    ruleset = load_rules(Path("rules"))
    assert [rule.name for rule in ruleset.rules] == ["first", "second"]
    assert ruleset.files == ("a.yaml", "b.yml", "empty.yaml")
    assert ruleset.rules[0].file == "a.yaml" and str(ruleset.rules[0].position) == "rules/a.yaml:2:5"


def test_yaml_syntax_error_has_file_line_column() -> None:
    assert errors("rules:\n  - name: a\n    on: {event: mail.matched\n") == [
        "rules/r.yaml:4:1: invalid YAML: expected ',' or '}', but got '<stream end>'"]


def test_top_level_must_be_a_mapping_with_rules() -> None:
    assert errors("- name: a\n") == [
        "rules/r.yaml:1:1: expected a mapping with `rules:` (a list of rules) and optionally `timezone:`; got a list"]
    assert errors("timezone: UTC\n") == ["rules/r.yaml:1:1: missing required key 'rules'"]


def test_rules_must_be_a_list() -> None:
    assert errors("rules:\n  name: a\n") == [
        "rules/r.yaml:2:3: rules: expected a list of rules (each starting with `- name:`); got a mapping"]


def test_unknown_key_suggests_the_close_one() -> None:
    assert one_rule("""
        descripton: typo
        on: {event: mail.matched}
        do: [stop: true]
    """) == ["rules/r.yaml:3:5: rules[0].descripton: unknown key (did you mean 'description'?); expected one of "
             "name, description, enabled, on, if, once_per, do"]


def test_unknown_top_level_key() -> None:
    assert errors("rule:\n" + OK_RULE.format(name="a"))[0] == (
        "rules/r.yaml:1:1: rule: unknown key (did you mean 'rules'?); expected one of timezone, rules")


def test_repeated_key() -> None:
    assert one_rule("""
        on: {event: mail.matched}
        on: {event: mail.unmatched}
        do: [stop: true]
    """) == ["rules/r.yaml:4:5: rules[0].on: repeated key (first at line 3)"]


def test_missing_required_keys() -> None:
    assert one_rule("on: {event: mail.matched}") == ["rules/r.yaml:2:5: rules[0]: missing required key 'do'"]
    assert errors("rules:\n  - description: x\n") == [
        "rules/r.yaml:2:5: rules[0]: missing required key 'name', 'on', 'do'"]


def test_wrong_types() -> None:
    assert one_rule("""
        enabled: sometimes
        description: [a, b]
        on: {event: mail.matched}
        do: [stop: true]
    """) == ["rules/r.yaml:4:18: rules[0].description: expected a text; got a list",
             "rules/r.yaml:3:14: rules[0].enabled: expected true or false; got 'sometimes'"]


def test_rule_name_must_be_usable_in_keys() -> None:
    assert errors("rules:\n" + OK_RULE.format(name="'two words'")) == [
        "rules/r.yaml:2:11: rules[0].name: expected a rule name of letters, digits, '.', '_' and '-' (it goes into "
        "the ledger's keys); got 'two words'"]


def test_rule_names_are_unique_across_files_with_both_positions() -> None:
    write("a.yaml", "rules:\n" + OK_RULE.format(name="same"))
    found = errors("rules:\n" + OK_RULE.format(name="other") + OK_RULE.format(name="same"), name="b.yaml")
    assert found == ["rules/b.yaml:6:11: rules[1].name: rule name 'same' is already used at rules/a.yaml:2:11; "
                     "names must be unique across all rule files"]


def test_every_error_is_reported_not_just_the_first() -> None:
    write("a.yaml", "rules:\n  - name: a\n    on: {event: zzz}\n    do: [stop: false]\n")
    found = errors("rules: [", name="b.yaml")
    assert found == [
        "rules/a.yaml:3:17: rules[0].on.event: unknown event type 'zzz'; expected one of "
        + ", ".join(sorted(EVENT_TYPES)),
        "rules/a.yaml:4:16: rules[0].do[0].stop: expected true; got false",
        "rules/b.yaml:1:9: invalid YAML: expected the node content, but found '<stream end>'"]


# --- timezone --------------------------------------------------------------------------------------


def test_timezone_default_file_setting_and_schedules() -> None:
    write("a.yaml", "rules:\n  - name: a\n    on: {schedule: {cron: '0 8 * * mon-fri'}}\n    do: [stop: true]\n")
    ruleset = load_rules(Path("rules"), timezone="America/New_York")
    assert ruleset.timezone == "America/New_York"
    assert ruleset.rules[0].trigger == ScheduleTrigger(cron="0 8 * * mon-fri", every=None, timezone="America/New_York")
    write("b.yaml", "timezone: Europe/Berlin\nrules: []\n")
    ruleset = load_rules(Path("rules"), timezone="America/New_York")
    assert ruleset.timezone == "Europe/Berlin" and ruleset.rules[0].trigger.timezone == "Europe/Berlin"


def test_files_must_agree_on_the_timezone() -> None:
    write("a.yaml", "timezone: Europe/Berlin\nrules: []\n")
    assert errors("timezone: Europe/Paris\nrules: []\n", name="b.yaml") == [
        "rules/b.yaml:1:11: timezone: 'Europe/Paris' differs from 'Europe/Berlin' set at rules/a.yaml:1:11; all rule "
        "files must use one timezone (or leave it to the config's rules.timezone)"]


def test_unknown_timezone() -> None:
    assert errors("timezone: Mars/Olympus\nrules: []\n") == [
        "rules/r.yaml:1:11: timezone: expected an IANA time zone such as Europe/Berlin; got 'Mars/Olympus'"]


# --- triggers --------------------------------------------------------------------------------------


def test_exactly_one_trigger_kind() -> None:
    assert one_rule("""
        on: {event: mail.matched, schedule: {every: 1h}}
        do: [stop: true]
    """) == ["rules/r.yaml:3:9: rules[0].on: expected exactly one trigger kind (event, schedule or sweep); "
             "got event and schedule"]
    assert one_rule("on: {}\ndo: [stop: true]") == [
        "rules/r.yaml:3:9: rules[0].on: expected exactly one trigger kind (event, schedule or sweep); got none"]


def test_unknown_event_type_suggests() -> None:
    found = one_rule("on: {event: [mail.matched, mail.recieved]}\ndo: [stop: true]")
    assert len(found) == 1
    assert found[0].startswith("rules/r.yaml:3:32: rules[0].on.event: unknown event type 'mail.recieved' "
                               "(did you mean 'mail.received'?); expected one of ")


def test_sweep_record_and_date_field() -> None:
    assert one_rule("on: {sweep: invoices, date: due_on}\ndo: [stop: true]") == [
        "rules/r.yaml:3:17: rules[0].on.sweep: unknown record kind 'invoices' (did you mean 'invoice'?); "
        "expected one of invoice, meeting"]
    assert one_rule("on: {sweep: invoice, date: due_at}\ndo: [stop: true]") == [
        "rules/r.yaml:3:32: rules[0].on.date: invoice has no date field 'due_at' (did you mean 'due_on'?); "
        "expected one of due_on, issued_on, last_dunned_at, paid_at"]
    assert one_rule("on: {sweep: meeting}\ndo: [stop: true]") == [
        "rules/r.yaml:3:17: rules[0].on.date: missing: the meeting date to count from (end_at, start_at)"]


def test_sweep_keys_only_with_sweep() -> None:
    assert one_rule("on: {event: mail.matched, offset: 2h}\ndo: [stop: true]") == [
        "rules/r.yaml:3:31: rules[0].on.offset: only with sweep: (a event trigger has no offset)"]


def test_duration_error_reads_as_promised() -> None:
    text = "rules:\n" + OK_RULE.format(name="a") + OK_RULE.format(name="b") + (
        "  - name: dunning-level-1\n    on:\n      sweep: invoice\n      date: due_on\n"
        "      offset: seven days\n    do: [stop: true]\n")
    assert errors(text, name="dunning.yaml") == [
        "rules/dunning.yaml:14:15: rules[2].on.offset: expected a duration like 7d, 2h, -3d, 1w; got 'seven days'"]


def test_sweep_window_must_not_be_empty() -> None:
    assert one_rule("on: {sweep: invoice, date: due_on, offset: 7d, until: 7d}\ndo: [stop: true]") == [
        "rules/r.yaml:3:59: rules[0].on.until: expected a duration later than offset (7d), or the window is empty; "
        "got '7d'"]


def test_sweep_trigger_built() -> None:
    write("r.yaml", "rules:\n  - name: r\n    on: {sweep: meeting, date: end_at, offset: 2h, until: 1d12h}\n"
                    "    do: [stop: true]\n")
    rule = load_rules(Path("rules")).rules[0]
    assert rule.trigger == SweepTrigger(record="meeting", date="end_at", offset=timedelta(hours=2),
                                        until=timedelta(days=1, hours=12))
    assert rule.context_kind == "sweep:meeting"


def test_cron_is_validated_with_apscheduler() -> None:
    assert one_rule("on: {schedule: {cron: '61 8 * * *'}}\ndo: [stop: true]") == [
        "rules/r.yaml:3:27: rules[0].on.schedule.cron: expected a cron expression of 5 fields (minute hour day "
        "month weekday); got '61 8 * * *': Error validating expression '61': the last value (61) is higher than "
        "the maximum value (59)"]


def test_cron_weekdays_by_name_only() -> None:
    assert one_rule("on: {schedule: {cron: '0 8 * * 1-5'}}\ndo: [stop: true]") == [
        "rules/r.yaml:3:27: rules[0].on.schedule.cron: write weekdays by name in the 5th field (mon-fri, sun); "
        "numbers are ambiguous (cron counts from Sunday=0, APScheduler from Monday=0); got '0 8 * * 1-5'"]


def test_schedule_every_and_exactly_one_of_cron_every() -> None:
    write("r.yaml", "rules:\n  - name: r\n    on: {schedule: {every: 90m}}\n    do: [stop: true]\n")
    assert load_rules(Path("rules")).rules[0].trigger.every == timedelta(minutes=90)  # type: ignore[union-attr]
    assert one_rule("on: {schedule: {every: -1h}}\ndo: [stop: true]") == [
        "rules/r.yaml:3:28: rules[0].on.schedule.every: expected a positive duration; got '-1h'"]
    assert one_rule("on: {schedule: {every: 1h, cron: '* * * * *'}}\ndo: [stop: true]") == [
        "rules/r.yaml:3:20: rules[0].on.schedule: expected a mapping {cron: \"0 8 * * mon-fri\"} or {every: 15m}: "
        "exactly one of cron or every"]


# --- expressions -------------------------------------------------------------------------------------


def test_expression_syntax_error_at_the_scalar() -> None:
    assert one_rule("""
        on: {event: mail.matched}
        if:
          - invoice.status ==
        do: [stop: true]
    """) == ["rules/r.yaml:5:9: rules[0].if[0]: invalid expression 'invoice.status ==': unexpected 'end of print "
             "statement'"]


def test_unknown_name_with_suggestion() -> None:
    found = one_rule("""
        on: {sweep: invoice, date: due_on}
        if: invoce.status == "open"
        do: [stop: true]
    """)
    assert found == ["rules/r.yaml:4:9: rules[0].if: unknown name 'invoce' (did you mean 'invoice'?); names here: "
                     "contact, invoice, now, owner, rule, thirdparty, today"]


def test_name_not_available_to_this_trigger() -> None:
    assert one_rule("""
        on: {sweep: meeting, date: end_at}
        if: invoice.status == "open"
        do: [stop: true]
    """) == ["rules/r.yaml:4:9: rules[0].if: 'invoice' is not available to sweep:meeting rules (only to event rules, "
             "sweep:invoice rules); names here: attendees, meeting, now, owner, rule, thirdparty, today"]


def test_unknown_function_with_suggestion() -> None:
    assert one_rule("""
        on: {event: mail.replied}
        if: days_overdu() > 3
        do: [stop: true]
    """) == ["rules/r.yaml:4:9: rules[0].if: unknown function 'days_overdu' (did you mean 'days_overdue'?); "
             "functions: amount_due, auto_replied_since, business_hours, contact_with_role, days_overdue, "
             "days_since, days_until, duration, has_tag, replied_since, undeliverable, wrote_to"]


def test_a_quoted_yaml_word_is_a_name_and_the_message_says_how_to_write_text() -> None:
    assert one_rule("""
        on: {event: mail.matched}
        do:
          - set: {invoice.status: "paused"}
    """) == ["rules/r.yaml:5:31: rules[0].do[0].set.invoice.status: unknown name 'paused'; names here: contact, "
             "event, invoice, meeting, message, now, owner, rule, thirdparty, today; to mean the text 'paused', "
             "write it as an expression string: '\"paused\"'"]


def test_expression_positions_and_yaml_literals_in_set() -> None:
    write("r.yaml", """\
        rules:
          - name: r
            on: {sweep: invoice, date: due_on}
            if:
              - invoice.status == "open"
            once_per: invoice.dunning_repeats
            do:
              - set:
                  invoice.dunning_level: 5
                  invoice.late_fees: 2.50
                  invoice.status: '"paused"'
                  invoice.last_dunned_at: null
                  thirdparty.fields.vip: true
                  invoice.dunning_repeats: invoice.dunning_repeats + 1
        """)
    rule = load_rules(Path("rules")).rules[0]
    assert str(rule.conditions[0].position) == "rules/r.yaml:5:9"
    assert rule.once_per is not None and rule.once_per.source == "invoice.dunning_repeats"
    spec = rule.actions[0].spec
    assert isinstance(spec, SetAction)
    sources = {field: expr.source for field, expr in spec.assignments}
    assert sources == {"invoice.dunning_level": "5", "invoice.late_fees": "2.50", "invoice.status": '"paused"',
                       "invoice.last_dunned_at": "none", "thirdparty.fields.vip": "true",
                       "invoice.dunning_repeats": "invoice.dunning_repeats + 1"}
    values = {field: expr.evaluate({"invoice": {"dunning_repeats": 2}}) for field, expr in spec.assignments}
    assert values["invoice.dunning_level"] == 5 and values["invoice.status"] == "paused"
    assert values["invoice.last_dunned_at"] is None and values["thirdparty.fields.vip"] is True
    assert values["invoice.dunning_repeats"] == 3
    assert str(spec.assignments[0][1].position) == "rules/r.yaml:9:34"


def test_text_template_names_are_checked_but_loop_variables_pass() -> None:
    write("r.yaml", "rules:\n  - name: r\n    on: {sweep: meeting, date: end_at}\n    do:\n"
                    "      - note: '{% for a in attendees %}{{ a.name }} {{ loop.index }}{% endfor %}'\n")
    assert load_rules(Path("rules")).rules[0].actions[0].name == "note"
    assert one_rule("on: {sweep: meeting, date: end_at}\ndo:\n  - note: 'Call {{ contact.name }}'") == [
        "rules/r.yaml:5:15: rules[0].do[0].note: 'contact' is not available to sweep:meeting rules (only to event "
        "rules, sweep:invoice rules); names here: attendees, meeting, now, owner, rule, thirdparty, today"]


# --- actions ---------------------------------------------------------------------------------------


def test_one_action_per_item() -> None:
    assert one_rule("""
        on: {event: mail.matched}
        do:
          - send: {template: followup, to: contact}
            stop: true
    """) == ["rules/r.yaml:5:9: rules[0].do[0]: expected one action per list item, such as `- send: {...}` (one of "
             "send, move, tag, set, assign, task, note, webhook, stop); got 2 keys: send, stop (start each action "
             "with its own '-')"]


def test_unknown_action_suggests() -> None:
    assert one_rule("on: {event: mail.matched}\ndo:\n  - sned: {template: x, to: contact}") == [
        "rules/r.yaml:5:9: rules[0].do[0]: unknown action 'sned' (did you mean 'send'?); expected one of send, move, "
        "tag, set, assign, task, note, webhook, stop"]


def test_do_must_be_a_non_empty_list() -> None:
    assert one_rule("on: {event: mail.matched}\ndo: []") == [
        "rules/r.yaml:4:9: rules[0].do: expected a list of actions (send, move, tag, set, assign, task, note, "
        "webhook, stop); got an empty list"]


def test_send_parameters_and_template_existence(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "followup").mkdir(parents=True)
    rule = """
        on: {sweep: meeting, date: end_at}
        do:
          - send: {template: folowup, to: attendees, attach: [invoice_pdf]}
          - send: {to: attendees}
    """
    assert one_rule(rule, templates_dir=templates) == [
        f"rules/r.yaml:5:26: rules[0].do[0].send.template: no template 'folowup' in {templates} (did you mean "
        "'followup'?) (templates found: followup)",
        "rules/r.yaml:5:59: rules[0].do[0].send.attach: invoice_pdf needs an invoice, which sweep:meeting rules do "
        "not have",
        "rules/r.yaml:6:15: rules[0].do[1].send: missing required key 'template'"]
    write("r.yaml", "rules:\n  - name: r\n    on: {sweep: invoice, date: due_on}\n    do:\n      - send:\n"
                    "          template: followup\n          to: contact_with_role(\"accounting\") or contact\n"
                    "          attach: [invoice_pdf]\n          language: thirdparty.language\n")
    spec = load_rules(Path("rules"), templates_dir=templates).rules[0].actions[0].spec
    assert isinstance(spec, SendAction) and spec.template == "followup" and spec.attach == ("invoice_pdf",)
    assert spec.to.source == 'contact_with_role("accounting") or contact' and spec.language is not None


def test_set_field_must_be_settable_and_in_context() -> None:
    assert one_rule("""
        on: {sweep: meeting, date: end_at}
        do:
          - set: {meeting.staus: '"done"', invoice.status: '"paid"'}
    """) == ["rules/r.yaml:5:15: rules[0].do[0].set.meeting.staus: not a settable field (did you mean "
             "'meeting.status'?); expected one of invoice.dunning_level, invoice.dunning_repeats, "
             "invoice.last_dunned_at, invoice.late_fees, invoice.status, meeting.status, thirdparty.kind, "
             "thirdparty.owner, thirdparty.fields.NAME",
             "rules/r.yaml:5:40: rules[0].do[0].set.invoice.status: sweep:meeting rules have no invoice to set"]


def test_tag_forms() -> None:
    write("r.yaml", """\
        rules:
          - name: r
            on: {event: mail.matched}
            do:
              - tag: vip
              - tag: [a, b]
              - tag: {remove: lead, target: message}
        """)
    specs = [action.spec for action in load_rules(Path("rules")).rules[0].actions]
    assert specs == [TagAction(add=("vip",)), TagAction(add=("a", "b")),
                     TagAction(remove=("lead",), target="message")]
    assert one_rule("on: {sweep: invoice, date: due_on}\ndo:\n  - tag: {add: x, target: mesage}") == [
        "rules/r.yaml:5:31: rules[0].do[0].tag.target: expected thirdparty or message; got 'mesage'"]


def test_assign_task_move_stop_forms() -> None:
    write("r.yaml", """\
        rules:
          - name: r
            on: {event: mail.unmatched}
            do:
              - assign: '"lena@nordlicht.example"'
              - assign: {owner: owner}
              - task: "Look at {{ message.subject }}"
              - task: {title: Call back, owner: owner, due: 1d12h, kind: agenda}
              - note: Unknown sender
              - move: true
              - move: {folder: "Triage/{{ today }}"}
              - stop: true
        """)
    specs = [action.spec for action in load_rules(Path("rules")).rules[0].actions]
    assert isinstance(specs[0], AssignAction) and specs[0].owner.source == '"lena@nordlicht.example"'
    assert isinstance(specs[3], TaskAction) and specs[3].due == timedelta(days=1, hours=12)
    assert specs[3].kind == "agenda"
    assert specs[5] == MoveAction(folder=None) and isinstance(specs[6], MoveAction) and specs[6].folder is not None
    assert specs[7] == StopAction()
    assert one_rule("on: {event: mail.matched}\ndo:\n  - task: {title: x, due: tomorrow, kind: todo}") == [
        "rules/r.yaml:5:31: rules[0].do[0].task.due: expected a duration like 7d, 2h, -3d, 1w; got 'tomorrow'",
        "rules/r.yaml:5:47: rules[0].do[0].task.kind: expected task or agenda; got 'todo'"]


def test_move_only_for_mail_events_and_stop_only_true() -> None:
    assert one_rule("on: {event: [mail.matched, invoice.paid]}\ndo:\n  - move: true") == [
        "rules/r.yaml:5:15: rules[0].do[0].move: move files the event's mail: only for rules on mail.* events"]
    assert one_rule("on: {event: mail.matched}\ndo:\n  - move: Archive") == [
        "rules/r.yaml:5:15: rules[0].do[0].move: expected true (file as the filing config says) or {folder: TEXT}; "
        "got 'Archive'"]


DECLARE = "declare it in the config (rules.webhook_secrets: {NAME: {env: VAR}} or {NAME: {file: PATH}})"


def test_webhook_refuses_an_inline_secret_and_secrets_the_config_does_not_declare() -> None:
    assert one_rule("on: {event: mail.matched}\ndo:\n  - webhook: {url: 'https://hooks.example/x', token: s3cr3t}") \
        == ["rules/r.yaml:5:51: rules[0].do[0].webhook.token: a secret never goes into a rule file: name one the "
            f"config declares (secret: NAME); {DECLARE}"]
    # any environment variable or file (the SMTP password, /dev/zero): no longer for a rule to choose
    for key, value in (("secret_env", "MAILD_SMTP_PASSWORD"), ("secret_file", "/dev/zero")):
        body = f"on: {{event: mail.matched}}\ndo:\n  - webhook: {{url: 'https://h.example/x', {key}: {value}}}"
        assert one_rule(body, webhook_secrets={"crm"}) == [
            f"rules/r.yaml:5:47: rules[0].do[0].webhook.{key}: a rule may only sign with a secret the config declares "
            f"for webhooks: {DECLARE} and write secret: NAME here"]
    # a name the config does not declare (what was written is not repeated: it may be a pasted secret)
    assert one_rule("on: {event: mail.matched}\ndo:\n  - webhook: {url: 'https://h.example/x', secret: hunter2}",
                    webhook_secrets={"crm", "erp"}) == [
        "rules/r.yaml:5:55: rules[0].do[0].webhook.secret: not a secret the config declares in "
        f"rules.webhook_secrets (declared: crm, erp); {DECLARE}"]
    assert one_rule("on: {event: mail.matched}\ndo:\n  - webhook: {url: 'https://h.example/x', secret: 'a b/c'}",
                    webhook_secrets=set()) == [
        "rules/r.yaml:5:55: rules[0].do[0].webhook.secret: expected the name of a secret the config declares in "
        "rules.webhook_secrets (the config declares none)"]


def test_webhook_url_and_secret_name() -> None:
    assert one_rule("""
        on: {event: mail.matched}
        do:
          - webhook: {url: 'ftp://hooks.example/x', secret: crm}
          - webhook: {url: 'https://u:pw@hooks.example/x', secret: crm}
          - webhook: {url: 'https://hooks.example/x'}
          - webhook: {url: 'https://hooks.example/x', secret: crm, timeout: 0}
    """) == ["rules/r.yaml:5:24: rules[0].do[0].webhook.url: expected an https:// or http:// URL; got "
             "'ftp://hooks.example/x'",
             "rules/r.yaml:6:24: rules[0].do[1].webhook.url: a secret never goes into a rule file: no password in the "
             "URL; sign with secret: NAME",
             "rules/r.yaml:7:18: rules[0].do[2].webhook: missing secret: NAME, the secret the POST is signed with; "
             f"{DECLARE}",
             "rules/r.yaml:8:73: rules[0].do[3].webhook.timeout: expected seconds between 0 and 300; got 0"]
    write("r.yaml", "rules:\n  - name: r\n    on: {event: mail.matched}\n    do:\n"
                    "      - webhook: {url: 'https://hooks.example/x', secret: crm, timeout: 5}\n")
    assert load_rules(Path("rules"), webhook_secrets={"crm"}).rules[0].actions[0].spec == WebhookAction(
        url="https://hooks.example/x", secret="crm", timeout=5.0)


def test_load_rule_file_returns_its_rules() -> None:
    path = write("one.yaml", "timezone: Asia/Tokyo\nrules:\n  - name: r\n    on: {schedule: {every: 1d}}\n"
                             "    do: [stop: true]\n")
    rules = load_rule_file(path, timezone="UTC")
    assert [r.name for r in rules] == ["r"] and rules[0].trigger.timezone == "Asia/Tokyo"  # type: ignore[union-attr]
    assert isinstance(rules[0].trigger, ScheduleTrigger) and not isinstance(rules[0].trigger, EventTrigger)


def test_yaml_anchors_and_merge_keys_work_and_written_keys_override() -> None:
    write("r.yaml", "rules:\n  - &base\n    name: a\n    on: {event: mail.matched}\n    do: [stop: true]\n"
                    "  - <<: *base\n    name: b\n")
    assert [rule.name for rule in load_rules(Path("rules")).rules] == ["a", "b"]
