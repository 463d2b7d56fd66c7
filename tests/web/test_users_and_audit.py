"""Users, login throttling, API tokens and the append-only audit log, through the services and the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from maild.cli.main import cli
from maild.config import WebConfig
from maild.services import audit, tokens, users
from maild.services.actor import Actor, Forbidden
from maild.store.db import Database
from tests.helpers import write_config

ADMIN = Actor("root", "admin", "cli")


def test_log_in_with_the_right_password_only_and_throttle_wrong_ones(db: Database) -> None:
    users.add_user(db, ADMIN, "anna", "correct horse battery", "staff")
    cfg = WebConfig(login_max_failures=3)
    actor, epoch = users.log_in(db, cfg, "anna", "correct horse battery")
    assert (actor.name, actor.role, actor.via) == ("anna", "staff", "web")
    assert users.session_actor(db, actor.user_id or 0, epoch) == actor
    for _ in range(2):
        with pytest.raises(users.LoginRefused) as refused:
            users.log_in(db, cfg, "anna", "wrong password!")
        assert refused.value.retry_after is None and str(refused.value) == "wrong user name or password"
    with pytest.raises(users.LoginRefused) as third:
        users.log_in(db, cfg, "anna", "wrong password!")
    assert third.value.retry_after is not None
    with pytest.raises(users.LoginRefused, match="too many failed logins"):  # even the right password waits now
        users.log_in(db, cfg, "anna", "correct horse battery")
    with pytest.raises(users.LoginRefused, match="wrong user name or password"):  # unknown names look the same
        users.log_in(db, cfg, "nobody", "whatever it is")


def test_logout_password_change_and_disable_end_sessions(db: Database) -> None:
    users.add_user(db, ADMIN, "ben", "first password 1", "viewer")
    actor, epoch = users.log_in(db, WebConfig(), "ben", "first password 1")
    assert actor.user_id is not None
    users.end_sessions(db, actor.user_id)
    assert users.session_actor(db, actor.user_id, epoch) is None
    actor, epoch = users.log_in(db, WebConfig(), "ben", "first password 1")
    users.set_password(db, ADMIN, "ben", "second password 2")
    assert users.session_actor(db, actor.user_id or 0, epoch) is None
    actor, epoch = users.log_in(db, WebConfig(), "ben", "second password 2")
    users.set_disabled(db, ADMIN, "ben")
    assert users.session_actor(db, actor.user_id or 0, epoch) is None
    with pytest.raises(users.LoginRefused):
        users.log_in(db, WebConfig(), "ben", "second password 2")


def test_only_admins_manage_users_and_passwords_are_checked(db: Database) -> None:
    with pytest.raises(Forbidden):
        users.add_user(db, Actor("s", "staff", "web"), "x", "long enough pw", "admin")
    with pytest.raises(ValueError, match="at least 10"):
        users.add_user(db, ADMIN, "x", "short", "viewer")
    with pytest.raises(ValueError, match="unknown role"):
        users.add_user(db, ADMIN, "x", "long enough pw", "boss")


def test_tokens_are_shown_once_stored_hashed_and_revocable(db: Database) -> None:
    users.add_user(db, ADMIN, "api", "long enough pw", "staff")
    token_id, token = tokens.create(db, ADMIN, "api", "erp")
    assert tokens.actor_for(db, token) == Actor("api", "staff", "api", 1)
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT token_sha256 FROM api_tokens")).scalar()
    assert token not in stored and len(stored) == 64
    assert tokens.actor_for(db, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.revoke(db, ADMIN, token_id) is True
    assert tokens.actor_for(db, token) is None
    assert tokens.revoke(db, ADMIN, token_id) is False


def test_the_audit_log_is_append_only_and_written_with_the_change(db: Database) -> None:
    users.add_user(db, ADMIN, "carl", "long enough pw", "viewer")
    users.set_disabled(db, ADMIN, "carl")
    [disabled, added] = audit.entries(db)
    assert (added.action, added.actor, added.via, added.after) == ("user.add", "root", "cli",
                                                                  {"username": "carl", "role": "viewer"})
    assert (disabled.before, disabled.after) == ({"disabled": False}, {"disabled": True})
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
    with pytest.raises(LookupError):  # a change that fails leaves no entry
        users.set_disabled(db, ADMIN, "nobody")
    assert len(audit.entries(db)) == 2


def test_user_token_and_audit_commands(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", [])
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None, code: int = 0) -> str:
        result = runner.invoke(cli, ["--config", str(config), *args], input=stdin)
        assert result.exit_code == code, result.output
        return result.output

    assert "user boss added (admin)" in run("user", "add", "boss", "--role", "admin", "--password-stdin",
                                            stdin="a good long password\n")
    assert "at least 10 characters" in run("user", "add", "eve", "--password-stdin", stdin="short\n", code=1)
    assert "already exists" in run("user", "add", "boss", "--password-stdin", stdin="a good long password\n", code=1)
    listing = run("user", "list")
    assert "boss" in listing and "admin" in listing and "never" in listing
    token = run("token", "create", "boss", "--name", "erp").splitlines()[0]
    assert token.startswith("maild_")
    assert "erp" in run("token", "list") and token not in run("token", "list")
    assert "revoked" in run("token", "revoke", "1")
    assert "already revoked" in run("token", "revoke", "1", code=1)
    assert "password of boss changed" in run("user", "passwd", "boss", "--password-stdin",
                                             stdin="another long password\n")
    assert "disabled" in run("user", "disable", "boss")
    assert "no user 'ghost'" in run("user", "disable", "ghost", code=1)
    entries = json.loads(run("audit", "--json"))
    assert [e["action"] for e in entries] == ["user.disable", "user.passwd", "token.revoke", "token.create",
                                              "user.add"]
    assert all(e["via"] == "cli" for e in entries)
    assert "another long password" not in json.dumps(entries) and "a good long password" not in json.dumps(entries)
    assert "user.add" in run("audit", "--action", "user.add")
