"""Sending benchmark: templated mails with invoice PDFs and tracking through the outbox, and tracking-pixel hits.

In one run, against a fresh SQLite home (`initialise()`, then transport smtp to a local sink) with a directory
of 200 third parties (each its own domain, one contact, one invoice with one line):
  (A) maild:    N mails of a bench template (subject + text + HTML with two links; contact.name, invoice.ref),
                as a pipeline timed from the first request to the last mail recorded as sent:
                prepare_many() in a PreparePool of W worker processes (recipient look-up, render, one-page invoice
                PDF, tracking links/pixel, compose; chunks of 25), queue_many() as each chunk arrives (its blobs,
                one sync, one transaction: outbox rows + tracking ids + links) and, meanwhile, OutboxSender.send_due()
                over K = max_connections connections until all N are sent. The pool is started (forked) before
                the timing, like the warm-up below; with --workers 0 the three steps run one after the other
                in this process (prepare_many, queue_many, send_due), for profiling;
      baseline: the same N composed messages (the very bytes maild queued) sent with raw aiosmtplib:
                K concurrent clients, each one connection and sendmail() for its share.
      The SMTP sink is `smtp-sink` (postfix) when installed, else an aiosmtpd Controller that only counts,
      in a separate process so it does not compete for this process's GIL.
  (B) tracking pixel: maild's create_app() and a bare Starlette app (an async endpoint, like maild's open pixel)
      returning the same 1x1 GIF, each served by TrackingServer on port 0 (same uvicorn settings), each hit
      with R requests (valid signed open URLs of the queued mails, so opens are recorded) from an httpx client
      in another process (a few keep-alive connections), in 3 alternating rounds (bare, maild, bare, ...).
The last line printed is JSON: rate, baseline_rate, ratio (target >= 0.5), pixel_rate, pixel_baseline_rate,
pixel_ratio (target >= 0.7), sink, connections, ...

    .venv/bin/python bench/send.py [--mails 2000] [--requests 3000] [--connections 2] [--workers 2] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

import maild.templates.pdf  # noqa: E402  (imported lazily elsewhere: keep that out of the timing)
import maild.tracking.links  # noqa: E402, F401
from maild.business.invoices import upsert_invoice  # noqa: E402
from maild.cli.setup import initialise  # noqa: E402
from maild.config import Config, load_config  # noqa: E402
from maild.directory.service import add_contact, add_thirdparty  # noqa: E402
from maild.outbound.batch import PreparePool, prepare_many, queue_many  # noqa: E402
from maild.outbound.mailing import MailRequest, PreparedMail, prepare  # noqa: E402
from maild.outbound.sender import build_sender  # noqa: E402
from maild.store.blobs import BlobStore  # noqa: E402
from maild.store.db import Database  # noqa: E402
from maild.store.models import Event, OutboxMessage  # noqa: E402
from maild.tracking.app import NO_CACHE, PIXEL, create_app  # noqa: E402
from maild.tracking.server import TrackingServer  # noqa: E402
from maild.tracking.signing import load_secret, sign  # noqa: E402

PARTIES = 200
TEMPLATE = "bench-invoice"
SEND_LIMIT = 100  # rows claimed per send_due pass
CHUNK = 25  # requests per PreparePool task
CLIENT_CONNECTIONS = 4
WARMUP_REQUESTS = 100
PIXEL_ROUNDS = 3
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

# The pixel client, run in its own process: GET every URL in a file over a few keep-alive connections.
CLIENT = r"""
import asyncio, json, sys, time
import httpx

async def main(path, workers, warmup):
    urls = open(path).read().split()
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        bad = 0

        async def run(todo):
            nonlocal bad
            while todo:
                response = await client.get(todo.pop())
                if response.status_code != 200 or response.content[:4] != b"GIF8":
                    bad += 1

        warm = urls[:warmup]
        await asyncio.gather(*(run(warm) for _ in range(workers)))
        todo = urls[warmup:][::-1]
        count = len(todo)
        started = time.perf_counter()
        await asyncio.gather(*(run(todo) for _ in range(workers)))
        elapsed = time.perf_counter() - started
    print(json.dumps({"requests": count, "seconds": elapsed, "bad": bad}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
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
              profile: cProfile.Profile | None) -> tuple[dict[str, float], list[bytes], float, int]:
    """(seconds per step, the raw mails, seconds in os.sync, mails sent); "total" is the timed wall clock."""
    requests = [MailRequest(TEMPLATE, *targets[i % len(targets)]) for i in range(mails)]
    times = {"prepare": 0.0, "queue": 0.0, "send": 0.0, "total": 0.0}
    prepared: list[PreparedMail] = []
    sender = build_sender(config, db, owner="bench")

    def enqueue(chunk: list[PreparedMail]) -> None:
        started = time.perf_counter()
        first = len(prepared)
        queue_many(config, db, [(mail, f"bench-{first + i}", TEMPLATE) for i, mail in enumerate(chunk)])
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


# --- (B) tracking pixel ------------------------------------------------------------------------------


def bare_app() -> Starlette:
    """The same GIF from an `async def` endpoint, like maild's open handler (no threadpool hop for either)."""

    async def pixel(_request: Request) -> Response:
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    return Starlette(routes=[Route("/o/{value}", pixel, methods=["GET"])])


def hit(server: TrackingServer, paths: list[str], workdir: Path, warmup: int) -> tuple[float, int]:
    """(seconds, requests) for GETting paths[warmup:] after the warm-up requests paths[:warmup]."""
    urls = workdir / f"urls-{server.port}.txt"
    urls.write_text("\n".join(f"http://127.0.0.1:{server.port}{path}" for path in paths))
    proc = subprocess.run([sys.executable, "-c", CLIENT, str(urls), str(CLIENT_CONNECTIONS), str(warmup)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"pixel client failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["bad"]:
        raise SystemExit(f"pixel client: {result['bad']} bad responses")
    return result["seconds"], result["requests"]


def pixel_bench(config: Config, db: Database, requests: int, workdir: Path) -> tuple[float, float, int]:
    """Both servers run side by side; PIXEL_ROUNDS alternating rounds (bare, maild, bare, ...) of
    requests / PIXEL_ROUNDS each, so a change in the machine's load hits both alike; rate = all / time."""
    secret = load_secret(config.tracking, config.base_dir)
    with db.engine.connect() as conn:
        tokens = list(conn.execute(select(OutboxMessage.tracking_token).order_by(OutboxMessage.id)).scalars())
    per_round = requests // PIXEL_ROUNDS
    servers = {"bare": TrackingServer(bare_app(), "127.0.0.1", 0),
               "maild": TrackingServer(create_app(db, secret, config.tracking), "127.0.0.1", 0)}
    spent = {name: [0.0, 0] for name in servers}
    for server in servers.values():
        server.start()
    try:
        for index in range(PIXEL_ROUNDS):
            warmup = WARMUP_REQUESTS if index == 0 else 0
            first = index * per_round
            paths = [f"/o/{sign(secret, 'o', tokens[i % len(tokens)], None)}"
                     for i in range(first, first + per_round + warmup)]
            for name, server in servers.items():
                seconds, count = hit(server, paths, workdir, warmup)
                spent[name][0] += seconds
                spent[name][1] += int(count)
    finally:
        for server in servers.values():
            server.stop()
    rates = {name: count / seconds for name, (seconds, count) in spent.items()}
    for name, (_seconds, count) in spent.items():
        print(f"pixel {name:5s}: {count} requests = {rates[name]:.0f}/s", flush=True)
    with db.engine.connect() as conn:
        opened = conn.execute(select(func.count()).select_from(Event).where(Event.type == "mail.opened")).scalar()
    return rates["maild"], rates["bare"], int(opened or 0)


# --- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=2, help="outbound.transport.max_connections (K)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="PreparePool processes (0: prepare, queue and send one after the other, in-process)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the maild sending path in this process (with --workers 0 also prepare)")
    args = parser.parse_args()
    sink = Sink()
    sink.start()
    try:
        with tempfile.TemporaryDirectory(prefix="maild-bench-send-") as tmp:
            home = Path(tmp) / "home"
            config = make_home(home, sink.port, args.connections)
            db = Database(config.database_url)
            targets = fill_directory(db)
            print(f"sink: {sink.name} on port {sink.port}; {PARTIES} third parties; {args.connections} connections",
                  flush=True)
            # Warm-up outside the timing: first template load, first PDF (fonts), first SMTP connection.
            warm = prepare(config, db, template=TEMPLATE, to=targets[0][0], invoice_ref=targets[0][1])
            asyncio.run(baseline_send(sink.port, config.outbound.sender, [(targets[0][0], warm.raw)], 1))

            pool = PreparePool(config, args.workers) if args.workers else None
            profile = cProfile.Profile() if args.profile else None
            before = sink.count
            workers = pool.pids if pool is not None else []
            cpu = (cpu_seconds([os.getpid()]), cpu_seconds(workers), cpu_seconds([sink.pid]))
            try:
                times, raws, sync_s, sent = run_maild(config, db, targets, args.mails, pool, profile)
                cpu = (cpu_seconds([os.getpid()]) - cpu[0], cpu_seconds(workers) - cpu[1],
                       cpu_seconds([sink.pid]) - cpu[2])
            finally:
                if pool is not None:
                    pool.close()
            maild_s = times["total"]
            if sent != args.mails or (before is not None and sink.count - before != args.mails):
                got = sink.count - before if before is not None else "?"
                raise SystemExit(f"maild sent {sent}, the sink got {got}")
            size = sum(len(r) for r in raws) / len(raws)
            how = f"{args.workers} prepare workers, overlapped" if args.workers else "one after the other"
            print(f"maild: {sent} mails (avg {size / 1024:.1f} KB) in {maild_s:.2f}s = {sent / maild_s:.0f}/s  "
                  f"[{how}: prepare {times['prepare']:.2f}s, queue {times['queue']:.2f}s (os.sync {sync_s:.2f}s), "
                  f"send {times['send']:.2f}s]", flush=True)
            print(f"  cpu ms/mail: main {cpu[0] * 1000 / sent:.2f}, prepare workers {cpu[1] * 1000 / sent:.2f}, "
                  f"sink {cpu[2] * 1000 / sent:.2f}", flush=True)

            messages = [(targets[i % len(targets)][0], raw) for i, raw in enumerate(raws)]
            before = sink.count
            base_cpu = (cpu_seconds([os.getpid()]), cpu_seconds([sink.pid]))
            started = time.perf_counter()
            done = asyncio.run(baseline_send(sink.port, config.outbound.sender, messages, args.connections))
            base_s = time.perf_counter() - started
            base_cpu = (cpu_seconds([os.getpid()]) - base_cpu[0], cpu_seconds([sink.pid]) - base_cpu[1])
            if done != args.mails or (before is not None and sink.count - before != args.mails):
                raise SystemExit("baseline: not every message reached the sink")
            print(f"baseline aiosmtplib sendmail: {done} prebuilt mails in {base_s:.2f}s = {done / base_s:.0f}/s",
                  flush=True)
            print(f"  cpu ms/mail: client {base_cpu[0] * 1000 / done:.2f}, sink {base_cpu[1] * 1000 / done:.2f}",
                  flush=True)

            pixel_rate, pixel_base, opened = pixel_bench(config, db, args.requests, Path(tmp))
            print(f"opens recorded: {opened}", flush=True)
            if profile:
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
                out.write("\n--- by own time ---\n")
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue(), flush=True)
            db.dispose()
    finally:
        sink.stop()
    result = {
        "benchmark": "send",
        "mails": args.mails,
        "rate": round(args.mails / maild_s, 1),
        "baseline_rate": round(args.mails / base_s, 1),
        "ratio": round(base_s / maild_s, 3),
        "prepare_s": round(times["prepare"], 2),
        "queue_s": round(times["queue"], 2),
        "sync_s": round(sync_s, 2),
        "send_s": round(times["send"], 2),
        "avg_kb": round(size / 1024, 1),
        "pixel_rate": round(pixel_rate, 1),
        "pixel_baseline_rate": round(pixel_base, 1),
        "pixel_ratio": round(pixel_rate / pixel_base, 3),
        "requests": args.requests,
        "opens_recorded": opened,
        "sink": sink.name,
        "connections": args.connections,
        "workers": args.workers,
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
