"""The key that signs session cookies: from web.secret_env, else web.secret_file (created owner-only when missing)."""

from __future__ import annotations

import os
import secrets

from maild.config import Config, ConfigError, resolve_path
from maild.permissions import private_dir, write_private

MIN_BYTES = 16


def load_web_secret(config: Config) -> bytes:
    cfg = config.web
    if cfg.secret_env:
        value = os.environ.get(cfg.secret_env)
        if not value:
            raise ConfigError(f"web.secret_env: environment variable {cfg.secret_env} is not set")
    else:
        path = resolve_path(config.base_dir, cfg.secret_file)
        if not path.exists():
            private_dir(path.parent)
            write_private(path, secrets.token_urlsafe(32).encode())
        value = path.read_text(encoding="utf-8").strip()
    if len(value.encode()) < MIN_BYTES:
        raise ConfigError(f"web secret: at least {MIN_BYTES} bytes needed")
    return value.encode()
