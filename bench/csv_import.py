"""CSV import benchmark: N third parties (with a domain, an address, tags and a custom field), then N contacts.

Writes the two files into a temp dir, imports them into a fresh SQLite database (or `--db URL`, which must be
empty and migrated by this script), then imports the third parties again (all updates). The last line printed
is JSON: rows, seconds for each pass and rows per second.

    .venv/bin/python bench/csv_import.py [--rows 100000] [--db postgresql://...]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maild.directory.csv_import import import_csv  # noqa: E402
from maild.store.db import Database  # noqa: E402


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    thirdparties, contacts = folder / "thirdparties.csv", folder / "contacts.csv"
    with thirdparties.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "name", "kind", "tags", "domains", "addresses", "custom.note"])
        for n in range(rows):
            writer.writerow([f"C-{n}", f"Company {n}", "customer", "vip;north", f"c{n}.example",
                             f"info@c{n}.example", f"note {n}\nsecond line"])
    with contacts.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "thirdparty", "name", "addresses", "phones", "role"])
        for n in range(rows):
            writer.writerow([f"P-{n}", f"C-{n}", f"Person {n}", f"p{n}@c{n}.example", "+44 1", "buyer"])
    return thirdparties, contacts


def timed(db: Database, entity: str, path: Path) -> float:
    start = time.perf_counter()
    report = import_csv(db, entity, path)
    seconds = time.perf_counter() - start
    if report.rejected:
        raise SystemExit(f"{entity}: {len(report.rejected)} rejected, first: {report.rejected[0]}")
    print(f"{entity}: {report.inserted} inserted, {report.updated} updated in {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = Database(args.db or f"sqlite:///{folder / 'bench.db'}")
        db.upgrade()
        thirdparties, contacts = write_files(folder, args.rows)
        first = timed(db, "thirdparties", thirdparties)
        people = timed(db, "contacts", contacts)
        again = timed(db, "thirdparties", thirdparties)
        db.dispose()
    print(json.dumps({"rows": args.rows, "thirdparties_s": round(first, 2), "contacts_s": round(people, 2),
                      "thirdparties_again_s": round(again, 2),
                      "rows_per_s": round(args.rows / max(first, 1e-9))}))


if __name__ == "__main__":
    main()
