"""`maild init`: a working home folder for the embedded default (SQLite + local Maildir)."""

from __future__ import annotations

import secrets
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from maild.config import DEFAULT_CONFIG_NAME, load_config
from maild.permissions import private_dir, write_private
from maild.store.db import Database

SAMPLES = resources.files("maild") / "samples"


def initialise(directory: Path, force: bool = False, samples: bool = True) -> Path:
    """Write DIRECTORY's config, Maildir, data folder, secret, templates and rules, and create the schema. What
    it creates is owner-only (folders 0700, files 0600): the home holds all mail and the secrets."""
    directory = directory.resolve()
    config_file = directory / DEFAULT_CONFIG_NAME
    if config_file.exists() and not force:
        raise FileExistsError(f"{config_file} already exists (use --force to overwrite it)")
    private_dir(directory)
    template = (SAMPLES / "maild.yaml").read_text(encoding="utf-8")
    instance = secrets.token_hex(4)  # ties our tracking ids to this installation
    # Quoted: an id of digits (or like "12e45678") would otherwise be read back as a YAML number.
    write_private(config_file, template.replace("instance_id: maild0 ", f'instance_id: "{instance}"', 1).encode())
    config = load_config(config_file, environ={})
    for sub in ("new", "cur", "tmp"):
        private_dir(directory / "maildir" / sub)
    private_dir(config.blob_dir)
    if samples:
        for sample in sorted(SAMPLES.iterdir()):
            if sample.name.endswith(".eml"):
                target = directory / "maildir" / "new" / f"sample-{sample.name[:-4]}.maild"
                write_private(target, sample.read_bytes())
    secret = directory / "data" / "tracking.secret"
    if not secret.exists():
        private_dir(secret.parent)
        write_private(secret, secrets.token_urlsafe(32).encode())
    _install_missing(SAMPLES / "templates", directory / "templates")
    _install_missing(SAMPLES / "rules", config.rules_dir)
    database = Database(config.database_url)
    try:
        database.upgrade()
        if samples:
            install_sample_directory(database)
    finally:
        database.dispose()
    return config_file


def install_sample_directory(database: Database) -> None:
    """The third parties, contacts and documents the sample mail belongs to (samples/directory/*.csv, upserted by
    external id, so a second `init --force` changes nothing): the demo shows matching at work."""
    from maild.directory.csv_import import ENTITIES, import_csv

    for entity in ENTITIES:  # third parties first: contacts and documents name theirs
        with resources.as_file(SAMPLES / "directory" / f"{entity}.csv") as path:
            report = import_csv(database, entity, path)
        if report.rejected:
            line, reason = report.rejected[0]
            raise ValueError(f"sample {entity}.csv:{line}: {reason}")


def _install_missing(shipped: Traversable, target: Path) -> None:
    """Copy each shipped template folder / rule file that `target` does not have yet; never overwrite."""
    private_dir(target)
    for item in sorted(shipped.iterdir(), key=lambda entry: entry.name):
        destination = target / item.name
        if not (destination.exists() or item.name.startswith((".", "__"))):
            _copy_private(item, destination)


def _copy_private(item: Traversable, destination: Path) -> None:
    if item.is_dir():
        private_dir(destination)
        for child in item.iterdir():
            if not child.name.startswith((".", "__")):
                _copy_private(child, destination / child.name)
    else:
        write_private(destination, item.read_bytes())
