"""Classification benchmark: messages/s of the whole ingest pipeline with machine-mail classification on vs off.

One mixed corpus in a Maildir, written once: human mail (plain and HTML+text, 1-30 KB, some with a PDF-sized
attachment), delivery-failure notices (flufl.bounce's real samples and maild's written ones, each made unique)
and auto-replies (the written samples of eight systems); by default 90% / 6% / 4% (a busy shared inbox;
`--bounces 0.2 --auto-replies 0.1` for a heavy mix). Each round ingests the whole folder into a fresh SQLite
database with `Daemon.ingest_once()` (parser processes, blob store, one transaction per batch, matching and
what follows from machine mail): `machine_mail.classify: true` and `false` alternate, `--rounds` times each,
and the median rate of each counts. The last line printed is JSON: rate_on, rate_off, overhead
(1 - rate_on / rate_off; target < 0.10), messages, rounds, the CPU time per message of maild and its parser
processes (cpu_ms_on, cpu_ms_off, cpu_overhead: steadier than wall time on a loaded machine), and the kinds
found in the last round with it on.

    .venv/bin/python bench/classify.py [--messages 3000] [--rounds 5] [--bounces 0.06] [--auto-replies 0.04]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from maild.config import load_config  # noqa: E402
from maild.daemon import Daemon  # noqa: E402
from maild.store.db import Database  # noqa: E402
from maild.store.models import Message  # noqa: E402

SAMPLES = ROOT / "tests" / "classify" / "samples"
WORDS = ["invoice", "offer", "delivery", "meeting", "order", "payment", "question", "project", "schedule",
         "contract", "price", "update", "please", "thanks", "regards", "tomorrow", "next", "week", "attached",
         "document", "review", "approve", "call"]


def human(rng: random.Random, index: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Person {index} <person{index % 400}@customer{index % 50}.example>"
    msg["To"] = "sales@example.com"
    msg["Subject"] = " ".join(rng.choices(WORDS, k=5)).capitalize()
    msg["Date"] = format_datetime(datetime(2026, 11, 1 + index % 28, 10, tzinfo=UTC))
    msg["Message-ID"] = f"<human-{index}@customer{index % 50}.example>"
    text = "\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(rng.randint(10, 400)))
    msg.set_content(f"Hello,\n\n{text}\n\nBest regards\nPerson {index}\n")
    if index % 3 == 0:
        msg.add_alternative(f"<html><body><p>{text.replace(chr(10), '</p><p>')}</p></body></html>", subtype="html")
    if index % 10 == 0:
        msg.add_attachment(rng.randbytes(rng.randint(20_000, 120_000)), maintype="application", subtype="pdf",
                           filename=f"doc-{index}.pdf")
    return msg.as_bytes()


def unique(raw: bytes, index: int) -> bytes:
    """A sample made a distinct message (a header in front: the bytes, not only the id, differ)."""
    return f"X-Bench-Copy: {index}\r\n".encode() + raw


def corpus(folder: Path, count: int, bounce_share: float, auto_share: float) -> Counter[str]:
    rng = random.Random(12)
    bounces = sorted((SAMPLES / "flufl").glob("*.txt")) + [p for p in sorted((SAMPLES / "written").glob("*.eml"))
                                                          if not p.name.startswith(("ooo-", "list", "arf"))]
    replies = sorted((SAMPLES / "written").glob("ooo-*.eml"))
    kinds: Counter[str] = Counter()
    (folder / "tmp").mkdir(parents=True)
    (folder / "cur").mkdir()
    new = folder / "new"
    new.mkdir()
    for index in range(count):
        roll = (index * 0.6180339887) % 1.0  # spread the kinds evenly through the folder
        if roll >= bounce_share + auto_share:
            raw, kind = human(rng, index), "human"
        elif roll < bounce_share:
            raw, kind = unique(bounces[index % len(bounces)].read_bytes(), index), "bounce"
        else:
            raw, kind = unique(replies[index % len(replies)].read_bytes(), index), "auto_reply"
        kinds[kind] += 1
        (new / f"{index:08d}.bench:2,").write_bytes(raw)
    return kinds


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the parser processes, reaped at the daemon's shutdown)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_round(work: Path, maildir: Path, classify: bool, round_no: int) -> tuple[float, float, Counter[str]]:
    home = work / f"home-{round_no}-{'on' if classify else 'off'}"
    home.mkdir()
    config_file = home / "maild.yaml"
    config_file.write_text(json.dumps({
        "database": {"url": f"sqlite:///{home / 'maild.db'}"}, "storage": {"blob_dir": str(home / "blobs")},
        "sources": [{"name": "bench", "type": "maildir", "path": str(maildir)}],
        "matching": {"instance_id": "bench01", "own_domains": ["example.com"]},
        "outbound": {"sender": "billing@example.com", "return_path": "bounces@example.com"},
        "machine_mail": {"classify": classify}, "rules": {"enabled": False}, "tracking": {"enabled": False}}))
    config = load_config(config_file, environ={})
    db = Database(config.database_url)
    db.upgrade()
    daemon = Daemon(config, db)
    cpu = cpu_seconds()
    started = time.perf_counter()
    report = daemon.ingest_once()
    elapsed = time.perf_counter() - started
    daemon.shutdown()
    cpu = cpu_seconds() - cpu
    assert not report.errors, report.errors
    with db.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Message.__table__)).scalar_one()
        kinds = Counter(dict(conn.execute(select(Message.__table__.c.kind, func.count())
                                          .group_by(Message.__table__.c.kind)).all()))
    db.engine.dispose()
    shutil.rmtree(home)
    return stored / elapsed, cpu * 1000 / stored, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bounces", type=float, default=0.06, help="share of delivery-failure notices")
    parser.add_argument("--auto-replies", type=float, default=0.04, help="share of auto-replies")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="maild-bench-classify-") as tmp:
        work = Path(tmp)
        written = corpus(work / "maildir", args.messages, args.bounces, args.auto_replies)
        print(f"corpus: {args.messages} messages {dict(written)}")
        one_round(work, work / "maildir", True, -1)  # warm-up (imports, page cache), not counted
        rates: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        kinds: Counter[str] = Counter()
        for round_no in range(args.rounds):
            for classify in ((True, False) if round_no % 2 == 0 else (False, True)):
                rate, cpu_ms, found = one_round(work, work / "maildir", classify, round_no)
                rates[classify].append(rate)
                cpu[classify].append(cpu_ms)
                if classify:
                    kinds = found
                print(f"round {round_no + 1} classify {'on ' if classify else 'off'}: {rate:,.0f} msg/s, "
                      f"{cpu_ms:.2f} ms CPU per message")
    rate_on, rate_off = statistics.median(rates[True]), statistics.median(rates[False])
    cpu_on, cpu_off = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(json.dumps({"rate_on": round(rate_on, 1), "rate_off": round(rate_off, 1),
                      "overhead": round(1 - rate_on / rate_off, 4), "messages": args.messages,
                      "mix": {k: round(v / args.messages, 3) for k, v in written.items()},
                      "rounds": args.rounds, "cpu_ms_on": round(cpu_on, 3), "cpu_ms_off": round(cpu_off, 3),
                      "cpu_overhead": round(cpu_on / cpu_off - 1, 4), "kinds": {str(k): v for k, v in kinds.items()}}))


if __name__ == "__main__":
    main()
