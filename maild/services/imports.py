"""CSV imports (directory and business entities) with one audit entry per import, in the import's transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import Connection

from maild.business import ENTITIES as BUSINESS_ENTITIES
from maild.business import csv_import as business_import
from maild.directory import csv_import as directory_import
from maild.directory.csv_rows import ImportOptions, ImportReport
from maild.services import audit
from maild.services.actor import Actor
from maild.store.db import Database


def import_file(db: Database, actor: Actor, entity: str, path: Path, columns: Mapping[str, str], delimiter: str,
                options: ImportOptions, settings: business_import.ImportSettings | None = None) -> ImportReport:
    """Import `path` as `entity` (maild.directory.csv_import or maild.business.csv_import); when rows are stored,
    `import.<entity>` is audited with the file's name and the counts. Nothing stored: no entry."""
    actor.require("staff")

    def record(conn: Connection, report: ImportReport) -> None:
        audit.record(conn, actor, f"import.{entity}", f"file:{path.name}",
                     after={"file": str(path), "entity": entity, "inserted": report.inserted,
                            "updated": report.updated, "rejected": len(report.rejected),
                            "skip_invalid": options.skip_invalid})

    audited = dataclasses.replace(options, before_commit=record)
    if entity in BUSINESS_ENTITIES:
        return business_import.import_csv(db, entity, path, columns, delimiter, settings, audited)
    return directory_import.import_csv(db, entity, path, columns, delimiter, audited)
