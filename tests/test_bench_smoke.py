"""Each benchmark script runs end to end with a tiny N and prints its JSON with the keys the README reads.

Smoke tests only: the figures of so few mails mean nothing (and are not asserted); the benchmarks themselves
run by hand (bench/*.py). wrk and mbsync (scripts/install-bench-deps) are used when installed, else skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_send_benchmark_runs() -> None:
    pixel = shutil.which("wrk") is not None
    result = run("send.py", "--mails", "30", "--rounds", "1", "--pixel-rounds", "1", "--pixel-seconds", "1",
                 *([] if pixel else ["--no-pixel"]))
    assert result["ratio_same_work"] > 0 and result["ratio_raw"] > 0
    if pixel:
        assert result["pixel_ratio"] > 0 and result["pixel_errors"] == 0
        assert result["opens_recorded"] == result["pixel_requests"] > 0


def test_ingest_benchmark_runs() -> None:
    mbsync = shutil.which("mbsync") is not None
    result = run("ingest.py", "--messages", "30", "--rounds", "1", *([] if mbsync else ["--no-mbsync"]))
    assert result["messages"] == 30 and result["ratio"] > 0 and result["peak_rss_mb"] > 0
    assert (result["ratio_mbsync"] or 0) > 0 if mbsync else result["ratio_mbsync"] is None


def test_latency_benchmark_runs() -> None:
    result = run("latency.py", "--mails", "2", "--interval", "0.2")
    assert result["mails"] == 2 and 0 < result["p50_ms"] <= result["p95_ms"] <= result["max_ms"]


def test_mailboxes_benchmark_runs() -> None:
    result = run("mailboxes.py", "--accounts", "2", "--idle", "1", "--settle", "0", "--new", "1", "--no-shared")
    assert result["folders"] == 4 and result["connections"] == 4
    assert result["threads"] > 0 and result["rss_mb"] > 0 and result["idle_cpu_pct"] >= 0


def test_classify_benchmark_runs() -> None:
    result = run("classify.py", "--messages", "40", "--rounds", "1", "--bounces", "0.2", "--auto-replies", "0.1")
    assert result["messages"] == 40 and result["rate_on"] > 0 and result["rate_off"] > 0
    assert abs(result["overhead"] - (1 - result["rate_on"] / result["rate_off"])) < 0.01
    assert result["kinds"]["bounce"] > 0 and result["kinds"]["auto_reply"] > 0 and result["kinds"]["human"] > 0


def test_backfill_benchmark_runs() -> None:
    result = run("backfill.py", "--messages", "40", "--batch", "15", "--bounces", "0.2", "--auto-replies", "0.1")
    assert result["messages"] == 40 and result["backfill_cpu_ms"] > 0 and result["ingest_cpu_ms"] > 0
    assert result["kinds"]["bounce"] > 0 and result["kinds"]["human"] > 0 and result["daemon_per_hour"] > 0


def test_web_benchmark_runs() -> None:
    assert shutil.which("wrk"), "wrk is missing: scripts/install-test-deps installs it"
    result = run("web.py", "--messages", "300", "--seconds", "1", "--connections", "2")
    for page in ("timeline", "message", "search"):
        assert result[f"{page}_p95_ms"] > 0
        assert isinstance(result["queries_per_page"][page], int)  # one number: the same for every page shown
    assert result["messages"] == 300 and result["requests"] > 0
