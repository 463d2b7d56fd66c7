"""Backfill benchmark: CPU time per message of classifying stored mail without a kind (blob read, sha256 check, parse,
the detector chain, one UPDATE per message, a transaction per batch), against ingesting the same mail in the same run.

The mixed corpus of bench/classify.py (90% human mail, 6% bounces, 4% auto-replies by default) is ingested once with
`machine_mail.classify: false` into a fresh SQLite database (the baseline: `Daemon.ingest_once()`, parser processes
included), so every message is stored without a kind as before classification existed; then
`maild.classify.backfill.backfill` classifies them all, in this process. Figures: CPU ms per message of each, their
ratio, messages/s of the backfill alone, and what the daemon's background pace (`machine_mail.backfill_batch` 100,
`backfill_pause` 1 s, a pause never shorter than the batch) gets through per hour. `--profile` prints the backfill's
top functions (cProfile). The machine's load average is printed beside the figures. The last line is JSON.

    .venv/bin/python bench/backfill.py [--messages 3000] [--batch 500] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from maild.classify.backfill import backfill  # noqa: E402
from maild.classify.base import Settings  # noqa: E402
from maild.config import load_config  # noqa: E402
from maild.daemon import Daemon  # noqa: E402
from maild.store.blobs import BlobStore  # noqa: E402
from maild.store.db import Database  # noqa: E402
from maild.store.models import Message  # noqa: E402

DAEMON_BATCH, DAEMON_PAUSE = 100, 1.0  # the config's defaults


def _corpus_module() -> object:
    spec = importlib.util.spec_from_file_location("bench_classify", ROOT / "bench" / "classify.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--bounces", type=float, default=0.06)
    parser.add_argument("--auto-replies", type=float, default=0.04)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    corpus_bench: object = _corpus_module()
    with tempfile.TemporaryDirectory(prefix="maild-bench-backfill-") as tmp:
        work = Path(tmp)
        written = corpus_bench.corpus(work / "maildir", args.messages, args.bounces, args.auto_replies)  # type: ignore[attr-defined]
        home = work / "home"
        home.mkdir()
        config_file = home / "maild.yaml"
        config_file.write_text(json.dumps({
            "database": {"url": f"sqlite:///{home / 'maild.db'}"}, "storage": {"blob_dir": str(home / "blobs")},
            "sources": [{"name": "bench", "type": "maildir", "path": str(work / "maildir")}],
            "matching": {"instance_id": "bench01", "own_domains": ["example.com"]},
            "outbound": {"sender": "billing@example.com", "return_path": "bounces@example.com"},
            "machine_mail": {"classify": False}, "rules": {"enabled": False}, "tracking": {"enabled": False}}))
        config = load_config(config_file, environ={})
        db = Database(config.database_url)
        db.upgrade()

        cpu = corpus_bench.cpu_seconds()  # type: ignore[attr-defined]
        started = time.perf_counter()
        daemon = Daemon(config, db)
        report = daemon.ingest_once()
        daemon.shutdown()
        ingest_wall = time.perf_counter() - started
        ingest_cpu = corpus_bench.cpu_seconds() - cpu  # type: ignore[attr-defined]
        assert not report.errors, report.errors
        with db.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(Message.__table__)
                                  .where(Message.__table__.c.kind.is_(None))).scalar_one()
        print(f"corpus: {args.messages} messages {dict(written)}; ingested without classification: {stored} "
              f"in {ingest_wall:.1f} s, {ingest_cpu * 1000 / stored:.2f} ms CPU per message")

        settings = Settings(instance_id="bench01", return_path="bounces@example.com")
        blobs = BlobStore(config.blob_dir)
        profile = cProfile.Profile() if args.profile else None
        cpu = own_cpu()
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        total = backfill(db, blobs, settings, batch=args.batch)
        if profile is not None:
            profile.disable()
        wall = time.perf_counter() - started
        backfill_cpu = own_cpu() - cpu
        db.engine.dispose()
    load = os.getloadavg()
    per_message = backfill_cpu * 1000 / max(1, total.written)
    baseline = ingest_cpu * 1000 / max(1, stored)
    batch_seconds = wall / max(1, total.written) * DAEMON_BATCH
    per_hour = DAEMON_BATCH * 3600 / (batch_seconds + max(DAEMON_PAUSE, batch_seconds))
    print(f"backfill: {total.describe()} in {wall:.1f} s ({total.written / wall:,.0f} msg/s), "
          f"{per_message:.2f} ms CPU per message = {per_message / baseline:.2f} x ingest's "
          f"({baseline:.2f} ms); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"daemon pace (batch {DAEMON_BATCH}, pause >= {DAEMON_PAUSE:.0f} s and >= the batch): "
          f"~{per_hour:,.0f} messages per hour")
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(15)
    print(json.dumps({"messages": total.written, "kinds": dict(Counter(total.kinds)),
                      "backfill_cpu_ms": round(per_message, 3), "ingest_cpu_ms": round(baseline, 3),
                      "ratio_to_ingest": round(per_message / baseline, 3),
                      "backfill_rate": round(total.written / wall, 1), "daemon_per_hour": round(per_hour),
                      "load": [round(x, 2) for x in load]}))


if __name__ == "__main__":
    main()
