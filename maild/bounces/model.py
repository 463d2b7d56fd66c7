"""What a delivery-failure notice says about one recipient."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MAX_RECIPIENTS = 1000  # a report naming more is cut here (and says so in its evidence)


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    action: str  # failed | delayed
    status: str | None  # RFC 3463 code, e.g. 5.1.1
    diagnostic: str  # the remote server's words, or the notice's
    hard: bool
    reason: str = ""  # user unknown, mailbox full, ... (maild.bounces.status.reason)
    remote_mta: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FailedRecipient:
        return cls(**{k: data.get(k) for k in ("address", "action", "status", "diagnostic", "hard", "reason",
                                               "remote_mta")})
