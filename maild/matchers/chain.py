"""Run the matchers in the configured order and decide: matched, ambiguous (triage) or unmatched (triage).

The first verdict that names one third party with enough confidence decides. Two third parties
equally likely is ambiguity, never a guess; weaker evidence later in the order may still settle it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from maild.matchers import address, display_name, domain, reference, thread
from maild.matchers.base import Candidate, MailFacts, Matcher, Settings, Snapshot, Verdict

MATCHERS: dict[str, Matcher] = {
    "thread": thread.match,
    "address": address.match,
    "domain": domain.match,
    "reference": reference.match,
    "display_name": display_name.match,
}


@dataclass(frozen=True)
class Decision:
    status: str  # matched | ambiguous | unmatched
    thirdparty_id: int | None
    contact_id: int | None
    matcher: str | None
    confidence: float
    reason: str


def derive(facts: MailFacts, settings: Settings) -> MailFacts:
    """The facts with what several matchers need computed once (addresses in their roles, refs, tokens)."""
    return replace(facts, roles=tuple(address.roles(facts, settings)), thread_refs=tuple(thread.thread_ids(facts)),
                   tokens=tuple(thread.tracking_tokens(facts, settings.instance_id)),
                   doc_refs=tuple(reference.references(facts, settings)))


def run(facts: MailFacts, snapshot: Snapshot, settings: Settings, order: Sequence[str]) -> list[Verdict]:
    return [MATCHERS[name](facts, snapshot, settings) for name in order]


def decide(verdicts: Sequence[Verdict], settings: Settings, names: dict[int, str]) -> Decision:
    ambiguity: str | None = None
    weak: tuple[Verdict, Candidate] | None = None
    for verdict in verdicts:
        ranked = _best_per_thirdparty(verdict.candidates)
        if not ranked:
            continue
        top = ranked[0]
        if len(ranked) > 1 and ranked[1].confidence >= top.confidence:
            tied = [names.get(c.thirdparty_id, str(c.thirdparty_id)) for c in ranked
                    if c.confidence >= top.confidence]
            ambiguity = ambiguity or f"{verdict.matcher}: equally likely: {', '.join(tied)}"
            continue
        if top.confidence < settings.min_confidence:
            weak = weak or (verdict, top)
            continue
        return Decision("matched", top.thirdparty_id, top.contact_id, verdict.matcher, top.confidence, top.reason)
    if ambiguity:
        return Decision("ambiguous", None, None, None, 0.0, ambiguity)
    if weak:
        verdict, top = weak
        return Decision("unmatched", None, None, verdict.matcher, top.confidence,
                        f"only weak evidence ({verdict.matcher} {top.confidence:.2f}): {top.reason}")
    return Decision("unmatched", None, None, None, 0.0, "no matcher found a third party")


def _best_per_thirdparty(candidates: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per third party: the most confident, preferring one that names a contact."""
    best: dict[int, Candidate] = {}
    for cand in candidates:
        held = best.get(cand.thirdparty_id)
        if held is None or _strength(cand) > _strength(held):
            best[cand.thirdparty_id] = cand
    return sorted(best.values(), key=lambda c: -c.confidence)


def _strength(candidate: Candidate) -> tuple[float, bool]:
    return (candidate.confidence, candidate.contact_id is not None)
