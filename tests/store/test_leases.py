"""Named leases: one holder at a time, renewal, expiry takeover, dead-local-process takeover."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from maild.store import leases
from maild.store.db import Database


def test_one_holder_at_a_time_and_renewal(db: Database) -> None:
    assert leases.acquire(db, "x", "host-a:1:a", ttl=30)
    assert not leases.acquire(db, "x", "host-b:2:b", ttl=30)
    assert leases.acquire(db, "x", "host-a:1:a", ttl=30)  # renewal
    assert leases.holder(db, "x") == "host-a:1:a"
    assert leases.acquire(db, "y", "host-b:2:b", ttl=30)  # another name is another lease


def test_expired_lease_is_taken_over(db: Database) -> None:
    assert leases.acquire(db, "x", "host-a:1:a", ttl=0.2)
    time.sleep(0.4)
    assert leases.holder(db, "x") is None
    assert leases.acquire(db, "x", "host-b:2:b", ttl=30)
    assert not leases.acquire(db, "x", "host-a:1:a", ttl=30)


def test_release_frees_it_at_once(db: Database) -> None:
    assert leases.acquire(db, "x", "host-a:1:a", ttl=30)
    leases.release(db, "x", "host-b:2:b")  # not the holder: no effect
    assert not leases.acquire(db, "x", "host-b:2:b", ttl=30)
    leases.release(db, "x", "host-a:1:a")
    assert leases.acquire(db, "x", "host-b:2:b", ttl=30)


def test_a_dead_process_on_this_host_loses_its_lease_at_once(db: Database) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert leases.acquire(db, "x", f"{socket.gethostname()}:{gone.pid}:dead", ttl=300)
    assert leases.acquire(db, "x", f"{socket.gethostname()}:999999999:alive", ttl=300)
