"""Each action kind's effect, its ledger row and its one `rule.action` event; send through the outbox (file
transport) including a crash between queueing and the ledger; signed webhooks against a real HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from maild.rules import ledger
from maild.rules.engine import RulesEngine
from maild.rules.model import (
    AssignAction,
    MoveAction,
    NoteAction,
    ScheduleTrigger,
    TagAction,
    WebhookAction,
)
from maild.store.db import Database
from maild.store.models import FilingTask, Location, Message, MessageMatch, Source, Task, ThirdParty
from tests.rules.test_engine_support import (
    FakeClock,
    add_event,
    at,
    customer,
    events,
    expr,
    invoice,
    invoice_row,
    ledger_rows,
    make_config,
    on_event,
    on_sweep,
    outbox_rows,
    rule,
    rules,
    send,
    set_,
    task,
    text,
)
from tests.support.http_server import LocalHttpServer, Reply, Request

D = timedelta(days=1)
DUE = date(2026, 11, 3)
NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)


def test_db_actions_change_records_and_each_appears_once_on_the_timeline(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db, tags=("old",))
    ruleset = rules(rule("welcome", on_event("mail.matched"), [
        ("tag", TagAction(add=("customer", "Active"), remove=("OLD",))),
        set_(thirdparty__fields__segment='"smb"', thirdparty__kind='"prospect"'),
        ("assign", AssignAction(owner=expr('"carla@ourco.example"'))),
        task("Answer {{ message.subject }}", owner=None, due=2 * D),
        ("note", NoteAction(text("{{ thirdparty.name }} wrote; owner now {{ thirdparty.owner }}")))],
        conditions=('not has_tag("customer")',)))
    clock = FakeClock(NOW)
    engine = RulesEngine(config, db, ruleset, clock=clock)
    message = _message(db, tp, "Quote please")
    add_event(db, "mail.matched", tp, message, matcher="address")
    assert engine.process_events() == 5
    add_event(db, "mail.matched", tp, message, matcher="address")
    assert engine.process_events() == 0  # has the tag now
    with db.engine.connect() as conn:
        row = conn.execute(select(ThirdParty.__table__).where(ThirdParty.__table__.c.id == tp)).one()
        tasks = list(conn.execute(select(Task.__table__)))
    assert row.tags == ["customer", "Active"] and row.custom_fields == {"segment": "smb"}
    assert (row.kind, row.owner) == ("prospect", "carla@ourco.example")
    assert len(tasks) == 1 and tasks[0].title == "Answer Quote please" and tasks[0].rule == "welcome"
    assert tasks[0].owner == "carla@ourco.example"  # the owner the rule just assigned
    assert tasks[0].message_id == message and tasks[0].due_at is not None
    notes = events(db, "note.added")
    assert [n.data["text"] for n in notes] == ["Müller Bau GmbH wrote; owner now carla@ourco.example"]
    actions = events(db, "rule.action")
    assert [a.data["action"] for a in actions] == ["tag", "set", "assign", "task", "note"]
    assert all(a.thirdparty_id == tp and a.message_id == message for a in actions)
    assert all('not has_tag("customer")' in a.data["reason"] for a in actions)
    assert [r.status for r in ledger_rows(db)] == ["done"] * 5


def test_send_queues_once_with_the_ledger_key_and_the_invoice_pdf(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    inv = invoice(db, tp, "FA2611-0007", DUE)
    ruleset = rules(rule("level-2", on_sweep("invoice", "due_on", 21 * D), [send(attach=("invoice_pdf",))]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(at(DUE + 22 * D)))
    assert engine.sweep() == 1
    assert engine.sweep() == 0
    mails = outbox_rows(db)
    assert len(mails) == 1 and mails[0].idempotency_key == f"level-2:invoice:{inv}:0"
    assert mails[0].subject == "Reminder FA2611-0007" and mails[0].thirdparty_id == tp
    done = ledger_rows(db)[0]
    assert done.status == "done" and done.detail["outbox"][0]["outbox_id"] == mails[0].id
    assert done.detail["plan"]["invoice_ref"] == "FA2611-0007"


def test_a_send_interrupted_after_queueing_is_completed_not_sent_twice(db: Database, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    inv = invoice(db, tp, "FA-50", DUE)
    ruleset = rules(rule("level-1", on_sweep("invoice", "due_on", 7 * D), [
        send(), set_(invoice__dunning_level="1")], conditions=("invoice.dunning_level < 1",)))
    clock = FakeClock(at(DUE + 8 * D))
    real_finish = ledger.finish

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt("killed after queueing, before the ledger said done")

    monkeypatch.setattr(ledger, "finish", crash)
    with pytest.raises(KeyboardInterrupt):
        RulesEngine(config, db, ruleset, clock=clock, owner="elsewhere:1:a").sweep()
    monkeypatch.setattr(ledger, "finish", real_finish)
    assert [r.status for r in ledger_rows(db)] == ["running"] and len(outbox_rows(db)) == 1
    other = RulesEngine(config, db, ruleset, clock=clock, owner="other:2:b")
    assert other.sweep() == 0  # held by a live daemon elsewhere, not stale yet
    clock.advance(minutes=6)
    assert other.sweep() == 2  # the send completed from its plan, then the next step
    assert len(outbox_rows(db)) == 1
    assert [r.status for r in ledger_rows(db)] == ["done", "done"]
    assert invoice_row(db, inv).dunning_level == 1
    assert [e.data["action"] for e in events(db, "rule.action")] == ["send", "set"]


def test_a_send_that_cannot_be_prepared_is_a_failed_row_and_blocks_its_later_steps(db: Database,
                                                                                   tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    broken = tmp_path / "templates" / "broken"
    broken.mkdir()
    (broken / "subject.txt").write_text("{{ no_such_placeholder.x }}\n")
    (broken / "body.txt").write_text("x\n")
    tp, _ = customer(db)
    customer(db, "Nomail AG")
    inv = invoice(db, tp, "FA-60", DUE)
    ruleset = rules(
        rule("broken-template", on_sweep("invoice", "due_on", 7 * D),
             [send("broken"), set_(invoice__dunning_level="1")]),
        rule("no-recipient", on_sweep("invoice", "due_on", 7 * D), [send(to="none")]),
        rule("still-runs", on_sweep("invoice", "due_on", 7 * D), [send()]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(at(DUE + 8 * D)))
    assert engine.sweep() == 1
    assert engine.sweep() == 0
    rows = {r.rule: r for r in ledger_rows(db)}
    broken_row = rows["broken-template"]
    assert broken_row.status == "failed" and "no_such_placeholder" in broken_row.detail["error"]
    assert rows["no-recipient"].status == "failed" and "no recipient" in rows["no-recipient"].detail["error"]
    assert rows["still-runs"].status == "done"
    assert invoice_row(db, inv).dunning_level == 0  # the step after the failed send did not run
    assert len(outbox_rows(db)) == 1


class Hook:
    """A webhook receiver: 204 for a request signed with `s3cret`, 401 otherwise; 503 for the next `fail_next`."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        self.http = LocalHttpServer(self._answer)
        self.url = f"{self.http.url}/hook"

    def _answer(self, request: Request) -> Reply:
        self.requests.append((request.headers, request.body))
        if self.fail_next:
            self.fail_next -= 1
            return Reply(503)
        expected = "sha256=" + hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
        return Reply(204 if hmac.compare_digest(request.headers.get("X-Maild-Signature", ""), expected) else 401)


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()
    yield state
    state.http.close()


def _hook_config(tmp_path: Path, db: Database, *, allow: bool = True, **secret: str) -> Any:
    """A config declaring the webhook secret `erp` (env or file) and, with `allow`, the local receiver's network."""
    section: dict[str, Any] = {"webhook_secrets": {"erp": secret or {"env": "MAILD_TEST_HOOK_SECRET"}}}
    if allow:
        section["webhook_allow_networks"] = ["127.0.0.1/32"]  # the test receiver; refused by default
    return make_config(tmp_path, db, rules=section)


def test_webhook_is_signed_and_a_failure_is_retried_with_backoff(db: Database, tmp_path: Path, hook: Hook,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILD_TEST_HOOK_SECRET", "s3cret")
    config = _hook_config(tmp_path, db)
    tp, _ = customer(db)
    inv = invoice(db, tp, "FA-70", DUE)
    ruleset = rules(rule("tell-erp", on_sweep("invoice", "due_on", 7 * D), [
        ("webhook", WebhookAction(url=hook.url, secret="erp", timeout=5)),
        set_(invoice__dunning_level="1")]))
    clock = FakeClock(at(DUE + 8 * D))
    engine = RulesEngine(config, db, ruleset, clock=clock)
    hook.fail_next = 1
    assert engine.sweep() == 0
    row = ledger_rows(db)[0]
    assert row.status == "failed" and row.detail["attempts"] == 1 and "503" in row.detail["error"]
    assert engine.sweep() == 0 and len(hook.requests) == 1  # not before the backoff is over
    clock.advance(minutes=2)
    assert engine.sweep() == 2  # the retry, then the step after it
    assert len(hook.requests) == 2 and hook.requests[0][1] == hook.requests[1][1]
    headers, body = hook.requests[1]
    key = f"tell-erp:invoice:{inv}:0"
    assert headers["Idempotency-Key"] == key
    assert headers["X-Maild-Signature"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["Host"] == hook.url.split("/")[2]
    payload = json.loads(body)
    assert payload["rule"] == "tell-erp" and payload["key"] == key and payload["subject"] == f"invoice:{inv}"
    assert payload["record"]["ref"] == "FA-70" and payload["thirdparty"]["id"] == tp
    assert [r.status for r in ledger_rows(db)] == ["done", "done"]
    assert ledger_rows(db)[0].detail["attempts"] == 2
    assert [e.data["action"] for e in events(db, "rule.action")] == ["webhook", "set"]


def test_webhook_gives_up_after_a_few_attempts(db: Database, tmp_path: Path, hook: Hook,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILD_TEST_HOOK_SECRET", "wrong")  # the server answers 401 every time
    config = _hook_config(tmp_path, db)
    tp, _ = customer(db)
    invoice(db, tp, "FA-71", DUE)
    ruleset = rules(rule("tell-erp", on_sweep("invoice", "due_on", 7 * D), [
        ("webhook", WebhookAction(url=hook.url, secret="erp", timeout=5))]))
    clock = FakeClock(at(DUE + 8 * D))
    engine = RulesEngine(config, db, ruleset, clock=clock)
    for _ in range(10):
        engine.sweep()
        clock.advance(hours=2)
    assert len(hook.requests) == ledger.WEBHOOK_ATTEMPTS
    row = ledger_rows(db)[0]
    assert row.status == "failed" and row.detail["gave_up"] is True and "401" in row.detail["error"]


def test_webhook_secret_from_a_file_and_a_missing_file(db: Database, tmp_path: Path, hook: Hook) -> None:
    config = _hook_config(tmp_path, db, file="hook.secret")
    tp, _ = customer(db)
    invoice(db, tp, "FA-72", DUE)
    secret = tmp_path / "hook.secret"
    ruleset = rules(rule("tell-erp", on_sweep("invoice", "due_on", 7 * D), [
        ("webhook", WebhookAction(url=hook.url, secret="erp", timeout=5))]))
    clock = FakeClock(at(DUE + 8 * D))
    engine = RulesEngine(config, db, ruleset, clock=clock)
    engine.sweep()  # the file is not there yet: nothing is posted, the reason is recorded
    assert hook.requests == []
    [row] = ledger_rows(db)
    assert row.status == "failed" and f"rules.webhook_secrets.erp: cannot read file {secret}" in row.detail["error"]
    secret.write_text("s3cret\n")
    clock.advance(hours=2)
    engine.sweep()  # a failed webhook is retried: now signed with the file's secret
    assert [r.status for r in ledger_rows(db)] == ["done"] and len(hook.requests) == 1


def test_webhook_to_a_loopback_or_private_address_is_refused_unless_the_config_allows_it(
        db: Database, tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILD_TEST_HOOK_SECRET", "s3cret")
    config = _hook_config(tmp_path, db, allow=False)
    tp, _ = customer(db)
    invoice(db, tp, "FA-73", DUE)
    port = hook.url.split(":")[2].split("/")[0]
    targets = (hook.url, f"http://localhost:{port}/hook", "http://127.0.0.1:5432/", "http://169.254.169.254/latest")
    ruleset = rules(*[rule(f"poke-{n}", on_sweep("invoice", "due_on", 7 * D), [
        ("webhook", WebhookAction(url=url, secret="erp", timeout=5))]) for n, url in enumerate(targets)])
    clock = FakeClock(at(DUE + 8 * D))
    assert RulesEngine(config, db, ruleset, clock=clock).sweep() == 0
    assert hook.requests == [], "nothing reached the local receiver"
    errors = {r.rule: r.detail["error"] for r in ledger_rows(db)}
    assert all(r.status == "failed" for r in ledger_rows(db)) and len(errors) == 4
    assert "refused to connect to 127.0.0.1: a loopback address; a webhook reaches public addresses only unless " \
           "rules.webhook_allow_networks in the config allows that network" in errors["poke-0"]
    assert "refused to connect to localhost (" in errors["poke-1"] and "a loopback address" in errors["poke-1"]
    assert "127.0.0.1: a loopback address" in errors["poke-2"]
    assert "169.254.169.254: a link-local address" in errors["poke-3"]
    # once the config allows 127.0.0.1, the retry is delivered; the metadata address stays refused
    allowed = _hook_config(tmp_path, db, allow=True)
    clock.advance(hours=2)
    RulesEngine(allowed, db, ruleset, clock=clock).sweep()
    assert ledger_rows(db, rule="poke-0")[0].status == "done" and hook.requests
    assert "169.254.169.254: a link-local address" in ledger_rows(db, rule="poke-3")[0].detail["error"]


def test_webhook_secret_must_be_a_small_regular_file(db: Database, tmp_path: Path, hook: Hook) -> None:
    config = _hook_config(tmp_path, db, file="/dev/zero")
    tp, _ = customer(db)
    invoice(db, tp, "FA-74", DUE)
    ruleset = rules(rule("tell-erp", on_sweep("invoice", "due_on", 7 * D), [
        ("webhook", WebhookAction(url=hook.url, secret="erp", timeout=5))]))
    assert RulesEngine(config, db, ruleset, clock=FakeClock(at(DUE + 8 * D))).sweep() == 0
    [row] = ledger_rows(db)
    assert row.status == "failed" and "rules.webhook_secrets.erp: file /dev/zero is not a regular file" \
        in row.detail["error"]
    assert hook.requests == []


def test_move_and_message_keywords_become_filing_tasks(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db, "Müller / Söhne")
    message = _message(db, tp, "Invoice question", imap=True)
    with db.engine.begin() as conn:  # the matching stage's move, still pending, goes to the rule's folder instead
        location = conn.execute(select(Location.__table__.c.id)).scalar_one()
        conn.execute(FilingTask.__table__.insert().values(
            location_id=location, message_id=message, target_folder="Customers/Müller - Söhne", action="move",
            keywords=[], status="pending", attempts=0, created_at=NOW))
    ruleset = rules(rule("file-billing", on_event("mail.matched"), [
        ("tag", TagAction(add=("billing",), target="message")),
        ("move", MoveAction(folder=text("Billing/{{ thirdparty.name }}")))],
        conditions=('"invoice" in message.subject.lower()',)))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(NOW))
    add_event(db, "mail.matched", tp, message, matcher="address")
    assert engine.process_events() == 2
    with db.engine.connect() as conn:
        tasks = list(conn.execute(select(FilingTask.__table__).order_by(FilingTask.__table__.c.id)))
    assert [(t.action, t.target_folder, t.keywords, t.status) for t in tasks] == [
        ("move", f"Billing/Müller - Söhne ~{tp}", [], "pending")]
    # the keywords were put on the pending move first, which the rule's move then replaced: tag again later
    add_event(db, "mail.matched", tp, message, matcher="address")
    engine.replace_rules(rules(rule("mark", on_event("mail.matched"), [
        ("tag", TagAction(add=("billing",), target="message"))])))
    assert engine.process_events() == 1
    with db.engine.connect() as conn:
        tasks = list(conn.execute(select(FilingTask.__table__).order_by(FilingTask.__table__.c.id)))
    assert [(t.action, t.target_folder, t.keywords) for t in tasks] == [
        ("move", f"Billing/Müller - Söhne ~{tp}", ["billing"])]


def test_move_without_folder_follows_the_filing_config(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db, filing={"action": "move", "matched_folder": "Kunden/{{ thirdparty.name }}"})
    config = config.model_copy(update={"sources": [_imap_source()]})
    tp, _ = customer(db)
    message = _message(db, tp, "hello", imap=True)
    ruleset = rules(rule("file-matched-mail", on_event("mail.matched"), [("move", MoveAction())]))
    engine = RulesEngine(config, db, ruleset, clock=FakeClock(NOW))
    add_event(db, "mail.matched", tp, message, matcher="address")
    assert engine.process_events() == 1
    with db.engine.connect() as conn:
        tasks = list(conn.execute(select(FilingTask.__table__)))
    assert [(t.action, t.target_folder) for t in tasks] == [("move", "Kunden/Müller Bau GmbH")]


def test_move_without_folder_files_nothing_when_filing_is_off_and_says_why(db: Database, tmp_path: Path) -> None:
    """`filing.action: none` means off: the shipped pack's `move: true` moves nothing (skipped, with the reason in
    the ledger, `rules log` and `simulate`); a `move: {folder}` rule still moves."""
    from click.testing import CliRunner

    from maild.cli.main import cli

    config = make_config(tmp_path, db, filing={"action": "none", "matched_folder": "Kunden/{{ thirdparty.name }}"})
    config = config.model_copy(update={"sources": [_imap_source()]})
    tp, _ = customer(db)
    message = _message(db, tp, "hello", imap=True)
    ruleset = rules(rule("file-matched-mail", on_event("mail.matched"), [("move", MoveAction())]))
    add_event(db, "mail.matched", tp, message, matcher="address")
    [simulated] = RulesEngine(config, db, ruleset, clock=FakeClock(NOW), simulate=True).simulate(NOW - 1 * D)
    assert simulated.status == "skipped" and "filing is off for account shared" in simulated.summary
    assert RulesEngine(config, db, ruleset, clock=FakeClock(NOW)).process_events() == 1
    with db.engine.connect() as conn:
        assert list(conn.execute(select(FilingTask.__table__))) == []
    [row] = ledger_rows(db)
    assert row.status == "skipped"
    assert row.detail["skipped"] == ("filing is off for account shared (filing.action: none): `move: true` files "
                                     "nothing; to file by rule, write move: {folder: ...}")
    assert events(db, "rule.action") == []  # nothing happened, so nothing on the timeline
    shown = CliRunner().invoke(cli, ["--config", str(tmp_path / "maild.yaml"), "rules", "log"])
    assert shown.exit_code == 0, shown.output
    assert "skipped file-matched-mail" in shown.output and "nothing to do: filing is off for account shared" \
        in shown.output
    # a rule that names its folder is filing by rule: it moves
    by_rule = rules(rule("file-by-rule", on_event("mail.matched"), [("move", MoveAction(folder=text("Kunden")))]))
    add_event(db, "mail.matched", tp, message, matcher="address")
    assert RulesEngine(config, db, by_rule, clock=FakeClock(NOW)).process_events() == 1
    with db.engine.connect() as conn:
        assert [(t.action, t.target_folder) for t in conn.execute(select(FilingTask.__table__))] == [("move", "Kunden")]


def test_simulate_shows_a_move_with_nothing_to_move_as_skipped_as_the_real_run_records_it(
        db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    tp, _ = customer(db)
    in_imap = _message(db, tp, "in the shared inbox", imap=True)
    in_maildir = _message(db, tp, "only in a local Maildir")
    ruleset = rules(rule("file-billing", on_event("mail.matched"), [("move", MoveAction(folder=text("Billing")))]))
    for message in (in_imap, in_maildir):
        add_event(db, "mail.matched", tp, message, matcher="address")
    simulated = RulesEngine(config, db, ruleset, clock=FakeClock(NOW), simulate=True).simulate(NOW - 1 * D)
    assert [(p.subject.split(":")[0], p.status) for p in simulated] == [("event", "planned"), ("event", "skipped")]
    assert RulesEngine(config, db, ruleset, clock=FakeClock(NOW)).process_events() == 2
    assert [r.status for r in ledger_rows(db)] == ["done", "skipped"]
    # once moved there, a simulated move to the same folder has nothing to do either
    with db.engine.begin() as conn:
        conn.execute(update(FilingTask.__table__).values(status="done"))
    add_event(db, "mail.matched", tp, in_imap, matcher="address")
    again = RulesEngine(config, db, ruleset, clock=FakeClock(NOW), simulate=True).simulate(NOW - 1 * D)
    assert [p.status for p in again] == ["already done", "already done", "skipped"]


def test_schedule_rule_runs_once_per_fire_time(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, db)
    ruleset = rules(rule("weekly-review", ScheduleTrigger(cron="0 8 * * mon", every=None, timezone="Europe/Berlin"),
                         [task("Review open invoices ({{ today }})", owner='"boss@ourco.example"')],
                         conditions=("business_hours()",)))
    clock = FakeClock(datetime(2026, 11, 30, 7, 0, 5, tzinfo=UTC))  # Monday 08:00:05 in Berlin
    engine = RulesEngine(config, db, ruleset, clock=clock)
    fire = datetime(2026, 11, 30, 7, tzinfo=UTC)
    assert engine.run_schedule("weekly-review", fire) == 1
    assert RulesEngine(config, db, ruleset, clock=clock).run_schedule("weekly-review", fire) == 0
    assert engine.run_schedule("no-such-rule", fire) == 0
    rows = ledger_rows(db)
    assert [r.subject for r in rows] == ["schedule:2026-11-30T07:00:00+00:00"]
    with db.engine.connect() as conn:
        titles = [t.title for t in conn.execute(select(Task.__table__))]
    assert titles == ["Review open invoices (2026-11-30)"]


# --- builders ------------------------------------------------------------------------------------------


def _imap_source() -> Any:
    from maild.config import ImapSourceConfig

    return ImapSourceConfig(type="imap", name="shared", host="imap.example", username="u", password_env="X")


def _message(db: Database, tp: int, subject: str, imap: bool = False) -> int:
    with db.engine.begin() as conn:
        message = conn.execute(Message.__table__.insert().returning(Message.__table__.c.id).values(
            raw_sha256=hashlib.sha256(subject.encode() + str(tp).encode()).hexdigest(), size=10,
            from_addr="anna@mueller.example", subject=subject, date=NOW, ingested_at=NOW, references=[],
            to_addrs=[], cc_addrs=[], reply_to=[], defects=[])).scalar_one()
        conn.execute(MessageMatch.__table__.insert().values(
            message_id=message, status="matched", thirdparty_id=tp, matcher="address", confidence=1.0, reason="t",
            verdicts=[], decided_at=NOW))
        if imap:
            source = conn.execute(Source.__table__.insert().returning(Source.__table__.c.id).values(
                name="shared", kind="imap", address="imap.example")).scalar_one()
            conn.execute(Location.__table__.insert().values(source_id=source, folder="INBOX", uidvalidity=1, uid=7,
                                                            key="", message_id=message, seen_at=NOW))
    return int(message)
