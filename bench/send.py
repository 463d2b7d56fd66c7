"""Sending benchmark: maild's send path against the script a user would write instead, and the raw limit.

In one run, against a fresh SQLite home (`initialise()`, then transport smtp to a local sink) with a directory
of 200 third parties (each its own domain, one contact, one invoice with one line), ROUNDS alternating rounds
(the order of the sides flips each round; medians reported), each of N mails:
  maild:      a bench template (subject + text + HTML with two links; contact.name, invoice.ref) as a pipeline
              timed from the first request to the last mail recorded as sent: prepare_many() in a PreparePool of
              W worker processes (recipient look-up, render, one-page invoice PDF, tracking links/pixel, compose;
              chunks of 25), queue_many() as each chunk arrives (its blobs, one sync, one transaction: outbox rows
              + tracking ids + links) and, meanwhile, OutboxSender.send_due() over K = max_connections connections
              until all N are sent. The pool is forked before the timing; with --workers 0 the three steps run
              one after the other in this process, for profiling;
  same work:  bench/send_same_work.py in its own process, what a user would write: per mail the same template
              rendered with Jinja2, the same invoice PDF with fpdf2, the same links and pixel, composed with the
              standard library, sent over the same K aiosmtplib connections; no database, no durability
              (`ratio_same_work` = maild's rate / its rate; goal >= 1.0, floor 0.8);
  raw:        the very bytes maild queued in that round, sent with raw aiosmtplib over K connections: the
              physical limit, not the same work (`ratio_raw`).
The SMTP sink is `smtp-sink` (postfix) when installed, else an aiosmtpd process that only counts.
Then the open pixel under wrk against a bare endpoint, a server per process (bench/pixel.py), on the mails
sent here. The last line printed is JSON: ratio_same_work, ratio_raw, rate, same_work_rate, raw_rate,
pixel_ratio, pixel_requests, opens_recorded, ...

    .venv/bin/python bench/send.py [--mails 2000] [--rounds 3] [--connections 2] [--workers 2] [--profile]
                                   [--pixel-rounds 5] [--pixel-seconds 4] [--pixel-connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing
import os
import pickle
import pstats
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
import yaml  # noqa: E402
from pixel import pixel_bench  # noqa: E402  (bench/pixel.py)
from sqlalchemy import select, update  # noqa: E402

import maild.templates.pdf  # noqa: E402  (imported lazily elsewhere: keep that out of the timing)
import maild.tracking.links  # noqa: E402, F401
from maild.business.invoices import upsert_invoice  # noqa: E402
from maild.cli.setup import initialise  # noqa: E402
from maild.clock import utcnow  # noqa: E402
from maild.config import Config, load_config  # noqa: E402
from maild.directory.service import add_contact, add_thirdparty  # noqa: E402
from maild.outbound.batch import PreparePool, prepare_many, queue_many  # noqa: E402
from maild.outbound.mailing import MailRequest, PreparedMail, _invoice_view, load_invoices, prepare  # noqa: E402
from maild.outbound.recipients import resolve_recipient  # noqa: E402
from maild.outbound.sender import build_sender  # noqa: E402
from maild.store.blobs import BlobStore  # noqa: E402
from maild.store.db import Database  # noqa: E402
from maild.store.models import OutboxMessage  # noqa: E402
from maild.tracking.signing import load_secret  # noqa: E402

PARTIES = 200
TEMPLATE = "bench-invoice"
SEND_LIMIT = 100  # rows claimed per send_due pass
CHUNK = 25  # requests per PreparePool task
SUBJECT = "Invoice {{ invoice.ref }} for {{ contact.name }}\n"
TEXT = """Dear {{ contact.name }},

please find attached our invoice {{ invoice.ref }}.
You can also see it in your customer portal: https://portal.example.com/invoices/{{ invoice.ref }}

Kind regards
{{ company.name }}
"""
HTML = """<!DOCTYPE html>
<html><body style="font-family: Arial, sans-serif;">
<p>Dear {{ contact.name }},</p>
<p>please find attached our invoice <strong>{{ invoice.ref }}</strong>.</p>
<p><a href="https://portal.example.com/invoices/{{ invoice.ref }}">Download the invoice</a> or see all of them
in your <a href="https://portal.example.com/">customer portal</a>.</p>
<p>Kind regards<br>{{ company.name }}</p>
</body></html>
"""

# --- SMTP sink ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _aiosmtpd_sink(port: int, count: Any, ready: Any, stop: Any) -> None:
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with count.get_lock():
                count.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Sink:
    """smtp-sink if installed (counts nothing itself: we trust the 250s), else a counting aiosmtpd process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.name = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._mp: Any = None
        self._count: Any = None
        self._stop: Any = None

    def start(self) -> None:
        binary = shutil.which("smtp-sink")
        if binary:
            self.name = "smtp-sink"
            self._proc = subprocess.Popen([binary, "-c", "-u", os.environ.get("USER", "nobody"),
                                           f"127.0.0.1:{self.port}", "256"], stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError("smtp-sink did not start")
        self.name = "aiosmtpd-process"
        ctx = multiprocessing.get_context("fork")
        self._count = ctx.Value("q", 0)
        ready, self._stop = ctx.Event(), ctx.Event()
        self._mp = ctx.Process(target=_aiosmtpd_sink, args=(self.port, self._count, ready, self._stop), daemon=True)
        self._mp.start()
        if not ready.wait(15):
            raise RuntimeError("aiosmtpd sink did not start")

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else self._mp.pid

    @property
    def count(self) -> int | None:
        return self._count.value if self._count is not None else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            self._proc.wait(5)
        if self._mp is not None:
            self._stop.set()
            self._mp.join(5)
            if self._mp.is_alive():
                self._mp.kill()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --- the maild home ----------------------------------------------------------------------------------


def make_home(home: Path, sink_port: int, connections: int) -> Config:
    config_file = initialise(home, samples=False)
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    data["sources"] = []
    data["log"] = {"level": "warning", "format": "text"}
    data["outbound"]["sender"] = "billing@bench.example"
    data["outbound"]["sender_name"] = "Bench Billing"
    data["outbound"]["company"] = {"name": "Bench GmbH"}
    data["outbound"]["transport"] = {"type": "smtp", "host": "127.0.0.1", "port": sink_port, "security": "plain",
                                     "max_connections": connections, "timeout": 30}
    config_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    directory = home / "templates" / TEMPLATE
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "subject.txt").write_text(SUBJECT, encoding="utf-8")
    (directory / "body.txt").write_text(TEXT, encoding="utf-8")
    (directory / "body.html").write_text(HTML, encoding="utf-8")
    return load_config(config_file, environ={})


def fill_directory(db: Database) -> list[tuple[str, str]]:
    """(contact address, invoice ref) per third party; each party has its own domain (per-domain limits)."""
    targets = []
    for i in range(PARTIES):
        tp = add_thirdparty(db, name=f"Customer {i:03d} GmbH", domains=[f"customer{i:03d}.example"])
        address = f"buyer{i}@customer{i:03d}.example"
        add_contact(db, thirdparty_id=tp, name=f"Buyer Number{i}", addresses=[address])
        ref = f"FA2026-{i:04d}"
        upsert_invoice(db, ref=ref, thirdparty_id=tp, issued_on="2026-11-02", due_on="2026-11-16",
                       lines=[{"description": "Maintenance contract, November", "quantity": 1 + i % 3,
                               "unit_price": f"{90 + i}.50", "vat_rate": 19}])
        targets.append((address, ref))
    return targets


# --- (A) sending -------------------------------------------------------------------------------------


class SyncTimer:
    """Wraps BlobStore.flush (one os.sync per queued batch) to measure its share; behaviour unchanged."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._original = BlobStore.flush

    def __enter__(self) -> SyncTimer:
        original = self._original

        def timed() -> None:
            started = time.perf_counter()
            original()
            self.seconds += time.perf_counter() - started
            self.calls += 1

        BlobStore.flush = staticmethod(timed)  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        BlobStore.flush = staticmethod(self._original)  # type: ignore[method-assign]


def run_maild(config: Config, db: Database, targets: list[tuple[str, str]], mails: int, pool: PreparePool | None,
              profile: cProfile.Profile | None, round_: int = 0) -> tuple[dict[str, float], list[bytes], float, int]:
    """(seconds per step, the raw mails, seconds in os.sync, mails sent); "total" is the timed wall clock."""
    requests = [MailRequest(TEMPLATE, *targets[i % len(targets)]) for i in range(mails)]
    times = {"prepare": 0.0, "queue": 0.0, "send": 0.0, "total": 0.0}
    prepared: list[PreparedMail] = []
    sender = build_sender(config, db, owner="bench")

    def enqueue(chunk: list[PreparedMail]) -> None:
        started = time.perf_counter()
        first = len(prepared)
        queue_many(config, db, [(mail, f"bench-{round_}-{first + i}", TEMPLATE) for i, mail in enumerate(chunk)])
        prepared.extend(chunk)
        times["queue"] += time.perf_counter() - started

    async def send_all(all_queued: asyncio.Event) -> int:
        sent = 0
        try:
            while True:
                started = time.perf_counter()
                counts = await sender.send_due(SEND_LIMIT)
                times["send"] += time.perf_counter() - started
                if counts["retry"] or counts["failed"]:
                    raise RuntimeError(f"sending failed: {counts}")
                sent += counts["sent"]
                if not counts["sent"]:
                    if all_queued.is_set():
                        return sent
                    await asyncio.sleep(0.002)
        finally:
            await sender.transport.close()

    async def pipeline() -> int:
        assert pool is not None
        all_queued = asyncio.Event()
        started = time.perf_counter()
        futures = [pool.submit(requests[i:i + CHUNK]) for i in range(0, mails, CHUNK)]

        async def produce() -> None:
            done = 0
            while done < len(futures):
                chunk = await asyncio.wrap_future(futures[done])
                done += 1
                while done < len(futures) and futures[done].done():  # queue whatever else is ready with it
                    chunk += futures[done].result()
                    done += 1
                enqueue(chunk)
            times["prepare"] = time.perf_counter() - started  # until the last chunk arrived (overlapped)
            all_queued.set()

        _, sent = await asyncio.gather(produce(), send_all(all_queued))
        return int(sent)

    async def sequential() -> int:
        all_queued = asyncio.Event()
        all_queued.set()
        return await send_all(all_queued)

    if profile:
        profile.enable()
    with SyncTimer() as sync:
        started = time.perf_counter()
        if pool is not None:
            sent = asyncio.run(pipeline())
        else:
            step = time.perf_counter()
            chunk = prepare_many(config, db, requests)
            times["prepare"] = time.perf_counter() - step
            enqueue(chunk)
            sent = asyncio.run(sequential())
        times["total"] = time.perf_counter() - started
    if profile:
        profile.disable()
    return times, [mail.raw for mail in prepared], sync.seconds, sent


async def baseline_send(port: int, sender: str, messages: list[tuple[str, bytes]], connections: int) -> int:
    async def worker(share: list[tuple[str, bytes]]) -> int:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30, use_tls=False, start_tls=False)
        await client.connect()
        for rcpt, raw in share:
            await client.sendmail(sender, [rcpt], raw)
        await client.quit()
        return len(share)

    done = await asyncio.gather(*(worker(messages[k::connections]) for k in range(connections)))
    return sum(done)


# --- the same-work baseline and the raw limit --------------------------------------------------------


def same_work_input(config: Config, db: Database, targets: list[tuple[str, str]], mails: int, path: Path) -> None:
    """What bench/send_same_work.py needs, looked up once outside any timing (a user's script reads a CSV)."""
    invoices = load_invoices(db, [ref for _address, ref in targets])
    per_target = []
    for address, ref in targets:
        recipient = resolve_recipient(db, address)
        per_target.append({"address": address, "contact": recipient.contact or {},
                           "thirdparty": recipient.thirdparty or {},
                           "invoice": _invoice_view(ref, invoices[ref], recipient)})
    setup = {"company": dict(config.outbound.company), "sender": config.outbound.sender,
             "sender_name": config.outbound.sender_name, "base_url": config.tracking.base_url,
             "secret": load_secret(config.tracking, config.base_dir),
             "template_dir": str(config.base_dir / "templates" / TEMPLATE)}
    with path.open("wb") as handle:
        pickle.dump((setup, [per_target[i % len(per_target)] for i in range(mails)]), handle)


def run_same_work(path: Path, port: int, connections: int) -> tuple[float, int, float]:
    """(seconds, mails, CPU seconds of the script) of bench/send_same_work.py in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "send_same_work.py"), str(path), str(port),
                           str(connections)], capture_output=True, text=True, timeout=1800)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"same-work baseline failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["seconds"], result["mails"], after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def mark_sent(db: Database) -> None:
    """bench/pixel.py alone: its queued mails count as sent a day ago (opens are then a person's, not a scanner's)."""
    with db.engine.begin() as conn:
        conn.execute(update(OutboxMessage).values(status="sent", sent_at=utcnow() - timedelta(days=1)))


def tracking_tokens(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return [token for token in conn.execute(select(OutboxMessage.tracking_token).order_by(OutboxMessage.id))
                .scalars() if token]


# --- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2, help="outbound.transport.max_connections (K)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="PreparePool processes (0: prepare, queue and send one after the other, in-process)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the maild sending path in this process (with --workers 0 also prepare)")
    parser.add_argument("--pixel-rounds", type=int, default=5)
    parser.add_argument("--pixel-seconds", type=int, default=4)
    parser.add_argument("--pixel-connections", type=int, default=16)
    parser.add_argument("--no-pixel", action="store_true", help="skip the pixel benchmark")
    args = parser.parse_args()
    sink = Sink()
    sink.start()
    rates: dict[str, list[float]] = {"maild": [], "same_work": [], "raw": []}
    cpu_ms: dict[str, list[float]] = {"maild_main": [], "maild_workers": [], "maild_sink": [], "same_work": [],
                                      "same_work_sink": [], "raw_client": [], "raw_sink": []}
    steps: dict[str, list[float]] = {"prepare": [], "queue": [], "sync": [], "send": []}
    load = os.getloadavg()[0]
    pixel: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="maild-bench-send-") as tmp:
            home = Path(tmp) / "home"
            config = make_home(home, sink.port, args.connections)
            db = Database(config.database_url)
            targets = fill_directory(db)
            print(f"sink: {sink.name} on port {sink.port}; {PARTIES} third parties; {args.connections} connections; "
                  f"{args.mails} mails x {args.rounds} rounds", flush=True)
            same_input = Path(tmp) / "same-work.pickle"
            same_work_input(config, db, targets, args.mails, same_input)
            # Warm-up outside the timing: first template load, first PDF (fonts), first SMTP connection.
            warm = prepare(config, db, template=TEMPLATE, to=targets[0][0], invoice_ref=targets[0][1])
            asyncio.run(baseline_send(sink.port, config.outbound.sender, [(targets[0][0], warm.raw)], 1))

            pool = PreparePool(config, args.workers) if args.workers else None
            profile = cProfile.Profile() if args.profile else None
            workers = pool.pids if pool is not None else []
            try:
                for round_ in range(args.rounds):
                    order = ["maild", "same_work"] if round_ % 2 == 0 else ["same_work", "maild"]
                    raws: list[bytes] = []
                    for side in order:
                        if side == "maild":
                            cpu = (cpu_seconds([os.getpid()]), cpu_seconds(workers), cpu_seconds([sink.pid]))
                            before = sink.count
                            times, raws, sync_s, sent = run_maild(config, db, targets, args.mails, pool, profile,
                                                                  round_)
                            cpu = (cpu_seconds([os.getpid()]) - cpu[0], cpu_seconds(workers) - cpu[1],
                                   cpu_seconds([sink.pid]) - cpu[2])
                            if sent != args.mails or (before is not None and sink.count - before != args.mails):
                                got = sink.count - before if before is not None else "?"
                                raise SystemExit(f"maild sent {sent}, the sink got {got}")
                            rates["maild"].append(sent / times["total"])
                            for key, value in zip(("maild_main", "maild_workers", "maild_sink"), cpu, strict=True):
                                cpu_ms[key].append(value * 1000 / sent)
                            for key in ("prepare", "queue", "send"):
                                steps[key].append(times[key])
                            steps["sync"].append(sync_s)
                            size = sum(len(r) for r in raws) / len(raws)
                            how = f"{args.workers} prepare workers, overlapped" if args.workers else "sequential"
                            print(f"round {round_ + 1} maild:     {sent} mails (avg {size / 1024:.1f} KB) in "
                                  f"{times['total']:.2f}s = {rates['maild'][-1]:.0f}/s  [{how}: prepare "
                                  f"{times['prepare']:.2f}s, queue {times['queue']:.2f}s (os.sync {sync_s:.2f}s), "
                                  f"send {times['send']:.2f}s]; cpu ms/mail: main {cpu_ms['maild_main'][-1]:.2f}, "
                                  f"workers {cpu_ms['maild_workers'][-1]:.2f}, sink {cpu_ms['maild_sink'][-1]:.2f}",
                                  flush=True)
                        else:
                            sink_cpu = cpu_seconds([sink.pid])
                            before = sink.count
                            seconds, done, script_cpu = run_same_work(same_input, sink.port, args.connections)
                            sink_cpu = cpu_seconds([sink.pid]) - sink_cpu
                            if done != args.mails or (before is not None and sink.count - before != args.mails):
                                raise SystemExit("same-work baseline: not every message reached the sink")
                            rates["same_work"].append(done / seconds)
                            cpu_ms["same_work"].append(script_cpu * 1000 / done)
                            cpu_ms["same_work_sink"].append(sink_cpu * 1000 / done)
                            print(f"round {round_ + 1} same work: {done} mails in {seconds:.2f}s = "
                                  f"{rates['same_work'][-1]:.0f}/s; cpu ms/mail: script {cpu_ms['same_work'][-1]:.2f} "
                                  f"(start-up included), sink {cpu_ms['same_work_sink'][-1]:.2f}", flush=True)
                    messages = [(targets[i % len(targets)][0], raw) for i, raw in enumerate(raws)]
                    before = sink.count
                    raw_cpu = (cpu_seconds([os.getpid()]), cpu_seconds([sink.pid]))
                    started = time.perf_counter()
                    done = asyncio.run(baseline_send(sink.port, config.outbound.sender, messages, args.connections))
                    raw_s = time.perf_counter() - started
                    raw_cpu = (cpu_seconds([os.getpid()]) - raw_cpu[0], cpu_seconds([sink.pid]) - raw_cpu[1])
                    if done != args.mails or (before is not None and sink.count - before != args.mails):
                        raise SystemExit("raw baseline: not every message reached the sink")
                    rates["raw"].append(done / raw_s)
                    cpu_ms["raw_client"].append(raw_cpu[0] * 1000 / done)
                    cpu_ms["raw_sink"].append(raw_cpu[1] * 1000 / done)
                    print(f"round {round_ + 1} raw:       {done} prebuilt mails in {raw_s:.2f}s = "
                          f"{rates['raw'][-1]:.0f}/s; cpu ms/mail: client {cpu_ms['raw_client'][-1]:.2f}, "
                          f"sink {cpu_ms['raw_sink'][-1]:.2f}", flush=True)
                    load = max(load, os.getloadavg()[0])
            finally:
                if pool is not None:
                    pool.close()
            if profile:
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
                out.write("\n--- by own time ---\n")
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue(), flush=True)
            tokens = tracking_tokens(db)
            secret = load_secret(config.tracking, config.base_dir)
            db.dispose()
            if not args.no_pixel:
                pixel = pixel_bench(home / "maild.yaml", tokens, secret, config.database_url, Path(tmp) / "pixel",
                                    rounds=args.pixel_rounds, seconds=args.pixel_seconds,
                                    connections=args.pixel_connections)
    finally:
        sink.stop()
    load = max(load, os.getloadavg()[0])
    median = {side: statistics.median(values) for side, values in rates.items()}
    print(f"medians of {args.rounds} rounds: maild {median['maild']:.0f}/s, same work {median['same_work']:.0f}/s, "
          f"raw {median['raw']:.0f}/s; ratio_same_work {median['maild'] / median['same_work']:.2f}, ratio_raw "
          f"{median['maild'] / median['raw']:.2f}; load average up to {load:.1f}", flush=True)
    result = {
        "benchmark": "send",
        "mails": args.mails,
        "rounds": args.rounds,
        "rate": round(median["maild"], 1),
        "same_work_rate": round(median["same_work"], 1),
        "raw_rate": round(median["raw"], 1),
        "ratio_same_work": round(median["maild"] / median["same_work"], 3),
        "ratio_raw": round(median["maild"] / median["raw"], 3),
        "ratios_same_work": [round(m / s, 3) for m, s in zip(rates["maild"], rates["same_work"], strict=True)],
        **{f"{step}_s": round(statistics.median(values), 2) for step, values in steps.items()},
        "cpu_ms_per_mail": {key: round(statistics.median(values), 2) for key, values in cpu_ms.items()},
        **pixel,
        "sink": sink.name,
        "connections": args.connections,
        "workers": args.workers,
        "load": round(load, 1),
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
