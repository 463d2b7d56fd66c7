from __future__ import annotations

from pathlib import Path

import pytest

from maild.config import ImapSourceConfig, MaildirSourceConfig
from maild.ingest.sources.urls import SourceUrlError, password_warning, redact, source_from_url


def test_imap_url_with_percent_encoded_user_and_password() -> None:
    source = source_from_url("imap://inbox%40example.test:p%40ss%3Aword@127.0.0.1:1143/Shared%2FSales")
    assert isinstance(source, ImapSourceConfig)
    assert (source.username, source.password, source.port, source.security) == (
        "inbox@example.test", "p@ss:word", 1143, "plain")
    assert source.folders == ["Shared/Sales"]


def test_imaps_defaults() -> None:
    source = source_from_url("imaps://u:p@mail.example.test")
    assert isinstance(source, ImapSourceConfig)
    assert (source.security, source.effective_port, source.folders) == ("tls", 993, ["INBOX"])


def test_options_in_the_query() -> None:
    source = source_from_url("imap://u:tok@h/INBOX?security=starttls&auth=xoauth2&folders=INBOX,Archive&name=x"
                             "&max_connections=3")
    assert isinstance(source, ImapSourceConfig)
    assert (source.security, source.auth, source.folders, source.name, source.max_connections) == (
        "starttls", "xoauth2", ["INBOX", "Archive"], "x", 3)
    default = source_from_url("imap://u:tok@h/INBOX")
    assert isinstance(default, ImapSourceConfig) and default.max_connections == 8


def test_a_private_ca_and_unknown_options() -> None:
    source = source_from_url("imaps://u:p@h/INBOX?ca_file=/etc/maild/ca.pem")
    assert isinstance(source, ImapSourceConfig) and source.ca_file == "/etc/maild/ca.pem" and source.verify_tls
    with pytest.raises(SourceUrlError, match="unknown option 'verifytls'; an imaps URL takes security, auth, "
                                             "folders, name, ca_file, verify_tls, password_file, "
                                             "password_env") as caught:
        source_from_url("imaps://u:secret@h/INBOX?verifytls=false")
    assert "secret" not in str(caught.value)
    with pytest.raises(SourceUrlError, match="unknown option 'folders'; a maildir URL takes name"):
        source_from_url("maildir:///var/mail/x?folders=a")


def test_maildir_url() -> None:
    source = source_from_url("maildir:///var/mail/sales")
    assert isinstance(source, MaildirSourceConfig)
    assert source.path == "/var/mail/sales"


@pytest.mark.parametrize("url,needle", [
    ("pop3://u:p@h/", "unknown scheme"),
    ("imap://h/INBOX", "needs user@ before the host, and the password in ?password_file=FILE or ?password_env="),
    ("imap://u@h/INBOX", "needs a password: ?password_file=FILE or ?password_env=VARIABLE"),
    ("imap://u:p@h/INBOX?password_env=X", "give one password, not user:password@ and password_env"),
    ("imap://u:p@h:99999/", "Port out of range"),
    ("imap://u:p@h/?security=ssl", "security"),
    ("imap://u:p@h/?max_connections=0", "max_connections: Input should be greater than or equal to 1"),
])
def test_bad_urls_are_clear_errors_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(SourceUrlError) as info:
        source_from_url(url)
    assert needle in str(info.value)
    if ":p@" in url:
        assert ":p@" not in str(info.value)


def test_redact() -> None:
    assert redact("imap://u:secret@h/INBOX") == "imap://u:***@h/INBOX"


def test_password_from_a_file_relative_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.chdir(tmp_path)
    source = source_from_url("imaps://sales%40example.test@h/INBOX?password_file=pw")
    assert isinstance(source, ImapSourceConfig) and source.password is None
    assert source.password_file == str(tmp_path / "pw")
    assert source.secret(Path("/elsewhere")) == "s3cret"  # read at each login, from where it was given
    assert password_warning("imaps://sales%40example.test@h/INBOX?password_file=pw") is None


def test_password_from_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_IMAP_PW", "from-env")
    source = source_from_url("imap://u@h/INBOX?password_env=SALES_IMAP_PW&auth=xoauth2")
    assert isinstance(source, ImapSourceConfig) and source.secret(Path(".")) == "from-env"
    monkeypatch.delenv("SALES_IMAP_PW")
    with pytest.raises(SourceUrlError, match="environment variable SALES_IMAP_PW is not set"):
        source_from_url("imap://u@h/INBOX?password_env=SALES_IMAP_PW")


def test_a_missing_password_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceUrlError, match=f"cannot read password_file {tmp_path / 'nope'}"):
        source_from_url(f"imap://u@h/INBOX?password_file={tmp_path / 'nope'}")


def test_a_password_in_the_url_is_warned_about_without_showing_it() -> None:
    warning = password_warning("imap://u:hunter2@h/INBOX")
    assert warning is not None and "hunter2" not in warning
    assert warning.startswith("imap://u:***@h/INBOX: the password on the command line is visible")
