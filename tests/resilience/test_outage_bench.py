"""bench/outage.py runs end to end with short outages and prints the JSON the README's table reads."""

from __future__ import annotations

from tests.test_bench_smoke import run


def test_outage_benchmark_runs() -> None:
    result = run("outage.py", "--down", "1")
    assert result["down_s"] == 1.0
    assert result["imap_resume_s"] >= 0 and result["db_ingest_resume_s"] >= 0
    assert result["db_send_resume_s"] >= 0
