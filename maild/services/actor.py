"""Who is acting (a user of the web app or API, or the CLI's operating-system user) and what their role allows."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

ROLES = ("viewer", "staff", "admin")  # each can do what the ones before it can
_RANK = {role: rank for rank, role in enumerate(ROLES)}


class Forbidden(Exception):
    """The actor's role does not allow the operation."""


@dataclass(frozen=True)
class Actor:
    name: str  # the user name; for the CLI the operating-system user
    role: str
    via: str  # web | api | cli
    user_id: int | None = None

    @property
    def label(self) -> str:
        return f"{self.via}:{self.name}"

    def can(self, needed: str) -> bool:
        return _RANK.get(self.role, -1) >= _RANK[needed]

    def require(self, needed: str) -> None:
        if not self.can(needed):
            raise Forbidden(f"{self.name} is {self.role}; this needs {needed}")


def cli_actor() -> Actor:
    """The CLI runs as whoever may read the config and database: an admin, named by the system user."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Actor(name=name, role="admin", via="cli")
