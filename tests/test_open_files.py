"""`maild run` lifts its open-files limit to the hard limit: each folder holds a socket and a wake-up descriptor."""

from __future__ import annotations

import resource
import subprocess
import sys


def _limits_after_raising(soft: int) -> list[str]:
    """Run in a child process (the limit is process state): set the soft limit, raise it, print both."""
    code = ("import resource; from maild.open_files import raise_open_files_limit; "
            f"hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, "
            f"({soft}, hard)); print(raise_open_files_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))")
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reported, new_soft, new_hard = _limits_after_raising(min(256, soft))
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    assert (int(reported), int(new_soft), int(new_hard)) == (wanted, wanted, hard)
