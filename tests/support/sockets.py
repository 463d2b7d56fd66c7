"""Counting a process's TCP connections to a port (Linux /proc): how many IMAP connections a daemon holds."""

from __future__ import annotations

import os
from pathlib import Path

ESTABLISHED = "01"


def tcp_connections(pid: int, port: int) -> int:
    """Established TCP connections of process `pid` to `port` (its threads share its descriptors)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[3] == ESTABLISHED and remote_port == port and fields[9] in inodes:
                    count += 1
    return count
