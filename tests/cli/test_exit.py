"""The `maild` process leaves its heap to the exit: a stopped daemon's interpreter does not spend seconds of a loaded
machine's CPU collecting garbage before the process ends (a SIGTERM stop took 5-10 s at load 15, the collections'
~0.6 s of CPU stretched by the load)."""

from __future__ import annotations

import gc
import subprocess
import sys

from tests.helpers import invoke

# What the interpreter has left to collect at exit: the atexit hook runs after main() returned.
PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("frozen" if gc.get_freeze_count() > 0 else "not frozen"))
sys.argv = ["maild", "--version"]
from maild.cli.main import main
main()
"""


def test_the_command_leaves_its_heap_to_the_exit() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "frozen"


def test_a_command_run_in_process_does_not_freeze_the_caller() -> None:
    before = gc.get_freeze_count()
    assert invoke(None, "--version").returncode == 0
    assert gc.get_freeze_count() == before, "only a process that ends with the command may freeze its heap"
