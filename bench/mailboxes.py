"""Many mailboxes: one daemon with ACCOUNTS IMAP accounts x FOLDERS folders on Dovecot; then DAEMONS daemons on them.

A private Dovecot (its process limits raised for hundreds of IDLE connections) with ACCOUNTS users, each with
INBOX and Projects holding one mail. `maild run` (a real subprocess; tracking and rules off) with one source per
account, until every folder has synced once; then, after SETTLE seconds, measured while idle for IDLE seconds:
  rss_mb        resident memory of the daemon and its processes (RSS summed; PSS beside it),
  idle_cpu_pct  CPU of those processes while no mail arrives, in % of one core,
  threads       threads of the daemon process,
  connections   its TCP connections to Dovecot;
then new_mail_ms: NEW mails APPENDed one at a time to random folders, each timed until it is stored (polling the
database every 20 ms): p50 and max. The same again with DAEMONS daemons on one PostgreSQL database (folder
leases share the work; figures summed over the daemons, `shared_*` keys).

A folder within its account's max_connections is a thread with its own IMAP connection; an idle one sleeps in
one poll() on its socket and two wake-up descriptors (maild/imap/idle.py) until the server speaks, the daemon
stops, its folder has filing planned or `idle_check_interval` passes. One lease keeper renews all their leases
in one statement and one filing watcher looks for planned filing with one query, for the whole daemon.

Dovecot notices new mail for an IDLE session through inotify, one instance per IMAP process, at most
fs.inotify.max_user_instances (128 here) per system user: all of this Dovecot's processes run as one user, so
beyond that many folders Dovecot falls back to looking every `mailbox_idle_check_interval` (30 s by default,
which was the 30 s "max" of new_mail_ms). This Dovecot looks every second then; the count of its processes without
inotify is printed (`dovecot_without_inotify`).

Few accounts with many folders (`--folders 20 --max-connections 15`, e.g. with `--accounts 10`): each account's
first max_connections - 1 folders keep their own IDLE connection, the rest are polled in turn over one shared
connection every `--poll-interval` seconds; the new mails then go to polled folders only and their time until
stored is bounded by the poll interval (`new_mail_*` keys; `polled_folders` says how many folders were polled);
each mail is appended after a random part of the interval, so the p50 is about half of it and the max near all.
The last line printed is JSON: folders, rss_mb, idle_cpu_pct, threads, connections, ...

    .venv/bin/python bench/mailboxes.py [--accounts 100] [--folders 2] [--max-connections 8] [--poll-interval 60]
                                        [--daemons 3] [--idle 20] [--new 10] [--no-shared]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import tree_memory_kb  # noqa: E402  (bench/ingest.py)
from sqlalchemy import create_engine, func, select  # noqa: E402

from maild.store.models import FolderCheckpoint, Message  # noqa: E402
from tests.support.dovecot import Dovecot  # noqa: E402
from tests.support.sockets import tcp_connections  # noqa: E402

PG_ADMIN = os.environ.get("MAILD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
POLL = 0.02


class ManyDovecot(Dovecot):
    """The test Dovecot with room for hundreds of connections (one imap process each)."""

    def _config(self) -> str:
        # (the test Dovecot already looks every second when it has no inotify instance left)
        return super()._config() + "default_process_limit = 2000\ndefault_client_limit = 4000\n"

    def without_inotify(self) -> int:
        """IMAP sessions that found no inotify instance left (they look at the mailbox every second instead)."""
        try:
            return self.log_path.read_text(errors="replace").count("Inotify instance limit")
        except OSError:
            return 0


def mail(tag: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Someone <someone@customer.example>"
    msg["To"] = "office@example.com"
    msg["Subject"] = f"Mail {tag}"
    msg["Message-ID"] = f"<{tag}.{uuid.uuid4().hex}@customer.example>"
    msg.set_content(f"Hello, this is {tag}.\n")
    return msg.as_bytes()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (Linux /proc)."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        todo += [int(child) for child in children]
    return total / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("Threads:"))


def folder_names(count: int) -> list[str]:
    """INBOX and Projects (the 2-folder run), else INBOX and F01, F02, ..."""
    return ["INBOX", "Projects"] if count == 2 else ["INBOX", *(f"F{i:02d}" for i in range(1, count))]


@dataclass(frozen=True)
class Layout:
    """The accounts' folders, the connection limit and the poll interval of one run."""

    folders: list[str]
    max_connections: int | None  # None: the source's default
    poll_interval: float

    def polled(self) -> list[str]:
        """The folders each account polls over its shared connection (maild/imap/limits.py decides)."""
        from maild.config import ImapSourceConfig
        from maild.imap.limits import split_folders

        limit = self.max_connections or ImapSourceConfig.model_fields["max_connections"].default
        return split_folders(self.folders, limit)[1]


def write_config(home: Path, server: Dovecot, users: dict[str, str], database_url: str, layout: Layout) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    secrets = home / "secrets"
    secrets.mkdir(mode=0o700)
    sources = []
    for user, password in users.items():
        (secrets / user).write_text(password)
        (secrets / user).chmod(0o600)
        source = {"name": user, "type": "imap", "host": server.host, "port": server.port, "security": "plain",
                  "username": user, "password_file": str(secrets / user), "folders": layout.folders}
        if layout.max_connections is not None:
            source["max_connections"] = layout.max_connections
        sources.append(source)
    config = home / "maild.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": database_url}, "storage": {"blob_dir": "blobs"}, "log": {"level": "warning"},
        "ingest": {"poll_interval": layout.poll_interval},
        "tracking": {"enabled": False}, "rules": {"enabled": False}, "sources": sources}))
    return config


def synced_folders(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(FolderCheckpoint)
                                .where(FolderCheckpoint.last_success_at.is_not(None))).scalar() or 0)


def stored(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Message)).scalar() or 0)


def measure(label: str, config: Path, server: Dovecot, users: dict[str, str], database_url: str, daemons: int,
            idle: float, settle: float, new: int, layout: Layout) -> dict[str, Any]:
    folders = len(users) * len(layout.folders)
    targets = layout.polled() or layout.folders  # new mail goes to polled folders when there are any
    engine = create_engine(database_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        for _ in range(daemons):
            procs.append(subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "run"], cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = started + 600
        while True:
            try:
                if synced_folders(engine) >= folders:
                    break
            except Exception:  # the schema is not there yet
                pass
            if any(proc.poll() is not None for proc in procs):
                raise SystemExit(f"{label}: a maild run ended early")
            if time.perf_counter() > deadline:
                raise SystemExit(f"{label}: not every folder synced within 600 s")
            time.sleep(0.2)
        first_sync = time.perf_counter() - started
        time.sleep(settle)
        cpu = sum(cpu_seconds(proc.pid) for proc in procs)
        wall = time.perf_counter()
        peak_rss = peak_pss = 0
        while time.perf_counter() - wall < idle:
            memory = [tree_memory_kb(proc.pid) for proc in procs]
            peak_rss = max(peak_rss, sum(m[0] for m in memory))
            peak_pss = max(peak_pss, sum(m[1] for m in memory))
            time.sleep(0.5)
        idle_cpu = (sum(cpu_seconds(proc.pid) for proc in procs) - cpu) / (time.perf_counter() - wall)
        result = {
            "folders": folders, "daemons": daemons, "first_sync_s": round(first_sync, 1),
            "rss_mb": round(peak_rss / 1024, 1), "pss_mb": round(peak_pss / 1024, 1),
            "idle_cpu_pct": round(idle_cpu * 100, 2),
            "threads": sum(threads(proc.pid) for proc in procs),
            "connections": sum(tcp_connections(proc.pid, server.port) for proc in procs),
        }
        latencies = []
        rng = random.Random(5)
        for index in range(new):
            user = rng.choice(sorted(users))
            folder = rng.choice(targets)
            before = stored(engine)
            with server.client(user, users[user]) as imap:
                imap.append(folder, mail(f"new-{label}-{index}"))
            appended = time.perf_counter()
            while stored(engine) <= before:
                if time.perf_counter() - appended > 120:
                    raise SystemExit(f"{label}: a new mail in {user}/{folder} was not ingested within 120 s")
                time.sleep(POLL)
            latencies.append(time.perf_counter() - appended)
            # Polled folders: mail arrives at any moment of a round, not just after one (which would make every
            # wait the whole interval); IDLE folders: a short pause.
            time.sleep(rng.uniform(0, layout.poll_interval) if layout.polled() else 0.5)
        result["new_mail_p50_ms"] = round(statistics.median(latencies) * 1000, 1)
        result["new_mail_max_ms"] = round(max(latencies) * 1000, 1)
        result["polled_folders"] = len(users) * len(layout.polled())
        result["poll_interval_s"] = layout.poll_interval
        where = f" in polled folders (poll every {layout.poll_interval:g}s)" if layout.polled() else ""
        print(f"{label}: {daemons} daemon(s), {folders} folders ({result['polled_folders']} polled over shared "
              f"connections) synced after {first_sync:.1f}s; idle: RSS "
              f"{result['rss_mb']:.0f} MB (PSS {result['pss_mb']:.0f} MB), CPU {result['idle_cpu_pct']:.2f}% of a "
              f"core, {result['threads']} threads, {result['connections']} IMAP connections; a new mail{where} "
              f"stored after p50 {result['new_mail_p50_ms']:.0f} ms, max {result['new_mail_max_ms']:.0f} ms",
              flush=True)
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--folders", type=int, default=2, help="folders per account")
    parser.add_argument("--max-connections", type=int, default=None, help="each account's connection limit")
    parser.add_argument("--poll-interval", type=float, default=60.0, help="seconds between polls of polled folders")
    parser.add_argument("--daemons", type=int, default=3, help="daemons sharing the folders on PostgreSQL")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measurement")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after the first sync")
    parser.add_argument("--new", type=int, default=10, help="new mails timed until stored")
    parser.add_argument("--no-shared", action="store_true", help="skip the daemons sharing PostgreSQL")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    users = {f"acct{i:03d}": f"pw-{i:03d}-secret" for i in range(args.accounts)}
    layout = Layout(folder_names(args.folders), args.max_connections, args.poll_interval)
    result: dict[str, Any] = {"benchmark": "mailboxes", "accounts": args.accounts,
                              "folders_per_account": args.folders, "max_connections": args.max_connections}
    with tempfile.TemporaryDirectory(prefix="maild-bench-mailboxes-") as tmp:
        server = ManyDovecot(Path(tmp) / "dovecot", users)
        server.start()
        try:
            for user in users:
                for folder in layout.folders:
                    server.append_many(user, folder, [mail(f"{user}-{folder}")])
            url = f"sqlite:///{Path(tmp) / 'one' / 'maild.db'}"
            config = write_config(Path(tmp) / "one", server, users, url, layout)
            result.update(measure("one daemon", config, server, users, url, 1, args.idle, args.settle, args.new,
                                  layout))
            load = max(load, os.getloadavg()[0])
            result["dovecot_without_inotify"] = server.without_inotify()
            if not args.no_shared:
                import psycopg

                name = f"maild_bench_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                try:
                    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
                    config = write_config(Path(tmp) / "shared", server, users, url, layout)
                    shared = measure(f"{args.daemons} daemons", config, server, users, url, args.daemons,
                                     args.idle, args.settle, args.new, layout)
                    result.update({f"shared_{key}": value for key, value in shared.items()})
                finally:
                    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            load = max(load, os.getloadavg()[0])
        finally:
            server.close()
    result.update({"load": round(load, 1), "cores": os.cpu_count()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
