from __future__ import annotations

from pathlib import Path

import pytest

from maild.config import ConfigError, load_config
from tests.helpers import invoke


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):
    path = tmp_path / "maild.yaml"
    path.write_text(text)
    return load_config(path, environ=environ or {}), path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    return str(info.value)


def test_defaults_resolve_relative_to_the_config_file(tmp_path: Path) -> None:
    config, _ = _load(tmp_path, "ingest:\n  batch_messages: 50\n")
    assert config.ingest.batch_messages == 50
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'maild.db'}"
    assert config.blob_dir == tmp_path / "data" / "blobs"


def test_unknown_key_names_file_line_and_key_path(tmp_path: Path) -> None:
    message = _error(tmp_path, "database:\n  url: sqlite:///x.db\ningest:\n  batch_mesages: 5\n")
    assert f"{tmp_path / 'maild.yaml'}:4: ingest.batch_mesages: unknown key" in message


def test_wrong_type_inside_a_source_list(tmp_path: Path) -> None:
    text = (
        "sources:\n"
        "  - name: local\n"
        "    type: maildir\n"
        "    path: mail\n"
        "  - name: sales\n"
        "    type: imap\n"
        "    host: imap.example.test\n"
        "    username: sales\n"
        "    password_env: SALES_PW\n"
        "    port: not-a-port\n"
    )
    message = _error(tmp_path, text)
    assert ":10: sources.1.port:" in message
    assert "integer" in message


def test_imap_source_without_a_secret_is_refused(tmp_path: Path) -> None:
    text = "sources:\n  - name: s\n    type: imap\n    host: h\n    username: u\n"
    message = _error(tmp_path, text)
    assert ":2: sources.0: needs password_env" in message


def test_password_in_yaml_is_not_a_config_key(tmp_path: Path) -> None:
    text = "sources:\n  - name: s\n    type: imap\n    host: h\n    username: u\n    password_env: X\n"
    config, _ = _load(tmp_path, text)
    assert config.sources[0].password is None


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    message = _error(tmp_path, "database:\n  url: [unclosed\n")
    assert message.startswith(f"{tmp_path / 'maild.yaml'}:")
    assert "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "top level must be a mapping" in _error(tmp_path, "- a\n- b\n")


def test_duplicate_source_names(tmp_path: Path) -> None:
    text = "sources:\n  - {name: a, type: maildir, path: x}\n  - {name: a, type: maildir, path: y}\n"
    assert "repeated: a" in _error(tmp_path, text)


def test_bad_database_scheme(tmp_path: Path) -> None:
    assert "database.url: must start with" in _error(tmp_path, "database:\n  url: mysql://x\n")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config, _ = _load(tmp_path, "database:\n  url: sqlite:///a.db\n",
                      environ={"MAILD_DATABASE_URL": "postgresql://u@h/db", "MAILD_LOG_LEVEL": "debug"})
    assert config.database_url == "postgresql+psycopg://u@h/db"
    assert config.log.level == "debug"


def test_secret_from_environment_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    text = ("sources:\n  - {name: a, type: imap, host: h, username: u, password_env: MAILD_T_PW}\n"
            "  - {name: b, type: imap, host: h, username: u, password_file: pw}\n")
    config, _ = _load(tmp_path, text)
    monkeypatch.setenv("MAILD_T_PW", "from-env")
    assert config.sources[0].secret(tmp_path) == "from-env"
    assert config.sources[1].secret(tmp_path) == "s3cret"
    monkeypatch.delenv("MAILD_T_PW")
    with pytest.raises(ConfigError, match="MAILD_T_PW is not set"):
        config.sources[0].secret(tmp_path)


def test_a_secret_file_must_be_a_small_regular_file(tmp_path: Path) -> None:
    """/dev/zero would be read until memory runs out, a FIFO would wait for a writer: both are refused at once."""
    import os

    from maild.config import read_secret

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "big").write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    for name, problem in (("/dev/zero", "is not a regular file"), (str(fifo), "is not a regular file"),
                          (str(tmp_path), "is not a regular file"), ("big", "is larger than 64 KiB: not a secret file"),
                          ("binary", "is not UTF-8 text")):
        with pytest.raises(ConfigError) as info:
            read_secret("source 'a'", None, name, tmp_path)
        assert problem in str(info.value) and str(info.value).startswith("source 'a': password_file ")
    (tmp_path / "small").write_text("  s3cret \n")
    assert read_secret("source 'a'", None, "small", tmp_path) == "s3cret"


def test_webhook_secrets_are_declared_and_of_their_own(tmp_path: Path) -> None:
    config, _ = _load(tmp_path, "rules:\n  webhook_secrets:\n    crm: {env: MAILD_WEBHOOK_CRM}\n"
                                "    erp: {file: erp.key}\n  webhook_allow_networks: [10.0.0.0/8, 127.0.0.1]\n")
    assert set(config.rules.webhook_secrets) == {"crm", "erp"}
    assert [str(n) for n in config.rules.webhook_allow_networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    smtp = ("outbound:\n  transport: {type: smtp, password_env: MAILD_SMTP_PASSWORD}\n"
            "rules:\n  webhook_secrets:\n    crm: {env: MAILD_SMTP_PASSWORD}\n")
    assert _error(tmp_path, smtp).endswith(
        "maild.yaml:5: rules.webhook_secrets.crm: this is also outbound.transport.password; a webhook receiver "
        "could recover it from the signature: give webhooks a secret of their own")
    imap_file = ("sources:\n  - {name: a, type: imap, host: h, username: u, password_file: imap.pw}\n"
                 "rules:\n  webhook_secrets:\n    crm: {file: ./imap.pw}\n")
    assert "rules.webhook_secrets.crm: this is also the password of source 'a'" in _error(tmp_path, imap_file)
    assert "rules.webhook_secrets.crm: this is also the environment variable overriding database.url" in _error(
        tmp_path, "rules:\n  webhook_secrets:\n    crm: {env: MAILD_DATABASE_URL}\n")
    assert "expected exactly one of env (an environment variable) or file (a path)" in _error(
        tmp_path, "rules:\n  webhook_secrets:\n    crm: {env: A, file: b}\n")
    assert "rules.webhook_allow_networks.0" in _error(tmp_path, "rules:\n  webhook_allow_networks: [intranet]\n")


def test_config_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("sources:\n  - {name: a, type: maildir, path: x}\n")
    ok = invoke(good, "config", "check")
    assert "OK (1 source(s)" in ok.stdout
    assert "note: matching.trusted_authserv_ids is empty: Authentication-Results are not read" in ok.stderr
    trusting = tmp_path / "trusting.yaml"
    trusting.write_text("matching: {trusted_authserv_ids: [mx.example.com]}\n")
    assert "trusted_authserv_ids" not in invoke(trusting, "config", "check").stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("log:\n  level: loud\n")
    result = invoke(bad, "config", "check", check=False)
    assert result.returncode == 1
    assert f"{bad}:2: log.level:" in result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nope.yaml", "status", check=False)
    assert result.returncode != 0
    assert "cannot read config" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "maild.yaml"
    config.write_text("database:\n  url: postgresql://nobody@127.0.0.1:1/none\n")
    result = invoke(config, "status", check=False)
    assert result.returncode == 1
    assert "maild: database error:" in result.stderr
    assert "Traceback" not in result.stderr
