"""Ingest benchmark: `maild ingest --once` against raw IMAP FETCH + mail-parser, same mailbox, same run.

Fills a private Dovecot with N mixed messages (plain, HTML+text, ~10% with 20-200 KB attachments),
then measures
  (a) baseline: imapclient batched FETCH BODY.PEEK[] + mailparser.parse_from_bytes, nothing stored;
  (b) maild:    `maild ingest --once` (a real subprocess, start-up included) into a fresh SQLite,
and the peak memory (RSS summed over maild and its parser processes) while it ingests.
The last line printed is JSON: rate, baseline_rate, ratio, peak_rss_mb, ...

    .venv/bin/python bench/ingest.py [--messages 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import mailparser
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dovecot import Dovecot  # noqa: E402

WORDS = [
    "invoice", "order", "delivery", "pallet", "quote", "meeting", "thanks", "regards", "please", "attached",
    "price", "discount", "schedule", "Rechnung", "Lieferung", "Angebot", "Grüße", "question", "support", "ticket",
    "urgent", "week",
]


def mixed_messages(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(count):
        msg = EmailMessage()
        msg["From"] = f"Customer {i % 300} <c{i % 300}@customer{i % 97}.example>"
        msg["To"] = "sales@example.com"
        msg["Subject"] = " ".join(rng.choice(WORDS) for _ in range(6)) + f" #{i}"
        msg["Date"] = format_datetime(start + timedelta(minutes=7 * i))
        msg["Message-ID"] = make_msgid(idstring=str(i), domain="bench.example")
        text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(rng.randint(5, 60)))
        msg.set_content(text)
        if rng.random() < 0.5:
            msg.add_alternative(f"<html><body><p>{text.replace(chr(10), '</p><p>')}</p></body></html>", subtype="html")
        if rng.random() < 0.10:
            size = rng.randint(20_000, 200_000)
            msg.add_attachment(rng.randbytes(size), maintype="application", subtype="pdf", filename=f"doc-{i}.pdf")
        out.append(msg.as_bytes())
    return out


def baseline(server: Dovecot, user: str, batch: int = 200) -> tuple[float, int]:
    started = time.perf_counter()
    parsed = 0
    with server.client(user, timeout=120) as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = sorted(imap.search("ALL"))
        for i in range(0, len(uids), batch):
            for data in imap.fetch(uids[i:i + batch], ["BODY.PEEK[]"]).values():
                mail = mailparser.parse_from_bytes(data[b"BODY[]"])
                _ = (mail.subject, mail.from_, mail.text_plain, mail.attachments)
                parsed += 1
    return time.perf_counter() - started, parsed


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, StopIteration):
            continue
        todo += [int(child) for child in children]
    return total


def run_maild(server: Dovecot, user: str, password: str, home: Path) -> tuple[float, int, str]:
    config = home / "maild.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": "sqlite:///maild.db"},
        "storage": {"blob_dir": "blobs"},
        "log": {"level": "warning"},
        "sources": [{"name": "bench", "type": "imap", "host": server.host, "port": server.port,
                     "security": "plain", "username": user, "password_env": "MAILD_BENCH_PW"}],
    }))
    env = {**os.environ, "MAILD_BENCH_PW": password}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "ingest", "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"maild ingest failed ({proc.returncode}):\n{out}\n{err}")
    return elapsed, peak, out.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="maild-bench-") as tmp:
        server = Dovecot(Path(tmp) / "dovecot")
        server.start()
        try:
            user, password = next(iter(server.users.items()))
            messages = mixed_messages(args.messages)
            volume = sum(len(m) for m in messages)
            print(f"filling INBOX with {len(messages)} messages ({volume / 1e6:.1f} MB)...", flush=True)
            server.append_many(user, "INBOX", messages)
            del messages
            baseline(server, user)  # warm Dovecot's caches so both runs see the same server state
            base_s, parsed = baseline(server, user)
            print(f"baseline  fetch+parse: {parsed} messages in {base_s:.2f}s = {parsed / base_s:.0f}/s", flush=True)
            home = Path(tmp) / "maild"
            home.mkdir()
            maild_s, peak_kb, summary = run_maild(server, user, password, home)
            print(f"maild ingest --once:   {summary} in {maild_s:.2f}s = {parsed / maild_s:.0f}/s, "
                  f"peak RSS {peak_kb / 1024:.0f} MB", flush=True)
            result = {
                "benchmark": "ingest",
                "messages": parsed,
                "megabytes": round(volume / 1e6, 1),
                "rate": round(parsed / maild_s, 1),
                "baseline_rate": round(parsed / base_s, 1),
                "ratio": round(base_s / maild_s, 3),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "cores": os.cpu_count(),
            }
            print(json.dumps(result))
        finally:
            server.close()


if __name__ == "__main__":
    main()
