"""Pixel benchmark: maild's open endpoint against a bare Starlette endpoint, under wrk, a server per process.

Each side runs in its own process (`--serve maild|bare`): maild's create_app() on a maild home's database and
secret, the bare one an `async def` returning the same 1x1 GIF; both served by TrackingServer (same uvicorn
settings, same guard). wrk (Debian package `wrk`, C, one thread) GETs valid signed open URLs of the home's sent
mails, a few browser user agents, over `connections` keep-alive connections, for `seconds` per round; rounds
alternate (bare, maild, bare, maild, ...) so a change in the machine's load hits both sides alike. Medians of
the rounds' rates are compared. Checked after the run: no error response, and every open request maild
answered is recorded (the sum of `tracking_hits.hits` for opens equals the requests its server counted, after a
clean stop, which writes whatever is still queued). wrk's own CPU share is printed: it must stay well below one
core, or the client would be the limit; `--sweep` also shows the bare endpoint's rate at 1, 4 and 16 connections.

Used by bench/send.py after its sends (`pixel_bench`); alone it makes a home with MAILS sent mails itself:
    .venv/bin/python bench/pixel.py [--mails 500] [--rounds 5] [--seconds 4] [--connections 16] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
]

# wrk script: every thread cycles through the paths (and user agents) in the file given after `--`.
WRK_SCRIPT = r"""
local requests = {}
local index = 0
function init(args)
  local agents = {}
  for line in io.lines(args[2]) do agents[#agents + 1] = line end
  local n = 0
  for path in io.lines(args[1]) do
    n = n + 1
    requests[n] = wrk.format("GET", path, {["User-Agent"] = agents[(n % #agents) + 1]})
  end
end
function request()
  index = index % #requests + 1
  return requests[index]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, e.connect,
    e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


# --- the server process -------------------------------------------------------------------------------


def serve(kind: str, config_file: str | None) -> None:
    """Serve `kind` on a free port; print READY <port>; on SIGTERM stop cleanly and print the request count."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from maild.tracking.app import NO_CACHE, PIXEL, create_app
    from maild.tracking.server import TrackingServer

    db = None
    if kind == "maild":
        from maild.config import load_config
        from maild.store.db import Database
        from maild.tracking.signing import load_secret

        assert config_file
        config = load_config(Path(config_file), environ={})
        db = Database(config.database_url)
        app = create_app(db, load_secret(config.tracking, config.base_dir), config.tracking)
        server = TrackingServer(app, "127.0.0.1", 0, config.tracking)
    else:
        async def pixel(_request: Request) -> Response:
            return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

        server = TrackingServer(Starlette(routes=[Route("/o/{value}", pixel, methods=["GET"])]), "127.0.0.1", 0)
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    server.start()
    print(f"READY {server.port}", flush=True)
    while not stopping:
        time.sleep(0.05)
    state = server._server.server_state if server._server is not None else None
    answered = state.total_requests if state is not None else -1
    server.stop()  # the recorder writes every open still queued
    if db is not None:
        db.dispose()
    print(json.dumps({"answered": answered}), flush=True)


class ServerProcess:
    def __init__(self, kind: str, config_file: Path | None) -> None:
        args = [sys.executable, __file__, "--serve", kind] + (["--config", str(config_file)] if config_file else [])
        self.kind = kind
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            raise SystemExit(f"pixel server {kind} did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> int:
        """SIGTERM, wait for the clean stop; the number of requests the server answered."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        return int(json.loads(out.strip().splitlines()[-1])["answered"])


# --- the client ---------------------------------------------------------------------------------------


def wrk(port: int, workdir: Path, seconds: float, connections: int) -> dict[str, Any]:
    """One wrk run; its summary plus `client_cpu` (wrk's CPU seconds per wall second: its share of a core)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not installed: scripts/install-bench-deps (Debian package wrk)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([binary, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s",
                           str(workdir / "pixel.lua"), f"http://127.0.0.1:{port}", "--",
                           str(workdir / "paths.txt"), str(workdir / "agents.txt")],
                          capture_output=True, text=True, timeout=seconds + 120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("WRK "))
    result: dict[str, Any] = json.loads(line[4:])
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["client_cpu"] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / wall
    return result


def opens_recorded(database_url: str) -> int:
    """Open requests recorded: each open is an event's first hit or a repeat counted on it (`tracking_hits`)."""
    from sqlalchemy import func, select

    from maild.store.db import Database
    from maild.store.models import TrackingHits

    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            total = conn.execute(select(func.coalesce(func.sum(TrackingHits.hits), 0))
                                 .where(TrackingHits.kind == "o")).scalar()
    finally:
        db.dispose()
    return int(total or 0)


def pixel_bench(config_file: Path, tokens: list[str], secret: bytes, database_url: str, workdir: Path, *,
                rounds: int = 5, seconds: float = 4.0, connections: int = 16, sweep: bool = False) -> dict[str, Any]:
    """Alternating wrk rounds against a bare and a maild server process; the figures and the checks."""
    from maild.tracking.signing import sign

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pixel.lua").write_text(WRK_SCRIPT)
    (workdir / "paths.txt").write_text("".join(f"/o/{sign(secret, 'o', token, None)}\n" for token in tokens))
    (workdir / "agents.txt").write_text("".join(f"{agent}\n" for agent in USER_AGENTS))
    before = opens_recorded(database_url)
    servers = {"bare": ServerProcess("bare", None), "maild": ServerProcess("maild", config_file)}
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "maild": []}
    swept: dict[int, float] = {}
    answered: dict[str, int] = {}
    load = os.getloadavg()[0]
    try:
        for server in servers.values():  # warm-up: first requests, imports, caches
            wrk(server.port, workdir, 1, connections)
        if sweep:
            for count in (1, 4, 16, 64):
                swept[count] = wrk(servers["bare"].port, workdir, seconds, count)["rate"]
                print(f"pixel bare with {count:2d} connections: {swept[count]:7.0f} req/s", flush=True)
        for index in range(rounds):
            for name, server in servers.items():
                result = wrk(server.port, workdir, seconds, connections)
                runs[name].append(result)
            bare, maild = runs["bare"][-1], runs["maild"][-1]
            print(f"pixel round {index + 1}: bare {bare['rate']:7.0f} req/s (wrk {bare['client_cpu']:.0%} of a core), "
                  f"maild {maild['rate']:7.0f} req/s (wrk {maild['client_cpu']:.0%}); ratio "
                  f"{maild['rate'] / bare['rate']:.2f}; p99 bare {bare['p99_us'] / 1000:.1f} ms, "
                  f"maild {maild['p99_us'] / 1000:.1f} ms", flush=True)
    finally:
        for name, server in servers.items():
            answered[name] = server.stop()
    load = max(load, os.getloadavg()[0])
    recorded = opens_recorded(database_url) - before
    rate = {name: statistics.median(r["rate"] for r in results) for name, results in runs.items()}
    errors = {name: sum(r["errors"] for r in results) for name, results in runs.items()}
    completed = sum(r["requests"] for r in runs["maild"])
    print(f"pixel medians: bare {rate['bare']:.0f} req/s, maild {rate['maild']:.0f} req/s = "
          f"{rate['maild'] / rate['bare']:.2f}; maild answered {answered['maild']} open requests (wrk completed "
          f"{completed} in the timed rounds), {recorded} recorded; errors bare {errors['bare']}, maild "
          f"{errors['maild']}; load average {load:.1f}", flush=True)
    if errors["bare"] or errors["maild"]:
        raise SystemExit(f"pixel: error responses or socket errors: {errors}")
    if recorded != answered["maild"]:
        raise SystemExit(f"pixel: {answered['maild']} opens answered but {recorded} recorded")
    return {
        "pixel_rate": round(rate["maild"], 1),
        "pixel_baseline_rate": round(rate["bare"], 1),
        "pixel_ratio": round(rate["maild"] / rate["bare"], 3),
        "pixel_ratios": [round(m["rate"] / b["rate"], 3) for b, m in zip(runs["bare"], runs["maild"], strict=True)],
        "pixel_requests": answered["maild"],
        "opens_recorded": recorded,
        "pixel_errors": errors["maild"] + errors["bare"],
        "pixel_client_cpu": round(max(r["client_cpu"] for rs in runs.values() for r in rs), 2),
        "pixel_connections": connections,
        "pixel_sweep": {str(k): round(v, 1) for k, v in swept.items()},
        "pixel_load": round(load, 1),
    }


# --- alone: a home with sent mails --------------------------------------------------------------------


def standalone(args: argparse.Namespace) -> None:
    import send  # bench/send.py: the same home, directory and template

    from maild.outbound.batch import prepare_many, queue_many
    from maild.outbound.mailing import MailRequest
    from maild.store.db import Database
    from maild.tracking.signing import load_secret

    with tempfile.TemporaryDirectory(prefix="maild-bench-pixel-") as tmp:
        home = Path(tmp) / "home"
        config = send.make_home(home, 25, 1)
        db = Database(config.database_url)
        targets = send.fill_directory(db)
        requests = [MailRequest(send.TEMPLATE, *targets[i % len(targets)]) for i in range(args.mails)]
        mails = prepare_many(config, db, requests)
        queue_many(config, db, [(mail, f"pixel-{i}", send.TEMPLATE) for i, mail in enumerate(mails)])
        send.mark_sent(db)
        tokens = send.tracking_tokens(db)
        db.dispose()
        result = pixel_bench(home / "maild.yaml", tokens, load_secret(config.tracking, config.base_dir),
                             config.database_url, Path(tmp) / "pixel", rounds=args.rounds, seconds=args.seconds,
                             connections=args.connections, sweep=args.sweep)
    print(json.dumps({"benchmark": "pixel", **result, "cores": os.cpu_count()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=["maild", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sweep", action="store_true", help="also the bare endpoint at 1, 4, 16, 64 connections")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.config)
    else:
        standalone(args)


if __name__ == "__main__":
    main()
