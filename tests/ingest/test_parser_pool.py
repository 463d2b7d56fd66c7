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
