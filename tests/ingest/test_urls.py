from __future__ import annotations

import pytest

from maild.config import ImapSourceConfig, MaildirSourceConfig
from maild.ingest.sources.urls import SourceUrlError, redact, source_from_url


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
    source = source_from_url("imap://u:tok@h/INBOX?security=starttls&auth=xoauth2&folders=INBOX,Archive&name=x")
    assert isinstance(source, ImapSourceConfig)
    assert (source.security, source.auth, source.folders, source.name) == (
        "starttls", "xoauth2", ["INBOX", "Archive"], "x")


def test_a_private_ca_and_unknown_options() -> None:
    source = source_from_url("imaps://u:p@h/INBOX?ca_file=/etc/maild/ca.pem")
    assert isinstance(source, ImapSourceConfig) and source.ca_file == "/etc/maild/ca.pem" and source.verify_tls
    with pytest.raises(SourceUrlError, match="unknown option 'verifytls'; a imaps URL takes security, auth, "
                                             "folders, name, ca_file, verify_tls") as caught:
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
    ("imap://h/INBOX", "needs user:password@"),
    ("imap://u:p@h:99999/", "Port out of range"),
    ("imap://u:p@h/?security=ssl", "security"),
])
def test_bad_urls_are_clear_errors_without_the_password(url: str, needle: str) -> None:
    with pytest.raises(SourceUrlError) as info:
        source_from_url(url)
    assert needle in str(info.value)
    if ":p@" in url:
        assert ":p@" not in str(info.value)


def test_redact() -> None:
    assert redact("imap://u:secret@h/INBOX") == "imap://u:***@h/INBOX"
