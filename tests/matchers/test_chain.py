"""The matchers and the decision, as pure functions over an in-memory directory snapshot."""

from __future__ import annotations

from maild.config import Config
from maild.matchers import chain
from maild.matchers.base import MailFacts, Snapshot
from maild.matchers.normalize import name_key, normalize_address, plus_tag
from maild.matchers.stage import settings_from

SETTINGS = settings_from(Config.model_validate({
    "matching": {"instance_id": "inst01", "own_domains": ["example.com"]}}))
ORDER = ["thread", "address", "domain", "reference", "display_name"]
ACME, MUELLER, OTHER = 1, 2, 3
NAMES = {ACME: "ACME Corp", MUELLER: "Müller Bau GmbH", OTHER: "Other GmbH"}


def facts(**kw: object) -> MailFacts:
    base: dict[str, object] = {
        "message_id": 1, "header_message_id": "<x@y>", "in_reply_to": None, "references": [],
        "from_addr": "someone@nowhere.example", "from_name": None, "reply_to": [], "to": ["sales@example.com"],
        "cc": [], "subject": "hello", "body": ""}
    return chain.derive(MailFacts(**{**base, **kw}), SETTINGS)  # type: ignore[arg-type]


def snapshot(**kw: object) -> Snapshot:
    snap = Snapshot(thirdparty_names=dict(NAMES))
    for key, value in kw.items():
        setattr(snap, key, value)
    return snap


def decide(f: MailFacts, snap: Snapshot) -> chain.Decision:
    return chain.decide(chain.run(f, snap, SETTINGS, ORDER), SETTINGS, snap.thirdparty_names)


def test_normal_forms() -> None:
    assert normalize_address(" Anna+Sales@MÜLLER.example ") == "anna@xn--mller-kva.example"
    assert normalize_address("not an address") is None
    assert plus_tag("sales+maild.inst01.tok@example.com") == "maild.inst01.tok"
    assert name_key("  Müller-Bau  GmbH ") == "muller bau gmbh"


def test_contact_address_resolves_to_its_company() -> None:
    snap = snapshot(addresses={"anna@acme.example": [(ACME, 7)]})
    d = decide(facts(from_addr="Anna@ACME.example"), snap)
    assert (d.status, d.thirdparty_id, d.contact_id, d.matcher) == ("matched", ACME, 7, "address")
    assert "contact of ACME Corp" in d.reason


def test_reply_to_a_filed_thread_beats_the_address() -> None:
    snap = snapshot(filed_threads={"<sent-1@example.com>": (MUELLER, None)},
                    addresses={"anna@acme.example": [(ACME, 7)]})
    d = decide(facts(from_addr="anna@acme.example", in_reply_to="<sent-1@example.com>"), snap)
    assert (d.thirdparty_id, d.matcher) == (MUELLER, "thread")


def test_our_tracking_id_counts_other_instances_do_not() -> None:
    snap = snapshot(tracking={"tok12345678": (ACME, None)})
    ours = facts(references=["<maild.inst01.tok12345678@example.com>"])
    theirs = facts(references=["<maild.inst99.tok12345678@example.com>"])
    plus = facts(to=["sales+maild.inst01.tok12345678@example.com"])
    assert decide(ours, snap).thirdparty_id == ACME
    assert decide(plus, snap).thirdparty_id == ACME
    assert decide(theirs, snap).status == "unmatched"


def test_free_mail_domain_says_nothing() -> None:
    snap = snapshot(domains={"gmail.com": [ACME]})
    d = decide(facts(from_addr="someone@gmail.com"), snap)
    assert d.status == "unmatched"


def test_two_companies_sharing_a_domain_go_to_triage() -> None:
    snap = snapshot(domains={"shared.example": [ACME, MUELLER]})
    d = decide(facts(from_addr="new.person@shared.example"), snap)
    assert d.status == "ambiguous"
    assert "ACME Corp" in d.reason and "Müller Bau GmbH" in d.reason


def test_invoice_number_settles_a_shared_domain() -> None:
    snap = snapshot(domains={"shared.example": [ACME, MUELLER]}, documents={"FA2611-0007": [("invoice", MUELLER)]})
    d = decide(facts(from_addr="new.person@shared.example", subject="Re: invoice FA2611-0007"), snap)
    assert (d.status, d.thirdparty_id, d.matcher) == ("matched", MUELLER, "reference")


def test_our_outbound_copy_matches_its_recipient() -> None:
    snap = snapshot(addresses={"john@acme.example": [(ACME, 3)]})
    d = decide(facts(from_addr="me@example.com", to=[["John ", "john@acme.example>"][1][:-1]]), snap)
    assert (d.thirdparty_id, d.contact_id) == (ACME, 3)


def test_forward_by_a_colleague_matches_the_original_sender() -> None:
    body = "---------- Forwarded message ---------\nFrom: Anna Becker <anna@mueller.example>\nDate: today\n\nHi"
    snap = snapshot(addresses={"anna@mueller.example": [(MUELLER, 9)]})
    d = decide(facts(from_addr="colleague@example.com", subject="Fwd: Angebot", body=body,
                     to=["sales@example.com"]), snap)
    assert (d.status, d.thirdparty_id, d.contact_id) == ("matched", MUELLER, 9)
    assert "forward" in d.reason


def test_same_address_at_two_companies_is_ambiguous() -> None:
    snap = snapshot(addresses={"shared@box.example": [(ACME, 1), (OTHER, 2)]})
    assert decide(facts(from_addr="shared@box.example"), snap).status == "ambiguous"


def test_display_name_alone_is_too_weak() -> None:
    snap = snapshot(names={"anna becker": [(MUELLER, 9)]})
    d = decide(facts(from_addr="anna.b@gmail.com", from_name="Anna Becker"), snap)
    assert d.status == "unmatched"
    assert "weak evidence" in d.reason and "Müller Bau GmbH" in d.reason


def test_a_subdomain_matches_the_third_party_of_its_registered_parent() -> None:
    snap = snapshot(domains={"customer.example": [ACME]})
    d = decide(facts(from_addr="anna@mail.customer.example"), snap)
    assert (d.status, d.thirdparty_id, d.matcher) == ("matched", ACME, "domain")
    assert "mail.customer.example (under customer.example) belongs to ACME Corp" in d.reason


def test_the_most_specific_registered_domain_wins() -> None:
    snap = snapshot(domains={"customer.example": [ACME], "eu.customer.example": [MUELLER]})
    assert decide(facts(from_addr="x@mx.eu.customer.example"), snap).thirdparty_id == MUELLER
    assert decide(facts(from_addr="x@eu.customer.example"), snap).thirdparty_id == MUELLER
    assert decide(facts(from_addr="x@mail.customer.example"), snap).thirdparty_id == ACME


def test_subdomains_never_reach_a_public_suffix_or_a_free_mail_provider() -> None:
    snap = snapshot(domains={"co.uk": [ACME], "github.io": [ACME], "gmail.com": [MUELLER]})
    for sender in ("x@customer.co.uk", "x@someone.github.io", "x@eu.gmail.com"):
        assert decide(facts(from_addr=sender), snap).status == "unmatched", sender
