"""The sender's authentication from our trusted server's Authentication-Results (RFC 8601)."""

from __future__ import annotations

import pytest

from maild.ingest.authentication import normalise_ids, verdict
from maild.ingest.parse import ParsedMail, parse_and_store

TRUSTED = normalise_ids(["MX.Nordlicht.example."])
OURS = "mx.nordlicht.example"


def ar(server: str, results: str) -> tuple[str, str]:
    return ("Authentication-Results", f"{server};\r\n {results}")


RECEIVED = ("Received", "from mail.mueller.example by mx.nordlicht.example; Thu, 3 Dec 2026 10:00:00 +0000")


@pytest.mark.parametrize(("results", "expected"), [
    ("dmarc=fail (p=reject) header.from=mueller.example", "fail"),
    ("spf=pass smtp.mailfrom=x@mueller.example; dkim=pass header.d=mueller.example; dmarc=fail "
     "header.from=mueller.example", "fail"),  # DMARC decides when it has spoken
    ("spf=fail smtp.mailfrom=x@mueller.example; dmarc=pass header.from=mueller.example", "pass"),
    ("dkim=pass header.d=mail.mueller.example; spf=fail smtp.mailfrom=mueller.example", "pass"),  # aligned DKIM
    ("dkim=pass header.d=esp.example; spf=fail smtp.mailfrom=bounce@esp.example", "fail"),  # not aligned
    ("spf=fail smtp.mailfrom=x@mueller.example", "fail"),
    ("spf=softfail smtp.mailfrom=x@mueller.example; dmarc=none header.from=mueller.example", "none"),
    ("spf=pass smtp.mailfrom=x@mueller.example", "pass"),
    ("dkim=pass header.d=example", "none"),  # a bare top-level name aligns with nothing
    ("none", "none"),
])
def test_verdicts(results: str, expected: str) -> None:
    found = verdict([RECEIVED, ar(OURS, results)][::-1], TRUSTED, "j.weiss@mueller.example")
    assert found.status == expected, found


def test_only_the_topmost_block_of_the_trusted_server_counts() -> None:
    forged_pass = ar(OURS, "dmarc=pass header.from=mueller.example")  # written by the sender, below our Received
    headers = [("Received", "by store.nordlicht.example (LMTP)"),  # an internal hop above our server's results
               ar(OURS, "dkim=none; dmarc=fail header.from=mueller.example"),
               ar("mx.google.com", "dmarc=pass header.from=mueller.example"),  # another server's word: ignored
               RECEIVED, forged_pass, ("Received", "from attacker")]
    found = verdict(headers, TRUSTED, "j.weiss@mueller.example")
    assert found.status == "fail"
    assert found.reason == f"{OURS}: dkim=none; {OURS}: dmarc=fail header.from=mueller.example"
    # Without our server's own header, a "pass" the sender wrote further down is still read as ours: that is
    # why the receiving server must strip such headers (RFC 8601 section 5), as the docs say.
    assert verdict([RECEIVED, ("Received", "from attacker")], TRUSTED, "a@b.example").status == "none"


def test_unreadable_or_unattributed_headers_are_no_verdict() -> None:
    headers = [("Authentication-Results", "spf=pass (Microsoft writes no authserv-id) smtp.mailfrom=x.example"),
               ("Authentication-Results", "mx.nordlicht.example; dmarc=((("), RECEIVED]
    found = verdict(headers, TRUSTED, "a@x.example")
    assert found.status == "none" and "no Authentication-Results of mx.nordlicht.example" in found.reason


def test_parse_reads_it_only_with_trusted_ids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = ("Authentication-Results: mx.nordlicht.example; spf=fail smtp.mailfrom=mueller.example;\r\n"
           "\tdmarc=fail (p=quarantine) header.from=mueller.example\r\n"
           f"Received: {RECEIVED[1]}\r\n"
           "From: =?utf-8?q?J=C3=BCrgen?= <j.weiss@mueller.example>\r\nTo: billing@nordlicht.example\r\n"
           "Subject: Re: FA2611-0007\r\nMessage-ID: <f@x>\r\n\r\nPaid already.\r\n").encode()
    plain = parse_and_store(raw, str(tmp_path), 10**6)
    assert isinstance(plain, ParsedMail) and plain.auth is None and plain.auth_reason is None
    checked = parse_and_store(raw, str(tmp_path), 10**6, TRUSTED)
    assert isinstance(checked, ParsedMail) and checked.auth == "fail"
    assert checked.auth_reason == (f"{OURS}: spf=fail smtp.mailfrom=mueller.example; "
                                   f"{OURS}: dmarc=fail header.from=mueller.example")
