"""Meetings from the calendar invitations in ingested mail, run by the matching stage for decided messages.

Reads the messages' stored calendar parts (attachments with a calendar content type or a .ics name, from
the blob store): METHOD REQUEST or PUBLISH creates the meeting, or updates it by UID when its SEQUENCE is
higher; CANCEL (or STATUS:CANCELLED) cancels it. The meeting's third party is the message's match (else
the one of its external attendees). A broken .ics is logged and skipped: it never fails ingestion.

Inbound mail is untrusted, and a UID is no secret (every attendee and every forward has it), so:
- only mail from one of us (`OwnMail`) or from an address of the directory (a known third party's contact or
  general address) creates or changes meetings; a message a person assigned from triage counts as known;
- a meeting that exists is changed or cancelled only by mail from its stored organiser;
- mail that failed authentication (`messages.auth == "fail"`) changes nothing;
- at most `invitations.max_meetings_per_message` events per message and `invitations.max_attendees` attendees
  per meeting are taken.
What is refused is reported: one `meeting.refused` event per message (with each uid and why) and a log line;
the mail itself is kept as always. Attendees are recorded whoever they are; rules mail only the known ones.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, func, or_, select

from maild.business.calendar import Invitation, read_invitations
from maild.business.meetings import (
    MeetingChange,
    OwnMail,
    cancel_meeting_in,
    external_thirdparty,
    resolve_attendees,
    upsert_meeting_in,
)
from maild.business.timeline import append_event
from maild.config import Config
from maild.matchers.normalize import normalize_address
from maild.store.blobs import BlobStore
from maild.store.models import Attachment, MailAddress, Meeting, Message

log = logging.getLogger("maild.business")
_att, _msg, _addr, _meet = Attachment.__table__, Message.__table__, MailAddress.__table__, Meeting.__table__
CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar", "application/x-ics")
REPORTED_UIDS = 20  # a `meeting.refused` event names this many refusals; `count` says how many there were


class Refused(Exception):
    """An invitation that is not applied, with the reason."""


@dataclass
class _Mail:
    """One message's invitations, and who sent it."""

    message_id: int
    sender: str | None
    auth: str | None
    auth_reason: str | None
    invitations: list[Invitation] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)


class InvitationReader:
    """Built once per matching stage from the config: where blobs are, our own addresses, the timezone, limits."""

    def __init__(self, blob_dir: Path, own: OwnMail, zone: str = "UTC", *, max_meetings: int = 20,
                 max_attendees: int = 100) -> None:
        self.blobs = BlobStore(blob_dir)
        self.own = own
        self.zone = zone
        self.max_meetings = max_meetings
        self.max_attendees = max_attendees

    @classmethod
    def from_config(cls, config: Config) -> InvitationReader:
        limits = config.invitations
        return cls(config.blob_dir, OwnMail.from_config(config), config.rules.timezone,
                   max_meetings=limits.max_meetings_per_message, max_attendees=limits.max_attendees)

    def record(self, conn: Connection, decisions: Mapping[int, int | None], *, vouched: bool = False) -> int:
        """Meetings from the invitations among these decided messages ({message id: matched third party}),
        in the caller's transaction (each invitation in a savepoint). Returns how many meetings changed.
        `vouched`: a person assigned these messages, so their senders count as known (nothing is reported
        again: the refusals were reported when the mail arrived)."""
        if not decisions:
            return 0
        try:
            with conn.begin_nested():
                mails = self._read(conn, decisions)
        except Exception:
            log.exception("looking for calendar invitations failed; meetings from this batch are skipped")
            return 0
        changed = 0
        for mail in mails:
            if not mail.invitations:
                continue
            changed += self._apply_mail(conn, mail, decisions[mail.message_id], vouched)
            if mail.refused and not vouched:
                self._report(conn, mail, decisions[mail.message_id])
        return changed

    def _read(self, conn: Connection, decisions: Mapping[int, int | None]) -> list[_Mail]:
        rows = conn.execute(
            select(_att.c.message_id, _att.c.sha256, _att.c.filename, _msg.c.from_addr, _msg.c.auth,
                   _msg.c.auth_reason)
            .join(_msg, _msg.c.id == _att.c.message_id)
            .where(_att.c.message_id.in_(list(decisions)),
                   or_(func.lower(_att.c.content_type).in_(CALENDAR_TYPES), func.lower(_att.c.filename).like("%.ics")))
            .order_by(_att.c.message_id, _att.c.position)).all()
        mails: dict[int, _Mail] = {}
        for message_id, digest, filename, sender, auth, auth_reason in rows:
            mail = mails.setdefault(message_id, _Mail(message_id, normalize_address(sender), auth, auth_reason))
            try:
                found = read_invitations(self.blobs.path(digest).read_bytes(), self.zone)
            except Exception as exc:  # a broken or missing .ics is the mail's problem, never the batch's
                log.warning("skipping calendar part %s of message %s: %s", filename or digest[:12], message_id,
                            exc, extra={"fields": {"message": message_id}})
                continue
            seen = {(i.uid, i.method, i.sequence) for i in mail.invitations}
            for invitation in found:  # an invitation comes inline and as invite.ics: the same event twice
                if (invitation.uid, invitation.method, invitation.sequence) not in seen:
                    seen.add((invitation.uid, invitation.method, invitation.sequence))
                    mail.invitations.append(invitation)
        return list(mails.values())

    def _apply_mail(self, conn: Connection, mail: _Mail, thirdparty_id: int | None, vouched: bool) -> int:
        distrust = self._distrust(conn, mail, vouched)
        changed = 0
        for index, invitation in enumerate(mail.invitations):
            reason = distrust
            if reason is None and index >= self.max_meetings:
                reason = (f"over the limit of {self.max_meetings} meetings per message "
                          "(invitations.max_meetings_per_message)")
            if reason is None:
                try:
                    changed += self._apply(conn, mail, thirdparty_id, invitation)
                    continue
                except Refused as exc:
                    reason = str(exc)
            mail.refused.append({"uid": invitation.uid, "method": invitation.method, "reason": reason})
        if mail.refused:
            first = mail.refused[0]
            log.warning("refused %d calendar invitation(s) of message %s from %s: %s", len(mail.refused),
                        mail.message_id, mail.sender, first["reason"],
                        extra={"fields": {"message": mail.message_id, "uid": first["uid"]}})
        return changed

    def _distrust(self, conn: Connection, mail: _Mail, vouched: bool) -> str | None:
        """Why no invitation of this mail may change a meeting, or None."""
        if mail.auth == "fail":
            return f"the mail failed authentication ({mail.auth_reason or 'dmarc=fail'})"
        if mail.sender is None:
            return "the mail has no sender address"
        if vouched or self.own.is_own(mail.sender):
            return None
        known = conn.execute(select(_addr.c.id).where(_addr.c.address == mail.sender).limit(1)).first()
        if known is None:
            return f"the sender {mail.sender} is neither one of us nor a known contact"
        return None

    def _apply(self, conn: Connection, mail: _Mail, thirdparty_id: int | None, invitation: Invitation) -> int:
        try:
            with conn.begin_nested():
                change = self._write(conn, mail, thirdparty_id, invitation)
        except Refused:
            raise
        except Exception as exc:
            log.warning("skipping invitation %s of message %s: %s", invitation.uid, mail.message_id, exc,
                        extra={"fields": {"message": mail.message_id}})
            return 0
        log.info("meeting %s", change.action, extra={"fields": {"message": mail.message_id, "uid": invitation.uid,
                                                                "meeting": change.meeting_id}})
        return 1 if change.action in ("created", "updated", "cancelled") else 0

    def _write(self, conn: Connection, mail: _Mail, thirdparty_id: int | None,
               invitation: Invitation) -> MeetingChange:
        self._check_organiser(conn, mail, invitation.uid)
        message_id = mail.message_id
        if invitation.method == "CANCEL":
            return cancel_meeting_in(conn, invitation.uid, sequence=invitation.sequence, message_id=message_id)
        people = list(invitation.attendees)
        if invitation.organizer is not None:
            people.insert(0, invitation.organizer)
        people, omitted = _first_people(people, self.max_attendees)
        attendees = resolve_attendees(conn, people, self.own)
        organizer = invitation.organizer[1] if invitation.organizer else mail.sender
        report = {"attendees_omitted": omitted, "attendees_limit": self.max_attendees} if omitted else None
        if omitted:
            log.warning("meeting %s of message %s: %d attendees over invitations.max_attendees (%d) not recorded",
                        invitation.uid, message_id, omitted, self.max_attendees,
                        extra={"fields": {"message": message_id}})
        return upsert_meeting_in(
            conn, uid=invitation.uid, subject=invitation.summary, start_at=invitation.start_at,
            end_at=invitation.end_at, thirdparty_id=thirdparty_id or external_thirdparty(attendees),
            location=invitation.location, attendees=attendees, organizer=organizer[:320] if organizer else None,
            sequence=invitation.sequence, message_id=message_id, event_data=report)

    def _check_organiser(self, conn: Connection, mail: _Mail, uid: str) -> None:
        """A meeting that exists (or the series an exception `UID#...` belongs to) changes only by mail from
        its stored organiser."""
        uids = [uid, uid.partition("#")[0]] if "#" in uid else [uid]
        for organizer, in conn.execute(select(_meet.c.organizer).where(_meet.c.uid.in_(uids))).all():
            if organizer is None:
                raise Refused(f"meeting {uid} has no organiser on record; change it with `maild meeting`")
            if normalize_address(organizer) != mail.sender:
                raise Refused(f"only its organiser {organizer} may change or cancel meeting {uid}, "
                              f"not {mail.sender}")

    def _report(self, conn: Connection, mail: _Mail, thirdparty_id: int | None) -> None:
        try:
            with conn.begin_nested():
                append_event(conn, "meeting.refused", thirdparty_id=thirdparty_id, message_id=mail.message_id,
                             data={"sender": mail.sender, "count": len(mail.refused),
                                   "refused": mail.refused[:REPORTED_UIDS], "reason": mail.refused[0]["reason"]})
        except Exception:
            log.exception("could not record the refused invitations of message %s", mail.message_id)


def _first_people(people: list[tuple[str, str]], limit: int) -> tuple[list[tuple[str, str]], int]:
    """The first `limit` distinct addresses (the organiser first), and how many more there were."""
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    omitted = 0
    for name, address in people:
        key = normalize_address(address) or address
        if key in seen:
            continue
        seen.add(key)
        if len(kept) < limit:
            kept.append((name, address))
        else:
            omitted += 1
    return kept, omitted

