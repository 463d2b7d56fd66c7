from __future__ import annotations

from pathlib import Path

import pytest

from maild.ingest.parse import ParsedMail, Rejected, _with_stdlib, parse_and_store
from maild.store.blobs import BlobStore, sha256_hex
from tests.helpers import corpus_files, make_message

CORPUS = corpus_files()


def test_corpus_is_present() -> None:
    assert len(CORPUS) > 150


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_message_parses_or_is_rejected_with_a_reason(path: Path, tmp_path: Path) -> None:
    raw = path.read_bytes()
    result = parse_and_store(raw, str(tmp_path), 50 * 1024 * 1024)
    assert isinstance(result, ParsedMail | Rejected)
    if isinstance(result, Rejected):
        assert result.reason
    else:
        for text in (result.subject or "", result.text_body, result.html_body):
            assert "\x00" not in text
    if raw:
        assert BlobStore(tmp_path).get(sha256_hex(raw)) == raw, "raw bytes must be kept whatever happens"


def test_fields_and_attachments_are_extracted(tmp_path: Path) -> None:
    raw = make_message(subject="Invoice FA2611-0001", body="see attached", sender="Anna <Anna@Customer.example>",
                       message_id="<m1@customer.example>", attachment=b"\x00\x01binary")
    result = parse_and_store(raw, str(tmp_path), 10**6)
    assert isinstance(result, ParsedMail)
    assert result.parser == "mail-parser"
    assert result.header_message_id == "<m1@customer.example>"
    assert result.subject == "Invoice FA2611-0001"
    assert (result.from_name, result.from_addr) == ("Anna", "anna@customer.example")
    assert result.to_addrs == [["", "sales@example.test"]]
    assert "see attached" in result.text_body
    assert [(a.filename, a.size) for a in result.attachments] == [("data.bin", 8)]
    assert BlobStore(tmp_path).get(result.attachments[0].sha256) == b"\x00\x01binary"


def test_zero_bytes_and_oversize_are_rejected(tmp_path: Path) -> None:
    assert isinstance(parse_and_store(b"", str(tmp_path), 100), Rejected)
    raw = make_message(body="x" * 500)
    rejected = parse_and_store(raw, str(tmp_path), 100)
    assert isinstance(rejected, Rejected)
    assert "max_message_bytes" in rejected.reason
    assert BlobStore(tmp_path).exists(rejected.raw_sha256)


def test_lenient_fallback_parser_survives_what_the_strict_one_refuses(tmp_path: Path) -> None:
    raw = (b"From: =?utf-8?B?broken?= <x@y.example>\r\nTo: unlisted-recipients:; (no To-header)\r\n"
           b"Subject: =?x-unknown?Q?caf=E9?=\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nbody \xe9\r\n")
    errors: list[str] = []
    result, _ = _with_stdlib(raw, sha256_hex(raw), BlobStore(tmp_path), errors)
    assert result.parser == "fallback"
    assert result.from_addr == "x@y.example"
    assert "body" in result.text_body
    assert "ParsedByFallback" in result.defects
