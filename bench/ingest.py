"""Ingest benchmark: `maild ingest --once` against raw IMAP FETCH + mail-parser and against mbsync, same mailbox.

Fills a private Dovecot with N mixed messages (plain, HTML+text, ~10% with 20-200 KB attachments), warms
Dovecot's caches, then runs ROUNDS alternating rounds (the order of the sides rotates each round) of
  (a) baseline: imapclient batched FETCH BODY.PEEK[] + mailparser.parse_from_bytes, nothing stored;
  (b) maild:    `maild ingest --once` (a real subprocess, start-up included) into a fresh SQLite home, with
                the peak memory of maild and its parser processes together: RSS summed (what `ps` shows;
                it counts pages shared between the processes once per process) and PSS summed (shared pages
                split between their sharers: the memory really used), sampled every 50 ms from /proc;
  (c) mbsync:   what a user would run to merely copy the folder (isync: `mbsync` into a fresh Maildir, a
                real subprocess, start-up included; Debian package `isync`, scripts/install-bench-deps).
CPU per message is printed for each side (Dovecot's own not counted): on a loaded machine the rates follow the
CPU each side gets, and that figure does not. Rates are messages per second; `ratio` is the median over rounds
of maild / baseline, `ratio_mbsync` of maild / mbsync; `peak_rss_mb` the highest peak of all rounds.
The last line printed is JSON.

    .venv/bin/python bench/ingest.py [--messages 5000] [--rounds 3] [--workers N] [--no-mbsync] [--profile DIR]

With --profile, each maild round writes CPU profiles (cProfile with thread CPU time, through maild's
MAILD_PROFILE_DIR) of its folder pass and of each parser process into DIR/round-N/, and the functions that cost
most are printed at the end (profiling slows maild down: the rates of such a run are not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
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
    cpu = time.process_time()
    parsed = 0
    with server.client(user, timeout=120) as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = sorted(imap.search("ALL"))
        for i in range(0, len(uids), batch):
            for data in imap.fetch(uids[i:i + batch], ["BODY.PEEK[]"]).values():
                mail = mailparser.parse_from_bytes(data[b"BODY[]"])
                _ = (mail.subject, mail.from_, mail.text_plain, mail.attachments)
                parsed += 1
    baseline.cpu = time.process_time() - cpu  # type: ignore[attr-defined]
    return time.perf_counter() - started, parsed


def tree_memory_kb(pid: int) -> tuple[int, int, dict[int, int]]:
    """(RSS, PSS, RSS per pid) of a process and all its descendants, from /proc."""
    rss = pss = 0
    per_pid: dict[int, int] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as handle:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in handle if line.endswith("kB\n")}
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, ValueError, IndexError):
            continue
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
        per_pid[current] = fields.get("Rss", 0)
        todo += [int(child) for child in children]
    return rss, pss, per_pid


class MemorySampler:
    """Peak RSS and PSS of a process tree, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = self.peak_pss = self.peak_main = self.peak_processes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            rss, pss, per_pid = tree_memory_kb(self.pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_main = max(self.peak_main, per_pid.get(self.pid, 0))
            self.peak_processes = max(self.peak_processes, len(per_pid))
            time.sleep(0.05)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def run_maild(server: Dovecot, user: str, password: str, home: Path, workers: int | None,
              profile_dir: Path | None = None) -> dict[str, float]:
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    config = home / "maild.yaml"
    settings: dict[str, object] = {
        "database": {"url": "sqlite:///maild.db"},
        "storage": {"blob_dir": "blobs"},
        "log": {"level": "warning"},
        "sources": [{"name": "bench", "type": "imap", "host": server.host, "port": server.port,
                     "security": "plain", "username": user, "password_env": "MAILD_BENCH_PW"}],
    }
    if workers is not None:
        settings["ingest"] = {"parse_workers": workers}
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "MAILD_BENCH_PW": password}
    if profile_dir is not None:
        env["MAILD_PROFILE_DIR"] = str(profile_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "maild", "--config", str(config), "ingest", "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    sampler = MemorySampler(proc.pid)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # maild and every process it waited for (its parsers)
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"maild ingest failed ({proc.returncode}):\n{out}\n{err}")
    return {"seconds": elapsed, "rss_kb": sampler.peak_rss, "pss_kb": sampler.peak_pss,
            "main_kb": sampler.peak_main, "processes": sampler.peak_processes, "summary": out.strip(),
            "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


MBSYNCRC = """IMAPAccount bench
Host {host}
Port {port}
User {user}
PassCmd "cat {password_file}"
SSLType None
AuthMechs LOGIN

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path {maildir}/
Inbox {maildir}/INBOX

Channel bench
Far :bench-far:
Near :bench-near:
Patterns INBOX
Sync Pull
Create Near
SyncState *
"""


def run_mbsync(server: Dovecot, user: str, password: str, work: Path) -> float:
    """Seconds for `mbsync` to copy INBOX into a fresh Maildir (start-up included); checks the count."""
    binary = shutil.which("mbsync")
    if binary is None:
        raise SystemExit("mbsync is not installed: scripts/install-bench-deps (Debian package isync), or --no-mbsync")
    if work.exists():
        shutil.rmtree(work)
    (work / "mail").mkdir(parents=True)
    (work / "password").write_text(password)
    (work / "mbsyncrc").write_text(MBSYNCRC.format(host=server.host, port=server.port, user=user,
                                                   password_file=work / "password", maildir=work / "mail"))
    started = time.perf_counter()
    proc = subprocess.run([binary, "-q", "-c", str(work / "mbsyncrc"), "bench"], capture_output=True, text=True,
                          timeout=3600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"mbsync failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def print_profiles(directory: Path, top: int = 25) -> None:
    """Where maild's CPU went: the folder pass (fetch, store, match) and the parser processes, by cumulative time."""
    import pstats

    for kind in ("ingest", "parser"):
        files = sorted(str(p) for p in directory.rglob(f"{kind}-*.prof"))
        if not files:
            continue
        stats = pstats.Stats(*files)
        print(f"\n--- {kind}: {len(files)} profile(s), {stats.total_tt:.2f} s CPU (profiled) ---")  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(top)


def maildir_count(path: Path) -> int:
    return sum(1 for sub in ("new", "cur") for _ in (path / sub).iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="ingest.parse_workers (default: the config's)")
    parser.add_argument("--no-mbsync", action="store_true", help="skip mbsync (when isync cannot be installed)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="write maild's CPU profiles into DIR and print where the time went")
    args = parser.parse_args()
    sides = ["baseline", "maild"] + ([] if args.no_mbsync else ["mbsync"])
    rates: dict[str, list[float]] = {side: [] for side in sides}
    memory: list[dict[str, float]] = []
    cpu_ms: dict[str, list[float]] = {side: [] for side in sides}
    load = os.getloadavg()[0]
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
            baseline(server, user)  # warm Dovecot's caches so every run sees the same server state
            count = args.messages
            for round_ in range(args.rounds):
                order = sides[round_ % len(sides):] + sides[:round_ % len(sides)]
                for side in order:
                    if side == "baseline":
                        seconds, parsed = baseline(server, user)
                        assert parsed == count, parsed
                        cpu_ms[side].append(baseline.cpu * 1000 / count)  # type: ignore[attr-defined]
                        line = f"{parsed} messages in {seconds:.2f}s"
                    elif side == "maild":
                        profile = args.profile / f"round-{round_ + 1}" if args.profile else None
                        result = run_maild(server, user, password, Path(tmp) / "maild", args.workers, profile)
                        seconds = result["seconds"]
                        memory.append(result)
                        cpu_ms[side].append(result["cpu"] * 1000 / count)
                        line = (f"{result['summary']} in {seconds:.2f}s; peak RSS {result['rss_kb'] / 1024:.0f} MB "
                                f"(PSS {result['pss_kb'] / 1024:.0f} MB, main process {result['main_kb'] / 1024:.0f} "
                                f"MB, {result['processes']} processes)")
                    else:
                        before = resource.getrusage(resource.RUSAGE_CHILDREN)
                        seconds = run_mbsync(server, user, password, Path(tmp) / "mbsync")
                        after = resource.getrusage(resource.RUSAGE_CHILDREN)
                        cpu_ms[side].append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                                            * 1000 / count)
                        copied = maildir_count(Path(tmp) / "mbsync" / "mail" / "INBOX")
                        assert copied == count, copied
                        line = f"{copied} messages in {seconds:.2f}s"
                    rates[side].append(count / seconds)
                    print(f"round {round_ + 1} {side:8s}: {line} = {count / seconds:.0f}/s; CPU "
                          f"{cpu_ms[side][-1]:.2f} ms/message", flush=True)
                load = max(load, os.getloadavg()[0])
        finally:
            server.close()
    median = {side: statistics.median(values) for side, values in rates.items()}
    ratios = [m / b for m, b in zip(rates["maild"], rates["baseline"], strict=True)]
    ratios_mbsync = [m / s for m, s in zip(rates["maild"], rates["mbsync"], strict=True)] if "mbsync" in rates else []
    peak_rss = max(m["rss_kb"] for m in memory) / 1024
    peak_pss = max(m["pss_kb"] for m in memory) / 1024
    print(f"medians of {args.rounds} rounds: baseline {median['baseline']:.0f}/s, maild {median['maild']:.0f}/s"
          + (f", mbsync {median['mbsync']:.0f}/s" if "mbsync" in median else "")
          + f"; ratio {statistics.median(ratios):.2f}"
          + (f", ratio_mbsync {statistics.median(ratios_mbsync):.2f}" if ratios_mbsync else "")
          + f"; peak RSS {peak_rss:.0f} MB (PSS {peak_pss:.0f} MB); load average up to {load:.1f}", flush=True)
    result = {
        "benchmark": "ingest",
        "messages": count,
        "megabytes": round(volume / 1e6, 1),
        "rounds": args.rounds,
        "rate": round(median["maild"], 1),
        "baseline_rate": round(median["baseline"], 1),
        "mbsync_rate": round(median["mbsync"], 1) if "mbsync" in median else None,
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "ratio_mbsync": round(statistics.median(ratios_mbsync), 3) if ratios_mbsync else None,
        "peak_rss_mb": round(peak_rss, 1),
        "peak_pss_mb": round(peak_pss, 1),
        "peak_main_rss_mb": round(max(m["main_kb"] for m in memory) / 1024, 1),
        "processes": max(m["processes"] for m in memory),
        "cpu_ms_per_message": {side: round(statistics.median(values), 2) for side, values in cpu_ms.items()},
        "load": round(load, 1),
        "cores": os.cpu_count(),
    }
    if args.profile:
        print_profiles(args.profile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
