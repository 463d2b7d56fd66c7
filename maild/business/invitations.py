"""Meetings from the calendar invitations in ingested mail, run by the matching stage for decided messages.

Reads the messages' stored calendar parts (attachments with a calendar content type or a .ics name, from
the blob store): METHOD REQUEST or PUBLISH creates the meeting, or updates it by UID when its SEQUENCE is
higher; CANCEL (or STATUS:CANCELLED) cancels it. The meeting's third party is the message's match (else
the one of its external attendees). A broken .ics is logged and skipped: it never fails ingestion.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from maild.config import Config
from maild.store.blobs import BlobStore
from maild.store.models import Attachment

log = logging.getLogger("maild.business")
_att = Attachment.__table__
CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar", "application/x-ics")


class InvitationReader:
    """Built once per matching stage from the config: where blobs are, our own addresses, the timezone."""

    def __init__(self, blob_dir: Path, own: OwnMail, zone: str = "UTC") -> None:
        self.blobs = BlobStore(blob_dir)
        self.own = own
        self.zone = zone

    @classmethod
    def from_config(cls, config: Config) -> InvitationReader:
        return cls(config.blob_dir, OwnMail.from_config(config), config.rules.timezone)

    def record(self, conn: Connection, decisions: Mapping[int, int | None]) -> int:
        """Meetings from the invitations among these decided messages ({message id: matched third party}),
        in the caller's transaction (each message in a savepoint). Returns how many meetings changed."""
        if not decisions:
            return 0
        try:
            with conn.begin_nested():
                rows = self._calendar_parts(conn, decisions)
        except Exception:
            log.exception("looking for calendar invitations failed; meetings from this batch are skipped")
            return 0
        changed = 0
        for message_id, digest, filename in rows:
            try:
                invitations = read_invitations(self.blobs.path(digest).read_bytes(), self.zone)
            except Exception as exc:  # a broken or missing .ics is the mail's problem, never the batch's
                log.warning("skipping calendar part %s of message %s: %s", filename or digest[:12], message_id,
                            exc, extra={"fields": {"message": message_id}})
                continue
            for invitation in invitations:
                changed += self._apply(conn, message_id, decisions[message_id], invitation)
        return changed

    def _calendar_parts(self, conn: Connection, decisions: Mapping[int, int | None]) -> list[Any]:
        return list(conn.execute(
            select(_att.c.message_id, _att.c.sha256, _att.c.filename)
            .where(_att.c.message_id.in_(list(decisions)),
                   or_(func.lower(_att.c.content_type).in_(CALENDAR_TYPES), func.lower(_att.c.filename).like("%.ics")))
            .order_by(_att.c.message_id, _att.c.position)))

    def _apply(self, conn: Connection, message_id: int, thirdparty_id: int | None, invitation: Invitation) -> int:
        try:
            with conn.begin_nested():
                change = self._write(conn, message_id, thirdparty_id, invitation)
        except Exception as exc:
            log.warning("skipping invitation %s of message %s: %s", invitation.uid, message_id, exc,
                        extra={"fields": {"message": message_id}})
            return 0
        log.info("meeting %s", change.action, extra={"fields": {"message": message_id, "uid": invitation.uid,
                                                                "meeting": change.meeting_id}})
        return 1 if change.action in ("created", "updated", "cancelled") else 0

    def _write(self, conn: Connection, message_id: int, thirdparty_id: int | None,
               invitation: Invitation) -> MeetingChange:
        if invitation.method == "CANCEL":
            return cancel_meeting_in(conn, invitation.uid, sequence=invitation.sequence, message_id=message_id)
        people = list(invitation.attendees)
        if invitation.organizer is not None:
            people.insert(0, invitation.organizer)
        attendees = resolve_attendees(conn, people, self.own)
        organizer = invitation.organizer[1] if invitation.organizer else None
        return upsert_meeting_in(
            conn, uid=invitation.uid, subject=invitation.summary, start_at=invitation.start_at,
            end_at=invitation.end_at, thirdparty_id=thirdparty_id or external_thirdparty(attendees),
            location=invitation.location, attendees=attendees, organizer=organizer[:320] if organizer else None,
            sequence=invitation.sequence, message_id=message_id)
