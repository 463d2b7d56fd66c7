"""`maild init`: a working home folder for the embedded default (SQLite + local Maildir)."""

from __future__ import annotations

import secrets
import shutil
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from maild.config import DEFAULT_CONFIG_NAME, load_config
from maild.store.db import Database

SAMPLES = resources.files("maild") / "samples"


def initialise(directory: Path, force: bool = False, samples: bool = True) -> Path:
    directory = directory.resolve()
    config_file = directory / DEFAULT_CONFIG_NAME
    if config_file.exists() and not force:
        raise FileExistsError(f"{config_file} already exists (use --force to overwrite it)")
    directory.mkdir(parents=True, exist_ok=True)
    template = (SAMPLES / "maild.yaml").read_text(encoding="utf-8")
    instance = secrets.token_hex(4)  # ties our tracking ids to this installation
    # Quoted: an id of digits (or like "12e45678") would otherwise be read back as a YAML number.
    config_file.write_text(template.replace("instance_id: maild0 ", f'instance_id: "{instance}"', 1), encoding="utf-8")
    config = load_config(config_file, environ={})
    for sub in ("new", "cur", "tmp"):
        (directory / "maildir" / sub).mkdir(parents=True, exist_ok=True)
    config.blob_dir.mkdir(parents=True, exist_ok=True)
    if samples:
        for sample in sorted(SAMPLES.iterdir()):
            if sample.name.endswith(".eml"):
                with resources.as_file(sample) as path:
                    shutil.copyfile(path, directory / "maildir" / "new" / f"sample-{sample.name[:-4]}.maild")
    secret = directory / "data" / "tracking.secret"
    if not secret.exists():
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(32))
    _install_missing(SAMPLES / "templates", directory / "templates")
    _install_missing(SAMPLES / "rules", config.rules_dir)
    Database(config.database_url).upgrade()
    return config_file


def _install_missing(shipped: Traversable, target: Path) -> None:
    """Copy each shipped template folder / rule file that `target` does not have yet; never overwrite."""
    target.mkdir(parents=True, exist_ok=True)
    with resources.as_file(shipped) as source:
        for item in sorted(source.iterdir()):
            destination = target / item.name
            if destination.exists() or item.name.startswith((".", "__")):
                continue
            if item.is_dir():
                shutil.copytree(item, destination)
            else:
                shutil.copyfile(item, destination)
