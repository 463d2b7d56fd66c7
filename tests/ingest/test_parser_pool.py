from __future__ import annotations

import os
import signal
from pathlib import Path

from maild.ingest.parse import ParsedMail
from maild.ingest.parser_pool import ParserPool
from tests.helpers import make_message


def test_a_killed_parser_process_loses_and_quarantines_nothing(tmp_path: Path) -> None:
    pool = ParserPool(2, str(tmp_path), 10**7)
    try:
        raws = [make_message(subject=f"m{i}", body="x" * 2000) for i in range(300)]
        submitted = pool.submit(raws)
        victim = next(iter(submitted[0]._processes))  # one of this pool's parser processes
        os.kill(victim, signal.SIGKILL)
        results = pool.results(raws, submitted)
        manager = submitted[0]._executor_manager_thread
        if manager is not None:  # the broken pool winds down instead of spinning forever
            manager.join(timeout=60)
            assert not manager.is_alive()
        assert len(results) == 300
        assert all(isinstance(r, ParsedMail) for r in results)
        assert [r.subject for r in results] == [f"m{i}" for i in range(300)]
        # the replacement pool works for the next batch
        assert all(isinstance(r, ParsedMail) for r in pool.results(raws[:5], pool.submit(raws[:5])))
    finally:
        pool.shutdown()


def test_parser_processes_ignore_sigint(tmp_path: Path) -> None:
    pool = ParserPool(1, str(tmp_path), 10**7)
    try:
        raws = [make_message(subject="a")]
        submitted = pool.submit(raws)
        for pid in submitted[0]._processes:
            os.kill(pid, signal.SIGINT)
        assert isinstance(pool.results(raws, submitted)[0], ParsedMail)
    finally:
        pool.shutdown()


def _mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_parser_processes_carry_the_parser_alone_not_the_daemon(tmp_path: Path) -> None:
    """Spawned, not forked: a parser process does not hold the daemon's libraries (pydantic's core, here, which
    this test process has loaded), so its memory is the parser's alone."""
    import pydantic_core

    assert "pydantic_core" in _mapped_files(os.getpid())
    pool = ParserPool(2, str(tmp_path), 10**7)
    try:
        raws = [make_message(subject="a")]
        submitted = pool.submit(raws)
        assert isinstance(pool.results(raws, submitted)[0], ParsedMail)
        pids = list(submitted[0]._processes)
        assert len(pids) == 2
        for pid in pids:
            assert "pydantic_core" not in _mapped_files(pid), pydantic_core.__file__
    finally:
        pool.shutdown()


SCRIPT = """
import os, sys
if __name__ != "__main__":  # run again as a module in a child process: what the pool must not cause
    open(os.environ["MARKER"], "a").write(f"{os.getpid()}\\n")
from maild.ingest.parser_pool import ParserPool

if __name__ == "__main__":
    pool = ParserPool(2, sys.argv[1], 10**7)
    raw = b"From: a@example.test\\r\\nSubject: x\\r\\n\\r\\nbody\\r\\n"
    print(pool.results([raw], pool.submit([raw]))[0].subject)
    pool.shutdown()
"""


def test_parser_processes_do_not_run_the_daemons_main_script_again(tmp_path: Path) -> None:
    """The `maild` console script is a file run as __main__: spawned processes must not import it (the CLI)."""
    import subprocess
    import sys

    script = tmp_path / "daemon_script.py"
    script.write_text(SCRIPT)
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "blobs")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "MARKER": str(marker)},
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "x"
    assert not marker.exists()
