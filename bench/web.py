"""Web benchmark: the timeline, message and search pages under concurrent load from wrk, timed on the server.

Builds a fresh SQLite database in a temp dir with SQLAlchemy Core bulk inserts: 1,000 third parties, 100,000
messages with their decisions and `mail.matched` events (the full-text index filled by its triggers), and one third
party with 10,000 events (7,000 mails, 3,000 notes, opens and tasks). Serves the web app on 127.0.0.1 (as `maild web`
does, in this process), logs in as a user, and points wrk (installed with apt-get when missing) with the session
cookie at each page kind in turn; a Lua script picks a random URL per request from a list:
  timeline  the big third party's first pages (its keyset cursors) and other third parties' pages
  message   random messages
  search    random words (common and rare) and two-word queries
The p95 is the server's own time per request (maild/web/stats.py: the app's middleware, not wrk's latency); the
SQL statements per page are counted by an engine listener and must be one number per page kind. The last line
printed is JSON: timeline_p95_ms, message_p95_ms, search_p95_ms (target < 150 each), queries_per_page, requests.

    .venv/bin/python bench/web.py [--messages 100000] [--seconds 15] [--connections 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from maild.config import Config, DatabaseConfig, StorageConfig, WebConfig  # noqa: E402
from maild.matchers.normalize import name_key  # noqa: E402
from maild.services import users  # noqa: E402
from maild.services.actor import Actor  # noqa: E402
from maild.store.db import Database  # noqa: E402
from maild.store.models import Event, Message, MessageMatch, ThirdParty  # noqa: E402
from maild.web.server import start_web  # noqa: E402

THIRDPARTIES = 1000
BIG_MAILS = 7000
BIG_OTHER = 3000
COMMON = ("angebot", "rechnung", "lieferung", "termin", "dach", "bitte", "danke", "projekt", "frage", "preis")
WORDS = [f"wort{i}" for i in range(3000)] + list(COMMON) * 40  # rare words and common ones
PASSWORD = "bench password 1"
ROUTES = {"timeline": "GET /customers/{id:int}", "message": "GET /messages/{id:int}", "search": "GET /search"}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "update"], check=False, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL,
                   env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


def build(db: Database, messages: int, rng: random.Random) -> dict[str, Any]:
    tp, m, mm, ev = ThirdParty.__table__, Message.__table__, MessageMatch.__table__, Event.__table__
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with db.engine.begin() as conn:
        conn.execute(insert(tp), [{"id": i, "name": f"Kunde {i:04d} GmbH", "name_key": name_key(f"Kunde {i:04d} GmbH"),
                                   "kind": "customer", "external_id": f"C-{i}", "tags": [], "custom_fields": {},
                                   "created_at": now, "updated_at": now} for i in range(1, THIRDPARTIES + 1)])
    big = 1
    owners = [big] * BIG_MAILS + [2 + (i % (THIRDPARTIES - 1)) for i in range(messages - BIG_MAILS)]
    rng.shuffle(owners)
    batch: list[dict[str, Any]] = []
    matches: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    start = now - timedelta(days=3 * 365)
    step = (now - start) / messages

    def flush() -> None:
        with db.engine.begin() as conn:
            conn.execute(insert(m), batch)
            conn.execute(insert(mm), matches)
            conn.execute(insert(ev), events)
        batch.clear()
        matches.clear()
        events.clear()

    for i in range(1, messages + 1):
        owner = owners[i - 1]
        when = start + step * i
        words = rng.choices(WORDS, k=rng.randint(40, 120))
        subject = " ".join(rng.choices(WORDS, k=rng.randint(3, 7))).capitalize()
        sender = f"kontakt{owner}@kunde{owner}.example"
        batch.append({"id": i, "raw_sha256": hashlib.sha256(str(i).encode()).hexdigest(), "size": 2000,
                      "header_message_id": f"<{i}@kunde{owner}.example>", "references": [], "subject": subject,
                      "from_name": f"Kontakt {owner}", "from_addr": sender, "to_addrs": [["Vertrieb",
                      "vertrieb@ourco.example"]], "cc_addrs": [], "reply_to": [], "date": when,
                      "text_body": " ".join(words), "html_body": f"<p>{' '.join(words[:30])}</p>" if i % 5 == 0 else "",
                      "parser": "bench", "defects": [], "ingested_at": when})
        matches.append({"message_id": i, "status": "matched", "thirdparty_id": owner, "matcher": "address",
                        "confidence": 1.0, "reason": f"From {sender} is a contact", "verdicts": [
                            {"matcher": "address", "candidates": [{"thirdparty_id": owner, "confidence": 1.0,
                                                                   "reason": f"From {sender} is a contact"}]}],
                        "decided_at": when})
        events.append({"type": "mail.matched", "occurred_at": when, "recorded_at": when, "thirdparty_id": owner,
                       "message_id": i, "data": {"subject": subject, "matcher": "address",
                                                 "reason": f"From {sender} is a contact"}})
        if len(batch) >= 5000:
            flush()
    if batch:
        flush()
    others = []
    for n in range(BIG_OTHER):
        when = start + (now - start) * rng.random()
        kind = n % 3
        others.append({"type": ("note.added", "mail.opened", "task.created")[kind], "occurred_at": when,
                       "recorded_at": when, "thirdparty_id": big, "message_id": None,
                       "data": ({"text": f"Anruf {n}", "author": "lena"}, {"outbox_id": None, "machine": None},
                                {"title": f"Rückruf {n}", "kind": "task"})[kind]})
    with db.engine.begin() as conn:
        conn.execute(insert(ev), others)
        conn.exec_driver_sql("ANALYZE")
        big_events = conn.exec_driver_sql(f"SELECT COUNT(*) FROM events WHERE thirdparty_id = {big}").scalar()
    return {"big": big, "big_events": big_events}


def log_in(base: str) -> str:
    """The session cookie of a logged-in user, as a browser gets it."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/login") as response:
        page = response.read().decode()
        login_cookie = response.headers["set-cookie"].split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    body = urllib.parse.urlencode({"username": "bench", "password": PASSWORD, "csrf": csrf.group(1)}).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: Any, **_kw: Any) -> None:
            return None

    request = urllib.request.Request(f"{base}/login", data=body, headers={"Cookie": login_cookie})
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect).open(request)
    except urllib.error.HTTPError as answer:
        if answer.code != 303:
            raise
        return str(answer.headers["set-cookie"]).split(";")[0]
    raise SystemExit("login did not redirect")


def timeline_urls(base: str, cookie: str, big: int, rng: random.Random) -> list[str]:
    """The big third party's first 20 pages (following its cursors, as a person clicking "Older"), its kind
    filters, and other third parties' first pages."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    urls = [f"/customers/{big}"]
    for _ in range(19):
        with opener.open(urllib.request.Request(base + urls[-1], headers={"Cookie": cookie})) as response:
            found = re.search(r'class="more" href="(/customers/\d+\?[^"]+)"', response.read().decode())
        if not found:
            break
        urls.append(found.group(1).replace("&amp;", "&"))
    urls += [f"/customers/{big}?kind=notes", f"/customers/{big}?kind=mail_in&kind=tasks"]
    urls += [f"/customers/{rng.randint(2, THIRDPARTIES)}" for _ in range(40)]
    return urls


def run_wrk(wrk: str, base: str, cookie: str, urls: list[str], seconds: int, connections: int, tmp: Path) -> str:
    script = tmp / "paths.lua"
    quoted = ",\n".join(json.dumps(u) for u in urls)
    script.write_text(f"""
local paths = {{
{quoted}
}}
math.randomseed(7)
wrk.headers["Cookie"] = {json.dumps(cookie)}
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
response = function(status, headers, body)
  if status ~= 200 then io.write("unexpected status " .. status .. "\\n") end
end
""")
    result = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base],
                            capture_output=True, text=True, check=True)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    wrk = ensure_wrk()
    rng = random.Random(20261202)
    with tempfile.TemporaryDirectory(prefix="maild-web-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = Config(database=DatabaseConfig(url=f"sqlite:///{tmp / 'maild.db'}"),
                        storage=StorageConfig(blob_dir=str(tmp / "blobs")),
                        web=WebConfig(listen_port=0, secret_file=str(tmp / "web.secret"),
                                      login_max_failures=1000),
                        base_dir=tmp)
        db = Database(config.database_url)
        db.upgrade()
        started = time.perf_counter()
        shape = build(db, args.messages, rng)
        print(f"built {args.messages:,} messages, {THIRDPARTIES:,} third parties, the big one with "
              f"{shape['big_events']:,} events, in {time.perf_counter() - started:.0f}s", flush=True)
        users.add_user(db, Actor("bench", "admin", "cli"), "bench", PASSWORD, "viewer")
        server = start_web(config, db)
        base = f"http://127.0.0.1:{server.port}"
        try:
            cookie = log_in(base)
            stats = server.app.state.stats
            pages = {
                "timeline": timeline_urls(base, cookie, shape["big"], rng),
                "message": [f"/messages/{rng.randint(1, args.messages)}" for _ in range(500)],
                "search": [f"/search?q={w}" for w in rng.sample(WORDS[:3000], 150)]
                + [f"/search?q={w}" for w in COMMON]
                + [f"/search?q={urllib.parse.quote(a + ' ' + b)}" for a, b in
                   zip(rng.choices(COMMON, k=40), rng.choices(WORDS[:3000], k=40), strict=True)],
            }
            results: dict[str, Any] = {}
            queries: dict[str, Any] = {}
            total = 0
            for name, urls in pages.items():
                stats.reset()
                out = run_wrk(wrk, base, cookie, urls, args.seconds, args.connections, tmp)
                route = ROUTES[name]
                count = len(stats.times.get(route, ()))
                total += count
                p95 = stats.percentile(route, 95)
                p50 = stats.percentile(route, 50)
                results[f"{name}_p95_ms"] = round((p95 or 0) * 1000, 1)
                results[f"{name}_p50_ms"] = round((p50 or 0) * 1000, 1)
                counts = sorted(stats.query_counts(route))
                queries[name] = counts[0] if len(counts) == 1 else counts
                rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
                results[f"{name}_requests_per_s"] = float(rate.group(1)) if rate else None
                bad = out.count("unexpected status")
                print(f"{name}: {count} requests, server p50 {results[f'{name}_p50_ms']} ms, "
                      f"p95 {results[f'{name}_p95_ms']} ms, SQL statements per page {queries[name]}"
                      + (f", {bad} non-200 answers" if bad else ""), flush=True)
                if bad:
                    raise SystemExit(f"{name}: {bad} answers were not 200")
        finally:
            server.stop()
            db.dispose()
    print(json.dumps({**results, "queries_per_page": queries, "requests": total, "messages": args.messages,
                      "thirdparties": THIRDPARTIES, "big_thirdparty_events": shape["big_events"],
                      "connections": args.connections, "seconds_per_page": args.seconds}))


if __name__ == "__main__":
    main()
