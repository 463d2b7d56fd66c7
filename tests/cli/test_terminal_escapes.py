"""Control characters from inbound mail or directory data never reach the terminal raw (maild/cli/render.py)."""

from __future__ import annotations

import base64
import mailbox
import re
from pathlib import Path

from maild.cli.render import printable
from tests.helpers import invoke, write_config

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")  # anything but the newline that ends a line


def _encoded(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def _hostile_mail() -> bytes:
    name = "Mallory\x1b[2J\x1b[31m\u202eevil"
    subject = "Invoice\r\nFAKE: decision: assigned -> Acme\x07\x1b]0;pwned\x07"
    return (f'From: "{name}" <mallory@evil.example>\r\n'  # raw control bytes in a header, as some senders do
            "To: sales@example.test\r\n"
            f"Subject: {_encoded(subject)}\r\n"
            "Date: Fri, 20 Nov 2026 10:00:00 +0000\r\n"
            "Message-ID: <hostile@evil.example>\r\n"
            "\r\nhello\r\n").encode()


def _assert_clean(output: str, *expected: str) -> None:
    assert not RAW_CONTROL.search(output), repr(output)
    for text in expected:
        assert text in output, output


def test_triage_explain_timeline_and_directory_output_escape_control_characters(tmp_path: Path, db_url: str) -> None:
    box = mailbox.Maildir(tmp_path / "mail", create=True)
    box.add(_hostile_mail())
    config = write_config(tmp_path / "home", db_url, [{"name": "m", "type": "maildir", "path": str(box._path)}])
    directory = tmp_path / "tp.csv"
    directory.write_text('external_id,name,custom.note\nC-1,"Acme\x1b[8m","line one\nFAKE line\x1b[0m"\n',
                         encoding="utf-8")
    invoke(config, "import", "thirdparties", str(directory))
    invoke(config, "ingest", "--once")

    listing = invoke(config, "triage", "list").stdout
    _assert_clean(listing, "Invoice\\r\\nFAKE: decision: assigned")
    assert len(listing.splitlines()) == 1
    message_id = listing.split()[0]
    explained = invoke(config, "explain", message_id).stdout
    _assert_clean(explained, "\\r\\nFAKE")
    assert not any(line.startswith("FAKE") for line in explained.splitlines())

    invoke(config, "triage", "assign", message_id, "C-1", "--learn")
    for command in (("timeline", "C-1"), ("thirdparty", "show", "C-1"), ("thirdparty", "list"), ("contact", "list")):
        output = invoke(config, *command).stdout
        _assert_clean(output, "Acme\\x1b[8m")
        assert not any(line.startswith("FAKE") for line in output.splitlines()), output
    _assert_clean(invoke(config, "timeline", "C-1").stdout, "Invoice\\r\\nFAKE")
    _assert_clean(invoke(config, "contact", "list").stdout, "Mallory\\x1b[2J")
    _assert_clean(invoke(config, "thirdparty", "show", "C-1").stdout, "note: line one\\nFAKE line\\x1b[0m")


def test_printable_escapes_controls_and_bidi_but_keeps_other_text() -> None:
    assert printable("a\nb\rc\td\x00e\x1bf\x7fg\x85h\u202ei\u2066j\u2028k") == \
        "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x85h\\u202ei\\u2066j\\u2028k"
    kept = "Müller & Söhne 👨‍👩‍👧 日本語 \\n"
    assert printable(kept) == kept and printable(None) == ""
