"""The daemon's limit of open files raised to what the system allows: each folder holds a socket and a wake-up."""

from __future__ import annotations

import logging

log = logging.getLogger("maild.daemon")


def raise_open_files_limit() -> int | None:
    """Lift the soft RLIMIT_NOFILE to the hard limit (a service manager's soft default, 1024, would end at a few
    hundred folders: each has an IMAP socket and a wake-up descriptor); return the limit now, None where unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft == hard or (hard == resource.RLIM_INFINITY and soft >= 1 << 16):
        return None if soft == resource.RLIM_INFINITY else soft
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.debug("could not raise the open files limit: %s", exc)
        return soft
    return wanted
