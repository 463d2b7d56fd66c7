"""Filing against a real Dovecot: folders with umlauts, MOVE and the COPY fallback, keywords, `run_pending`."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import imapclient
import pytest
from imapclient.exceptions import ProtocolError
from sqlalchemy import select

from maild.daemon import Daemon
from maild.filing import runner
from maild.filing.folders import folder_for
from maild.filing.imap_filer import add_keywords, copy, ensure_folder, move
from maild.filing.runner import CONNECTION_ERRORS, FilingReport, run_pending
from maild.imap.folders import folder_exists, list_folders, parse_list_line
from maild.imap.sent import sent_folder_append
from maild.store.checkpoints import FolderRef
from maild.store.db import Database
from maild.store.models import Event, FilingTask, Location, MessageMatch, Source, ThirdParty
from tests.conftest import Mailbox
from tests.helpers import config_at, make_message, write_config
from tests.support.dovecot import Dovecot

TEMPLATE = "Customers/{{ thirdparty.name }}"
MUELLER = "Customers/Müller - Söhne GmbH"
MUELLER_UTF7 = b"Customers/M&APw-ller - S&APY-hne GmbH"


@contextmanager
def _imap(box: Mailbox, folder: str | None = "INBOX") -> Iterator[imapclient.IMAPClient]:
    with box.server.client(box.user, box.password) as imap:
        if folder is not None:
            imap.select_folder(folder)
        yield imap


def _bodies(box: Mailbox, folder: str) -> list[bytes]:
    with box.server.client(box.user, box.password) as imap:
        imap.select_folder(folder, readonly=True)
        fetched = imap.fetch(imap.search("ALL"), ["BODY.PEEK[]"])
        return [data[b"BODY[]"] for _, data in sorted(fetched.items())]


def _flags(box: Mailbox, folder: str) -> list[set[bytes]]:
    with box.server.client(box.user, box.password) as imap:
        imap.select_folder(folder, readonly=True)
        return [set(flags) for _, flags in sorted(imap.get_flags(imap.search("ALL")).items())]


def _raw_folders(box: Mailbox) -> dict[bytes, tuple[bytes, ...]]:
    """Folder names as sent on the wire (modified UTF-7) -> flags."""
    with box.server.client(box.user, box.password) as imap:
        imap.folder_encode = False
        return {name.encode(): flags for flags, _delimiter, name in list_folders(imap)}


# --- imap_filer --------------------------------------------------------------------------------------


def test_move_into_one_level_customer_folder_with_umlauts_and_slash(mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="Angebot")])
    before = _bodies(mailbox, "INBOX")
    path = folder_for(TEMPLATE, {"thirdparty": {"id": 7, "name": "Müller / Söhne GmbH", "kind": "customer",
                                                "external_id": None}})
    assert path == MUELLER + " ~7"
    with _imap(mailbox) as imap:
        server_path = ensure_folder(imap, path)
        assert server_path == path
        move(imap, imap.search("ALL"), server_path)
        subscribed = {name for _flags, _delim, name in imap.list_sub_folders()}
    folders = _raw_folders(mailbox)
    assert MUELLER_UTF7 + b" ~7" in folders, "imapclient sends the name in modified UTF-7"
    children = [name for name in folders if name.startswith(b"Customers/")]
    assert children == [MUELLER_UTF7 + b" ~7"], "the slash in the name must not create a level"
    assert b"\\Noselect" not in folders[b"Customers"], "the parent is created as a real folder"
    assert {"Customers", path} <= subscribed
    assert _bodies(mailbox, path) == before
    assert _bodies(mailbox, "INBOX") == []


def test_ensure_folder_creates_every_level_once(mailbox: Mailbox) -> None:
    with _imap(mailbox, folder=None) as imap:
        assert ensure_folder(imap, "Archiv/2026/Ärger & Co") == "Archiv/2026/Ärger & Co"
        assert ensure_folder(imap, " Archiv//2026/Ärger & Co/ ") == "Archiv/2026/Ärger & Co"
        for folder in ("Archiv", "Archiv/2026", "Archiv/2026/Ärger & Co"):
            imap.select_folder(folder)  # every level selectable, not a \Noselect placeholder
    assert sorted(name for name in _raw_folders(mailbox) if name.startswith(b"Archiv")) == [
        b"Archiv", b"Archiv/2026", b"Archiv/2026/&AMQ-rger &- Co"]


def test_dovecot_maildir_refuses_dots_so_the_folder_is_made_without_them(mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="dots")])
    with _imap(mailbox) as imap:
        with pytest.raises(imapclient.exceptions.IMAPClientError, match="Character not allowed"):
            imap.create_folder("Customers/Müller & Co. KG")
        server_path = ensure_folder(imap, "Customers/Müller & Co. KG")
        assert server_path == "Customers/Müller & Co KG"
        assert ensure_folder(imap, "Customers/example.com") == "Customers/example-com"
        move(imap, imap.search("ALL"), server_path)
    assert len(_bodies(mailbox, "Customers/Müller & Co KG")) == 1


def test_names_that_clean_alike_get_a_folder_each(mailbox: Mailbox) -> None:
    """The issue: third parties called `..`, `*`, `%` and `-` all went to `Customers/-`."""
    names = ["..", "*", "%", "-", "ACME [Berlin]"]
    mailbox.append([make_message(subject=name) for name in names])
    with _imap(mailbox) as imap:
        uids = imap.search("ALL")
        for thirdparty_id, (uid, name) in enumerate(zip(uids, names, strict=True), start=1):
            path = folder_for(TEMPLATE, {"thirdparty": {"id": thirdparty_id, "name": name}})
            move(imap, [uid], ensure_folder(imap, path))
    customers = sorted(name for name in _raw_folders(mailbox) if name.startswith(b"Customers/"))
    assert customers == [b"Customers/ACME (Berlin) ~5", b"Customers/unnamed ~1", b"Customers/unnamed ~2",
                         b"Customers/unnamed ~3", b"Customers/unnamed ~4"]
    assert all(len(_bodies(mailbox, name.decode())) == 1 for name in customers)


def test_a_folder_imapclient_cannot_list_takes_nothing_down(mailbox: Mailbox) -> None:
    """A folder such as `Projekt[alt` (made by a person, or by an older maild) breaks imapclient's LIST parser;
    the Sent copies of the account and filing into folders beside it must go on."""
    with _imap(mailbox, folder=None) as imap:
        imap.create_folder("Projekt[alt")
        with pytest.raises(ProtocolError):
            imap.list_folders()  # the premise: imapclient alone cannot read this LIST
        names = {name for _flags, _delim, name in list_folders(imap)}
        assert {"Projekt[alt", "Sent", "INBOX"} <= names
        assert folder_exists(imap, "Projekt[alt") and not folder_exists(imap, "Projekt[neu")
        assert sent_folder_append(imap, make_message(subject="sent copy")) == "Sent"
        assert ensure_folder(imap, "Projekt[alt/2026") == "Projekt[alt/2026"
    assert len(_bodies(mailbox, "Sent")) == 1
    assert b"Projekt[alt/2026" in _raw_folders(mailbox)


@pytest.mark.parametrize(("line", "expected"), [
    (b'(\\HasNoChildren) "/" Projekt[alt', ((b"\\HasNoChildren",), b"/", b"Projekt[alt")),
    (b'(\\HasNoChildren \\Sent) "/" "Sent [old]"', ((b"\\HasNoChildren", b"\\Sent"), b"/", b"Sent [old]")),
    (b'() "\\\\" "a\\"b"', ((), b"\\", b'a"b')),
    (b'(\\Noselect) NIL Public', ((b"\\Noselect",), None, b"Public")),
    ((b'(\\HasNoChildren) "." {5}', b"a]b[c"), ((b"\\HasNoChildren",), b".", b"a]b[c")),
    (b"garbage", None),
    (b'() "/" "unterminated', None),
])
def test_list_lines_are_read_in_every_form_a_name_can_take(line: bytes | tuple[bytes, bytes], expected: object) -> None:
    assert parse_list_line(line) == expected


def _long_levels(count: int) -> str:
    """A path of `count` levels of about MAX_LEVEL_BYTES each: fine one by one, too long for Maildir++ together."""
    context = {f"l{i}": f"Großhandel Müller & Söhne für Garten- und Landschaftsbau, Abteilung {i} Süd" for i in
               range(count)}
    return folder_for("/".join(f"{{{{ l{i} }}}}" for i in range(count)), context)


def test_copy_fallback_expunges_exactly_the_moved_uids(mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject=s) for s in ("a", "b", "user-deleted")])
    before = _bodies(mailbox, "INBOX")
    with _imap(mailbox) as imap:
        uids = imap.search("ALL")
        imap.add_flags([uids[2]], [b"\\Deleted"])  # the user's own pending deletion must survive
        target = ensure_folder(imap, "Customers/ACME")
        move(imap, uids[:2], target, use_move=False)
    assert _bodies(mailbox, "Customers/ACME") == before[:2], "exactly one copy of each"
    assert _bodies(mailbox, "INBOX") == before[2:]
    assert b"\\Deleted" in _flags(mailbox, "INBOX")[0]


def test_copy_keeps_the_original(mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="both places")])
    before = _bodies(mailbox, "INBOX")
    with _imap(mailbox) as imap:
        copy(imap, imap.search("ALL"), ensure_folder(imap, "Customers/ACME"))
    assert _bodies(mailbox, "Customers/ACME") == before == _bodies(mailbox, "INBOX")


def test_keywords_are_sanitised_and_set(mailbox: Mailbox) -> None:
    mailbox.append([make_message(subject="tag me"), make_message(subject="leave me")])
    with _imap(mailbox) as imap:
        uids = imap.search("ALL")
        applied = add_keywords(imap, uids[:1], ["Kunde Müller", "$Filed", "\\flagged", "bad(chars)*]", "\\Deleted",
                                                "Straße", "$filed", "  ", "x" * 80])
    assert applied == ["Kunde_Muller", "$Filed", "\\Flagged", "bad_chars", "Strasse", "x" * 50]
    tagged, untouched = _flags(mailbox, "INBOX")
    assert {b"Kunde_Muller", b"$Filed", b"\\Flagged", b"bad_chars", b"Strasse", b"x" * 50} <= tagged
    assert b"\\Deleted" not in tagged
    assert not untouched - {b"\\Recent"}


# --- run_pending -------------------------------------------------------------------------------------


def _ingest(tmp_path: Path, db_url: str, db: Database, box: Mailbox) -> FolderRef:
    config = write_config(tmp_path / "home", db_url, [box.source()])
    report = Daemon(config_at(config), db=db).ingest_once()
    assert report.errors == {}
    with db.engine.connect() as conn:
        source_id = conn.execute(select(Source.__table__.c.id).where(Source.__table__.c.name == "mbox")).scalar_one()
    return FolderRef(source_id, "mbox", "INBOX")


def _locations(db: Database) -> dict[int, tuple[int, int]]:
    """UID -> (location id, message id) of INBOX."""
    loc = Location.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(select(loc.c.uid, loc.c.id, loc.c.message_id).where(loc.c.folder == "INBOX")).all()
    return {row.uid: (row.id, row.message_id) for row in rows}


def _add_task(db: Database, uid: int, action: str = "move", target: str = MUELLER,
              keywords: list[str] | None = None) -> int:
    location_id, message_id = _locations(db)[uid]
    with db.session() as session:
        task = FilingTask(location_id=location_id, message_id=message_id, target_folder=target, action=action,
                          keywords=keywords or [])
        session.add(task)
        session.flush()
        return task.id


def _set_match(db: Database, message_id: int, thirdparty_id: int) -> None:
    """Decide the message for `thirdparty_id` (ingest may already have stored an 'unmatched' decision)."""
    with db.session() as session:
        match = session.get(MessageMatch, message_id) or MessageMatch(message_id=message_id, status="matched")
        match.status, match.thirdparty_id = "matched", thirdparty_id
        session.add(match)


def _tasks(db: Database) -> dict[int, FilingTask]:
    with db.session() as session:
        return {task.id: task for task in session.exec(select(FilingTask)).scalars()}


def _events(db: Database) -> list[Event]:
    with db.session() as session:
        return list(session.exec(select(Event).where(Event.type == "mail.filed").order_by(Event.id)).scalars())


def _select(imap: imapclient.IMAPClient) -> int:
    return int(imap.select_folder("INBOX")[b"UIDVALIDITY"])


def test_run_pending_end_to_end(tmp_path: Path, mailbox: Mailbox, db_url: str, db: Database) -> None:
    mailbox.append([make_message(subject=s) for s in ("first", "second", "third")])
    before = _bodies(mailbox, "INBOX")
    ref = _ingest(tmp_path, db_url, db, mailbox)
    uids = sorted(_locations(db))
    with db.session() as session:
        party = ThirdParty(name="Müller / Söhne GmbH")
        session.add(party)
        session.flush()
        party_id = party.id
    _set_match(db, _locations(db)[uids[0]][1], party_id)
    moved = [_add_task(db, uid, keywords=["maild", "Kunde Müller"]) for uid in uids[:2]]
    tagged = _add_task(db, uids[2], action="keywords", target="", keywords=["Kunde"])

    with _imap(mailbox, folder=None) as imap:
        report = run_pending(db, imap, ref, _select(imap), max_attempts=3)
    assert report == FilingReport(done=3, failed=0, pending=0)

    tasks = _tasks(db)
    assert all(task.status == "done" and task.done_at is not None and task.attempts == 0 for task in tasks.values())
    events = _events(db)
    assert len(events) == 3
    by_uid = {event.data["uid"]: event for event in events}
    assert by_uid[uids[0]].thirdparty_id == party_id
    assert by_uid[uids[1]].thirdparty_id is None
    assert {e.message_id for e in events} == {tasks[t].message_id for t in [*moved, tagged]}
    assert by_uid[uids[0]].data == {"action": "move", "folder": MUELLER, "source": "mbox", "from_folder": "INBOX",
                                    "uid": uids[0], "keywords": ["Kunde Müller", "maild"]}
    assert by_uid[uids[2]].data == {"action": "keywords", "folder": "", "source": "mbox", "from_folder": "INBOX",
                                    "uid": uids[2], "keywords": ["Kunde"]}

    assert _bodies(mailbox, MUELLER) == before[:2]
    assert all({b"maild", b"Kunde_Muller"} <= flags for flags in _flags(mailbox, MUELLER))
    assert _bodies(mailbox, "INBOX") == before[2:]
    assert b"Kunde" in _flags(mailbox, "INBOX")[0]

    with _imap(mailbox, folder=None) as imap:
        assert run_pending(db, imap, ref, _select(imap), max_attempts=3) == FilingReport(0, 0, 0)
    assert len(_events(db)) == 3, "nothing is filed twice"


def test_only_the_folder_and_uidvalidity_given_are_worked_on(tmp_path: Path, mailbox: Mailbox, db_url: str,
                                                            db: Database) -> None:
    mailbox.append([make_message(subject="x")])
    ref = _ingest(tmp_path, db_url, db, mailbox)
    _add_task(db, next(iter(_locations(db))))
    with _imap(mailbox, folder=None) as imap:
        uidvalidity = _select(imap)
        assert run_pending(db, imap, ref, uidvalidity + 1, max_attempts=3) == FilingReport(0, 0, 0)
        other = FolderRef(ref.source_id, ref.source_name, "Archive")
        assert run_pending(db, imap, other, uidvalidity, max_attempts=3) == FilingReport(0, 0, 0)
    assert [task.status for task in _tasks(db).values()] == ["pending"]


def test_a_failing_group_is_retried_then_failed_and_the_others_go_on(tmp_path: Path, mailbox: Mailbox,
                                                                     db_url: str, db: Database) -> None:
    mailbox.append([make_message(subject=s) for s in ("no target", "bad action", "fine")])
    ref = _ingest(tmp_path, db_url, db, mailbox)
    uids = sorted(_locations(db))
    no_target = _add_task(db, uids[0], target="")
    bad_action = _add_task(db, uids[1], action="teleport")
    fine = _add_task(db, uids[2], target="Customers/ACME")
    with _imap(mailbox, folder=None) as imap:
        assert run_pending(db, imap, ref, _select(imap), max_attempts=2) == FilingReport(done=1, failed=0, pending=2)
        tasks = _tasks(db)
        assert tasks[fine].status == "done"
        assert (tasks[no_target].status, tasks[no_target].attempts) == ("pending", 1)
        assert "without a target folder" in tasks[no_target].last_error
        assert "unknown filing action 'teleport'" in tasks[bad_action].last_error
        assert run_pending(db, imap, ref, _select(imap), max_attempts=2) == FilingReport(done=0, failed=2, pending=0)
    tasks = _tasks(db)
    assert [(tasks[t].status, tasks[t].attempts) for t in (no_target, bad_action)] == [("failed", 2)] * 2
    assert len(_events(db)) == 1


def test_connection_lost_then_server_back(tmp_path: Path, db_url: str, db: Database,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server = Dovecot(tmp_path / "d")
    server.start()
    try:
        user, password = next(iter(server.users.items()))
        monkeypatch.setenv("MAILD_TEST_IMAP_PASSWORD", password)
        box = Mailbox(server, user, password)
        box.append([make_message(subject="survives a restart")])
        before = _bodies(box, "INBOX")
        ref = _ingest(tmp_path, db_url, db, box)
        task_id = _add_task(db, next(iter(_locations(db))), target="Customers/ACME")

        imap = server.client()
        uidvalidity = _select(imap)
        server.stop()
        with pytest.raises(CONNECTION_ERRORS):
            run_pending(db, imap, ref, uidvalidity, max_attempts=5)
        task = _tasks(db)[task_id]
        assert (task.status, task.attempts) == ("pending", 1)
        assert task.last_error
        imap.shutdown()

        server.start()
        with server.client() as imap:
            assert run_pending(db, imap, ref, _select(imap), max_attempts=5) == FilingReport(1, 0, 0)
        assert _tasks(db)[task_id].status == "done"
        assert _bodies(box, "Customers/ACME") == before
        assert _bodies(box, "INBOX") == []
        assert "already_gone" not in _events(db)[0].data
    finally:
        server.close()


def test_moved_but_not_recorded_ends_done_as_already_gone(tmp_path: Path, mailbox: Mailbox, db_url: str,
                                                         db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    mailbox.append([make_message(subject="moved, then the line dropped")])
    before = _bodies(mailbox, "INBOX")
    ref = _ingest(tmp_path, db_url, db, mailbox)
    task_id = _add_task(db, next(iter(_locations(db))))

    def move_then_drop(*args: Any, **kwargs: Any) -> None:
        move(*args, **kwargs)
        raise imaplib.IMAP4.abort("socket error: EOF")

    monkeypatch.setattr(runner, "move", move_then_drop)
    with _imap(mailbox, folder=None) as imap, pytest.raises(imaplib.IMAP4.abort):
        run_pending(db, imap, ref, _select(imap), max_attempts=5)
    assert (_tasks(db)[task_id].status, _tasks(db)[task_id].attempts) == ("pending", 1)
    monkeypatch.undo()

    with _imap(mailbox, folder=None) as imap:
        assert run_pending(db, imap, ref, _select(imap), max_attempts=5) == FilingReport(1, 0, 0)
    task = _tasks(db)[task_id]
    assert task.status == "done"
    (event,) = _events(db)
    assert event.data["already_gone"] is True
    assert event.data["action"] == "move"
    assert _bodies(mailbox, MUELLER) == before, "exactly once in the target"
    assert _bodies(mailbox, "INBOX") == []


def test_uid_removed_by_someone_else_ends_done_as_already_gone(tmp_path: Path, mailbox: Mailbox, db_url: str,
                                                              db: Database) -> None:
    mailbox.append([make_message(subject=s) for s in ("gone", "here")])
    ref = _ingest(tmp_path, db_url, db, mailbox)
    uids = sorted(_locations(db))
    gone, here = (_add_task(db, uid, action="keywords", target="", keywords=["seen-by-maild"]) for uid in uids)
    with _imap(mailbox) as imap:
        imap.delete_messages(uids[:1])
        imap.uid_expunge(uids[:1])
    with _imap(mailbox, folder=None) as imap:
        assert run_pending(db, imap, ref, _select(imap), max_attempts=5) == FilingReport(2, 0, 0)
    events = {event.data["uid"]: event.data for event in _events(db)}
    assert events[uids[0]].get("already_gone") is True
    assert "already_gone" not in events[uids[1]]
    assert {_tasks(db)[t].status for t in (gone, here)} == {"done"}
    assert b"seen-by-maild" in _flags(mailbox, "INBOX")[0]


def test_a_name_too_long_for_the_server_is_filed_under_a_compact_name_recorded_exactly(
        tmp_path: Path, mailbox: Mailbox, db_url: str, db: Database) -> None:
    mailbox.append([make_message(subject="long way down")])
    before = _bodies(mailbox, "INBOX")
    ref = _ingest(tmp_path, db_url, db, mailbox)
    target = _long_levels(3)
    with _imap(mailbox) as imap, pytest.raises(imapclient.exceptions.IMAPClientError, match=r"too long|Not found"):
        imap.create_folder(target.replace("/", "-") + "/x" * 40)  # the premise: Dovecot has a limit
    task_id = _add_task(db, next(iter(_locations(db))), target=target)
    with _imap(mailbox, folder=None) as imap:
        assert run_pending(db, imap, ref, _select(imap), max_attempts=5) == FilingReport(1, 0, 0)
    task = _tasks(db)[task_id]
    assert task.status == "done" and task.filed_folder is not None and task.filed_folder != target
    assert all(level.isascii() and len(level) <= 50 for level in task.filed_folder.split("/"))
    assert _bodies(mailbox, task.filed_folder) == before, "recorded exactly where the server has it"
    (event,) = _events(db)
    assert event.data["folder"] == target and event.data["server_folder"] == task.filed_folder


def test_a_name_refused_in_every_form_fails_the_task_at_once(tmp_path: Path, mailbox: Mailbox, db_url: str,
                                                             db: Database) -> None:
    mailbox.append([make_message(subject="nowhere to go")])
    before = _bodies(mailbox, "INBOX")
    ref = _ingest(tmp_path, db_url, db, mailbox)
    task_id = _add_task(db, next(iter(_locations(db))), target=_long_levels(6))
    with _imap(mailbox, folder=None) as imap:
        assert run_pending(db, imap, ref, _select(imap), max_attempts=5) == FilingReport(0, 1, 0)
        assert run_pending(db, imap, ref, _select(imap), max_attempts=5) == FilingReport(0, 0, 0), "not retried"
    task = _tasks(db)[task_id]
    assert (task.status, task.attempts) == ("failed", 1)
    assert "refused the folder" in task.last_error and ("too long" in task.last_error or "Not found" in task.last_error)
    assert _bodies(mailbox, "INBOX") == before, "the message stays where it was"
    assert _events(db) == []
