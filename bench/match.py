"""Matching benchmark: 10,000 messages against a directory of 1,000 third parties and one of 100,000, same run.

Builds two fresh SQLite databases in a temp dir, filled with SQLAlchemy Core bulk inserts:
  (A) small: 1,000 third parties (1-2 domains, 3 contacts with 1-2 addresses, ~2 invoices each);
  (B) large: the same 1,000 (same ids, names, domains, contacts, documents) plus 99,000 more,
      300,000 contacts in all;
both with a few domains owned by two third parties, and the same N labelled messages, which refer
only to the first 1,000 third parties:
  contact          40%  from a known address (case varied, +tags)        -> that third party
  domain           15%  an unknown person at a known domain              -> that third party
  freemail         10%  free-mail, no other clue                         -> triage
  freemail_invoice  8%  free-mail, a known invoice number in the subject  -> the invoice's third party
  reply            10%  In-Reply-To an earlier known-contact message      -> its third party (thread)
  shared            5%  an unknown person at a domain two parties own     -> triage (ambiguous)
  unknown          12%  an unknown domain                                 -> triage
Times `MatchingStage(config, db).run_all()` on a fresh copy of A (baseline_rate) and then of B (rate),
building excluded, `--rounds` times (the best round of each counts), then scores B's decisions against
the labels. The last line printed is JSON: rate, baseline_rate, ratio (target >= 0.8), precision
(target >= 0.995), triage_share, false_matches, ...

    .venv/bin/python bench/match.py [--messages 10000] [--large 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Table, select  # noqa: E402

import maild.filing.folders  # noqa: E402, F401  (imported lazily by the stage: keep that out of the first timing)
from maild.config import Config  # noqa: E402
from maild.matchers.normalize import name_key, normalize_address, normalize_domain  # noqa: E402
from maild.matchers.stage import MatchingStage  # noqa: E402
from maild.store.db import Database  # noqa: E402
from maild.store.models import (  # noqa: E402
    Contact,
    Document,
    MailAddress,
    MailDomain,
    Message,
    MessageMatch,
    ThirdParty,
)

SMALL = 1000
CONTACTS_PER_PARTY = 3
BATCH = 500  # MatchingStage.run_all's batch: a reply's parent must be decided in an earlier batch
CHUNK = 5000  # rows per bulk insert
SHARED_PAIRS = 8
FREE_MAIL = ["gmail.com", "web.de", "gmx.de", "yahoo.com", "outlook.com"]
CATEGORIES = {  # category -> share of the messages
    "contact": 0.40, "domain": 0.15, "freemail": 0.10, "freemail_invoice": 0.08,
    "reply": 0.10, "shared": 0.05, "unknown": 0.12,
}
TRIAGE = "triage"
FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hans", "Ida", "Jonas", "Karla", "Lukas", "Mia",
         "Noah", "Olga", "Paul", "Quentin", "Rosa", "Sven", "Tina", "Uwe", "Vera", "Walter", "Yara", "Zoe", "Jörg",
         "Renée", "Łukasz", "Marta", "Omar", "Priya", "Chen"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz", "Braun", "Zimmermann", "Krüger", "Hartmann",
        "Lange", "Werner", "Krause", "Lehmann", "Dubois", "Rossi", "Novak", "Jansen", "Okafor", "Tanaka", "Silva"]
COMPANY = ["Bau", "Logistik", "Handel", "Technik", "Metall", "Holz", "Elektro", "Druck", "Garten", "Transport",
           "Pharma", "Software", "Textil", "Agrar", "Energie", "Glas", "Papier", "Möbel", "Kunststoff", "Optik"]
SUFFIX = ["GmbH", "AG", "KG", "GmbH & Co. KG", "SE", "e.K.", "Ltd", "SARL"]
WORDS = ["order", "delivery", "pallet", "quote", "meeting", "thanks", "regards", "please", "attached", "price",
         "discount", "schedule", "Rechnung", "Lieferung", "Angebot", "question", "support", "ticket", "urgent",
         "week", "update", "shipment", "contract", "sample", "payment", "reminder"]
NOW = datetime(2026, 3, 1, tzinfo=UTC)


# --- the directory -------------------------------------------------------------------------------


@cache
def key(name: str) -> str:
    return name_key(name)


@cache
def ascii_fold(text: str) -> str:
    return name_key(text).replace(" ", "")


def company(index: int, shared: dict[int, str]) -> dict[str, Any]:
    """Third party number `index` (id index + 1), the same whichever directory it is built into."""
    tp_id = index + 1
    h = (index * 2654435761) & 0xFFFFFFFF
    words, suffix = f"{COMPANY[h % len(COMPANY)]} {COMPANY[(h >> 8) % len(COMPANY)]}", SUFFIX[(h >> 16) % len(SUFFIX)]
    domains = [f"co{index}.example"] + ([f"co{index}-group.example"] if index % 3 == 0 else [])
    if index in shared:
        domains.append(shared[index])
    contacts = []
    used: set[str] = set()
    for k in range(CONTACTS_PER_PARTY):
        cid = CONTACTS_PER_PARTY * index + k + 1
        ch = (cid * 2246822519) & 0xFFFFFFFF
        first, last = FIRST[ch % len(FIRST)], LAST[(ch >> 8) % len(LAST)]
        local = f"{ascii_fold(first)}.{ascii_fold(last)}"
        if local in used:
            local += str(k)
        used.add(local)
        addresses = [f"{local}@{domains[0]}"]
        if (index + k) % 2 == 0:
            if k == 2 and index % 5 == 0:  # a contact who writes from a private free-mail address too
                addresses.append(f"{ascii_fold(first)}{ascii_fold(last)}.{cid}@{FREE_MAIL[cid % len(FREE_MAIL)]}")
            else:
                addresses.append(f"{ascii_fold(first)[0]}{ascii_fold(last)}{k}@{domains[-1]}")
        contacts.append({"id": cid, "name": f"{first} {last}", "addresses": addresses})
    general = [f"info@{domains[0]}"] if index % 4 == 0 else []  # a company address, no contact
    documents = [(f"FA26{index % 100:02d}-{(index // 100) * 2 + n:04d}", "invoice") for n in range(2)]
    if index % 4 == 1:
        documents.append((f"PR26{index % 100:02d}-{index // 100:04d}", "proposal"))
    return {"id": tp_id, "name": f"{words} {index} {suffix}", "key": f"{key(words)} {index} {key(suffix)}",
            "domains": domains, "contacts": contacts, "general": general,
            "documents": documents}


def shared_domains(small: int) -> dict[int, str]:
    """A handful of pairs of third parties (both among the first `small`) that own the same domain."""
    step = max(2, small // SHARED_PAIRS)
    out: dict[int, str] = {}
    for p, first in enumerate(range(5, small - 1, step)):
        if p == SHARED_PAIRS:
            break
        out[first] = out[first + 1] = f"shared{p}.example"
    return out


def directory_rows(start: int, stop: int, shared: dict[int, str]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {"thirdparties": [], "contacts": [], "mail_addresses": [],
                                             "mail_domains": [], "documents": []}
    for index in range(start, stop):
        c = company(index, shared)
        tp = c["id"]
        rows["thirdparties"].append({
            "id": tp, "name": c["name"], "name_key": c["key"], "kind": "customer", "external_id": None,
            "tags": [], "custom_fields": {}, "owner": None, "language": None, "created_at": NOW, "updated_at": NOW})
        rows["mail_domains"] += [{"domain": normalize_domain(d), "thirdparty_id": tp} for d in c["domains"]]
        for contact in c["contacts"]:
            cid = contact["id"]
            rows["contacts"].append({
                "id": cid, "thirdparty_id": tp, "name": contact["name"], "name_key": key(contact["name"]),
                "role": None, "phones": [], "external_id": None, "language": None, "created_at": NOW})
            rows["mail_addresses"] += [{"address": normalize_address(a), "thirdparty_id": tp, "contact_id": cid}
                                       for a in contact["addresses"]]
        rows["mail_addresses"] += [{"address": normalize_address(a), "thirdparty_id": tp, "contact_id": None}
                                   for a in c["general"]]
        rows["documents"] += [{"ref": ref, "kind": kind, "thirdparty_id": tp} for ref, kind in c["documents"]]
    return rows


TABLES: dict[str, Table] = {t.name: t for t in (ThirdParty.__table__, Contact.__table__, MailAddress.__table__,
                                                  MailDomain.__table__, Document.__table__)}  # type: ignore[misc]


def bulk(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute(table.insert(), rows[start:start + CHUNK])


def build(path: Path, parties: int, shared: dict[int, str], messages: list[dict[str, Any]]) -> tuple[Database, dict]:
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    counts: Counter[str] = Counter()
    with db.engine.connect() as conn:
        # Loading only: no durability, no FK checks, a big page cache. The stage gets fresh connections.
        for pragma in ("synchronous=OFF", "foreign_keys=OFF", "cache_size=-262144"):
            conn.exec_driver_sql(f"PRAGMA {pragma}")
        for start in range(0, parties, 10_000):  # generated in slices, inserted in id order: A is B's prefix
            for name, rows in directory_rows(start, min(parties, start + 10_000), shared).items():
                bulk(conn, TABLES[name], rows)
                counts[name] += len(rows)
        bulk(conn, Message.__table__, messages)
        conn.commit()
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.engine.dispose()
    return db, dict(counts)


# --- the labelled messages -------------------------------------------------------------------------


def category_plan(total: int, rng: random.Random) -> list[str]:
    counts = {name: round(total * share) for name, share in CATEGORIES.items()}
    counts["contact"] += total - sum(counts.values())
    plan = [name for name, n in counts.items() for _ in range(n)]
    rng.shuffle(plan)
    # A reply needs its parent decided in an earlier batch: none in the first one.
    later = [i for i in range(BATCH, total) if plan[i] != "reply"]
    rng.shuffle(later)
    for i in range(min(BATCH, total)):
        if plan[i] == "reply":
            if later:
                j = later.pop()
                plan[i], plan[j] = plan[j], plan[i]
            else:
                plan[i] = "contact"
    return plan


def vary(address: str, rng: random.Random) -> str:
    """How people really write a known address: other case, a +tag."""
    local, _, domain = address.partition("@")
    roll = rng.random()
    if roll < 0.15:
        local = local.title()
        domain = domain.upper()
    elif roll < 0.25:
        local = local.upper()
    if rng.random() < 0.1:
        local += f"+{rng.choice(['orders', 'invoices', 'news', 'x1'])}"
    return f"{local}@{domain}"


def person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{first} {last}", f"{ascii_fold(first)}.{ascii_fold(last)}"


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_messages(total: int, small: int, shared: dict[int, str], seed: int) -> tuple[list[dict], list[tuple]]:
    """Message rows (ids 1..total, in order) and labels: (category, expected third party id or TRIAGE)."""
    rng = random.Random(seed)
    plan = category_plan(total, rng)
    pairs = sorted(set(shared.values()))
    plain = [i for i in range(small) if i not in shared]
    rows: list[dict[str, Any]] = []
    labels: list[tuple[str, int | str]] = []
    parents: list[int] = []  # positions of known-contact messages, a reply's possible parents
    for pos, category in enumerate(plan):
        in_reply_to, references = None, []
        subject = words(rng, rng.randint(2, 6)).capitalize()
        body = f"Hello,\n\n{words(rng, rng.randint(10, 40))}\n\n{words(rng, rng.randint(5, 30))}\n"
        if category == "contact":
            c = company(rng.randrange(small), shared)
            if c["general"] and rng.random() < 0.1:
                from_name, from_addr = c["name"], vary(rng.choice(c["general"]), rng)
            else:
                contact = rng.choice(c["contacts"])
                from_name, from_addr = contact["name"], vary(rng.choice(contact["addresses"]), rng)
            if rng.random() < 0.15:
                subject += f" {rng.choice(c['documents'])[0]}"
            expected: int | str = c["id"]
            parents.append(pos)
        elif category == "domain":
            c = company(rng.choice(plain), shared)
            from_name, local = person(rng)
            from_addr = f"{local[0]}.{local.split('.')[-1]}{rng.randint(10, 9999)}@{rng.choice(c['domains'])}"
            expected = c["id"]
        elif category in ("freemail", "freemail_invoice"):
            from_name, local = person(rng)
            from_addr = f"{local}{rng.randint(1, 9999)}@{rng.choice(FREE_MAIL)}"
            expected = TRIAGE
            if category == "freemail_invoice":
                c = company(rng.randrange(small), shared)
                ref = rng.choice([r for r, kind in c["documents"] if kind == "invoice"])
                subject = rng.choice([f"Question about invoice {ref}", f"Re: Rechnung {ref}", f"{ref} payment"])
                expected = c["id"]
        elif category == "reply":
            before = bisect.bisect_left(parents, pos - pos % BATCH)  # parents decided in an earlier batch
            if not before:
                raise SystemExit("no parent for a reply: too few messages")
            parent = rows[parents[rng.randrange(before)]]
            in_reply_to = parent["header_message_id"]
            references = [*parent["references"], in_reply_to]
            subject = f"Re: {parent['subject']}"
            from_name = parent["from_name"]
            local = ascii_fold(from_name.split()[0]) + ascii_fold(from_name.split()[-1])
            if rng.random() < 0.7:  # answered from the phone's private account, or a new employer
                from_addr = f"{local}{rng.randint(1, 999)}@{rng.choice(FREE_MAIL)}"
            else:
                from_addr = f"{local}@newfirm{rng.randint(1, 99999)}.test"
            expected = labels[parent["id"] - 1][1]
        elif category == "shared":
            from_name, local = person(rng)
            from_addr = f"{local}{rng.randint(1, 999)}@{rng.choice(pairs)}"
            expected = TRIAGE
        else:  # unknown
            from_name, local = person(rng)
            from_addr = f"{local}@{rng.choice(COMPANY).lower()}{rng.randint(1, 99999)}.test"
            if rng.random() < 0.2:  # a document number nobody issued
                subject += f" FA25{rng.randint(0, 99):02d}-{rng.randint(0, 9999):04d}"
            expected = TRIAGE
        body += f"\nKind regards\n{from_name}\n"
        domain = from_addr.rpartition("@")[2].lower()
        rows.append({
            "id": pos + 1, "raw_sha256": hashlib.sha256(f"bench-match-{seed}-{pos}".encode()).hexdigest(),
            "size": 600 + len(body), "header_message_id": f"<{pos}.{rng.getrandbits(48):012x}@{domain}>",
            "in_reply_to": in_reply_to, "references": references, "subject": subject, "from_name": from_name,
            "from_addr": from_addr, "to_addrs": [["", "sales@example.com"]], "cc_addrs": [], "reply_to": [],
            "date": NOW + timedelta(minutes=pos), "text_body": body, "html_body": "", "parser": "mail-parser",
            "defects": [], "ingested_at": NOW + timedelta(minutes=pos)})
        labels.append((category, expected))
    return rows, labels


# --- timing and scoring ----------------------------------------------------------------------------


def timed_match(db: Database, tmp: Path, label: str, total: int) -> float:
    config = Config.model_validate({"base_dir": tmp, "database": {"url": db.url},
                                    "matching": {"own_domains": ["example.com"], "instance_id": "bench01"}})
    stage = MatchingStage(config, db)
    cpu, started = time.process_time(), time.perf_counter()
    decided = stage.run_all()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if decided != total:
        raise SystemExit(f"{label}: decided {decided} of {total} messages")
    print(f"match {label}: {decided} messages in {elapsed:.2f}s = {decided / elapsed:.0f}/s "
          f"(CPU {cpu:.2f}s)", flush=True)
    return elapsed


def decisions(db: Database) -> dict[int, tuple[str, int | None]]:
    mm = MessageMatch.__table__
    with db.engine.connect() as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute(select(mm.c.message_id, mm.c.status,
                                                                        mm.c.thirdparty_id))}


def score(decided: dict[int, tuple[str, int | None]], labels: list[tuple[str, int | str]]) -> dict[str, Any]:
    per: dict[str, Counter[str]] = {name: Counter() for name in CATEGORIES}
    matched = correct = false_matches = wrong_party = expected_matches = 0
    for message_id, (category, expected) in enumerate(labels, start=1):
        status, tp = decided[message_id]
        counts = per[category]
        counts["count"] += 1
        counts[status] += 1
        expected_matches += expected != TRIAGE
        if status == "matched":
            matched += 1
            if tp == expected:
                correct += 1
                counts["correct"] += 1
            elif expected == TRIAGE:
                false_matches += 1
            else:
                wrong_party += 1
        elif expected == TRIAGE:
            counts["correct"] += 1
    total = len(labels)
    return {"per": per, "matched": matched, "correct": correct, "false_matches": false_matches,
            "wrong_party": wrong_party, "expected_matches": expected_matches,
            "precision": correct / matched if matched else 1.0, "matched_share": matched / total,
            "recall": correct / expected_matches if expected_matches else 1.0,
            "triage_share": (total - matched) / total}


def print_table(result: dict[str, Any]) -> None:
    print(f"  {'category':<17}{'count':>6}{'correct':>9}  matched/ambiguous/unmatched", flush=True)
    for name, c in result["per"].items():
        print(f"  {name:<17}{c['count']:>6}{c['correct']:>9}  {c['matched']}/{c['ambiguous']}/{c['unmatched']}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000, help="third parties in the large directory")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=3, help="match fresh copies this often; the best round counts")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.large < SMALL:
        parser.error(f"--large must be at least {SMALL}")
    shared = shared_domains(SMALL)
    with tempfile.TemporaryDirectory(prefix="maild-bench-match-") as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        messages, labels = make_messages(args.messages, SMALL, shared, args.seed)
        mix = Counter(category for category, _ in labels)
        print(f"{len(messages)} labelled messages: " + ", ".join(f"{k} {v}" for k, v in mix.items()), flush=True)
        small_db, small_counts = build(tmp / "small.db", SMALL, shared, messages)
        print(f"directory A built: {small_counts} in {time.perf_counter() - started:.1f}s", flush=True)
        started = time.perf_counter()
        large_db, large_counts = build(tmp / "large.db", args.large, shared, messages)
        print(f"directory B built: {large_counts} in {time.perf_counter() - started:.1f}s", flush=True)
        del messages

        small_db.dispose()
        large_db.dispose()

        # Each round matches fresh copies of both, the small one first; the best round counts (the
        # machine may be shared: one slow round says nothing about the matcher).
        times: dict[str, list[float]] = {"small": [], "large": []}
        decided: dict[str, dict[int, tuple[str, int | None]]] = {}
        for round_no in range(1, args.rounds + 1):
            for name, parties in (("small", SMALL), ("large", args.large)):
                copy = tmp / f"{name}-run.db"
                shutil.copyfile(tmp / f"{name}.db", copy)
                with copy.open("rb") as handle:  # flushed now, not by SQLite's first checkpoint in the timing
                    os.fsync(handle.fileno())
                db = Database(f"sqlite:///{copy}")
                times[name].append(timed_match(db, tmp, f"{parties:>7,} third parties, round {round_no}",
                                               args.messages))
                found = decisions(db)
                if decided.setdefault(name, found) != found:
                    raise SystemExit(f"{name}: round {round_no} decided differently from round 1")
                db.dispose()
                copy.unlink()
        base_s, large_s = min(times["small"]), min(times["large"])
        print(f"best of {args.rounds}: {args.messages / base_s:.0f}/s with {SMALL:,} third parties, "
              f"{args.messages / large_s:.0f}/s with {args.large:,}", flush=True)

        small_result = score(decided["small"], labels)
        print(f"directory A: precision {small_result['precision']:.4f}, "
              f"false matches {small_result['false_matches']}, wrong party {small_result['wrong_party']}", flush=True)
        result = score(decided["large"], labels)
        print(f"directory B: precision {result['precision']:.4f} ({result['correct']}/{result['matched']} matched "
              f"correctly), recall {result['recall']:.4f}, false matches {result['false_matches']}, "
              f"wrong party {result['wrong_party']}, triage share {result['triage_share']:.4f}", flush=True)
        print_table(result)
    rate, baseline_rate = args.messages / large_s, args.messages / base_s
    print(json.dumps({
        "benchmark": "match",
        "messages": args.messages,
        "thirdparties_small": SMALL,
        "thirdparties_large": args.large,
        "contacts_large": large_counts["contacts"],
        "rate": round(rate, 1),
        "baseline_rate": round(baseline_rate, 1),
        "ratio": round(rate / baseline_rate, 3),
        "precision": round(result["precision"], 4),
        "triage_share": round(result["triage_share"], 4),
        "false_matches": result["false_matches"],
        "matched_share": round(result["matched_share"], 4),
        "recall": round(result["recall"], 4),
        "wrong_party": result["wrong_party"],
        "rounds": args.rounds,
    }))


if __name__ == "__main__":
    main()
