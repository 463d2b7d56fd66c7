"""Arrival-to-filed latency: APPEND one mail at a time to a private Dovecot and time it until it is filed.

`maild run` (a real subprocess, SQLite, tracking and rules off) watches INBOX with IDLE and files matched mail
by moving it to `Customers/{{ thirdparty.name }}`. After a warm-up mail, MAILS mails from a known customer's
domain are APPENDed to INBOX, one every INTERVAL seconds; each is timed from the APPEND's completion until a
second IMAP connection finds it (by Message-ID) in the customer's folder, polling every 20 ms. Dovecot's own
IDLE notification takes part of it (it checks the mailbox about every 0.5 s). Goal: p95 under 1 s.
The last line printed is JSON: p50_ms, p95_ms, max_ms, mails, ...

    .venv/bin/python bench/latency.py [--mails 50] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maild.directory.service import add_thirdparty  # noqa: E402
from maild.store.db import Database  # noqa: E402
from tests.support.dovecot import Dovecot  # noqa: E402

CUSTOMER = "Latency Customer GmbH"
FOLDER = f"Customers/{CUSTOMER}"
POLL = 0.02
DEADLINE = 60.0


def mail(number: int) -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = f"Buyer <buyer{number % 7}@latency-customer.example>"
    msg["To"] = "sales@example.com"
    msg["Subject"] = f"Order question #{number}"
    msg["Message-ID"] = message_id = make_msgid(idstring=f"lat{number}", domain="latency-customer.example")
    msg.set_content(f"Hello,\n\nabout order {number}: when will it ship?\n\nRegards\n")
    return message_id, msg.as_bytes()


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two APPENDs")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="maild-bench-latency-") as tmp:
        server = Dovecot(Path(tmp) / "dovecot")
        server.start()
        daemon: subprocess.Popen[str] | None = None
        try:
            user, password = next(iter(server.users.items()))
            home = Path(tmp) / "maild"
            home.mkdir()
            config = home / "maild.yaml"
            config.write_text(yaml.safe_dump({
                "database": {"url": "sqlite:///maild.db"},
                "storage": {"blob_dir": "blobs"},
                "log": {"level": "warning"},
                "tracking": {"enabled": False},
                "rules": {"enabled": False},
                "matching": {"own_domains": ["example.com"]},
                "sources": [{"name": "bench", "type": "imap", "host": server.host, "port": server.port,
                             "security": "plain", "username": user, "password_env": "MAILD_BENCH_PW",
                             "filing": {"action": "move", "matched_folder": "Customers/{{ thirdparty.name }}"}}],
            }))
            db = Database(f"sqlite:///{home / 'maild.db'}")
            db.upgrade()
            add_thirdparty(db, name=CUSTOMER, domains=["latency-customer.example"])
            db.dispose()
            daemon = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"], cwd=ROOT,
                                      env={**os.environ, "MAILD_BENCH_PW": password}, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
            latencies: list[float] = []
            with server.client(user, password) as appender, server.client(user, password) as watcher:
                for number in range(args.mails + 1):  # mail 0 warms up (the daemon starts, the folder is made)
                    message_id, raw = mail(number)
                    appender.append("INBOX", raw)
                    appended = time.perf_counter()
                    deadline = appended + (120.0 if number == 0 else DEADLINE)
                    while True:
                        if daemon.poll() is not None:
                            raise SystemExit(f"maild run ended ({daemon.returncode}):\n{daemon.stderr.read()}")
                        if watcher.folder_exists(FOLDER):
                            watcher.select_folder(FOLDER, readonly=True)
                            if watcher.search(["HEADER", "Message-ID", message_id]):
                                break
                        if time.perf_counter() > deadline:
                            raise SystemExit(f"mail {number} was not filed into {FOLDER} within the deadline")
                        time.sleep(POLL)
                    seconds = time.perf_counter() - appended
                    if number:
                        latencies.append(seconds)
                        print(f"mail {number:3d}: filed after {seconds * 1000:6.0f} ms", flush=True)
                    else:
                        print(f"warm-up mail filed after {seconds:.1f} s (daemon start included)", flush=True)
                    load = max(load, os.getloadavg()[0])
                    time.sleep(max(0.0, args.interval - (time.perf_counter() - appended)))
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
            server.close()
    result = {
        "benchmark": "latency",
        "mails": len(latencies),
        "interval_s": args.interval,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "mean_ms": round(statistics.mean(latencies) * 1000, 1),
        "load": round(load, 1),
        "cores": os.cpu_count(),
    }
    print(f"arrival to filed over {len(latencies)} mails: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} "
          f"ms, max {result['max_ms']:.0f} ms; load average up to {load:.1f}", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
