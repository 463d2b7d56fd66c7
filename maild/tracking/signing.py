"""Signed values for the open pixel and click links: `o.<token>.<sig>` and `c.<token>.<link>.<sig>`.

The signature is HMAC-SHA256 over the rest of the value (with a domain-separation prefix), truncated to
128 bits and base64url-encoded, so a value is URL-safe and short. Changing any character of the kind,
the token, the link index or the signature makes `verify` return None.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from pathlib import Path
from typing import Literal

from maild.config import ConfigError, TrackingConfig, read_secret, resolve_path

Kind = Literal["o", "c"]

MIN_SECRET_BYTES = 16
_CONTEXT = b"maild-tracking-v1\x00"
_SIG_BYTES = 16
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LINK = re.compile(r"0|[1-9][0-9]{0,8}")
_SIG = re.compile(r"[A-Za-z0-9_-]{22}")


def _mac(secret: bytes, payload: str) -> str:
    digest = hmac.digest(secret, _CONTEXT + payload.encode("ascii"), hashlib.sha256)[:_SIG_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(secret: bytes, kind: Kind, token: str, link: int | None) -> str:
    """The signed, URL-safe value for an open (kind "o", link None) or a click on link `link` (kind "c")."""
    if not secret:
        raise ValueError("empty tracking secret")
    if not _TOKEN.fullmatch(token):
        raise ValueError("token must be 1-64 characters of A-Z a-z 0-9 _ -")
    if kind == "o":
        if link is not None:
            raise ValueError("an open value has no link index")
        payload = f"o.{token}"
    elif kind == "c":
        if link is None or isinstance(link, bool) or not isinstance(link, int) or not _LINK.fullmatch(str(link)):
            raise ValueError("a click value needs a link index 0..999999999")
        payload = f"c.{token}.{link}"
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return f"{payload}.{_mac(secret, payload)}"


def key_id(secret: bytes) -> str:
    """A short public fingerprint of the secret (it reveals nothing of it): two endpoints with the same id share it."""
    return _mac(secret, "key-id")[:12]


def verify(secret: bytes, value: str) -> tuple[Kind, str, int | None] | None:
    """(kind, token, link) of a value made by `sign` with this secret; None for anything else."""
    if not secret or not isinstance(value, str) or len(value) > 200 or not value.isascii():
        return None
    payload, dot, sig = value.rpartition(".")
    if not dot or not _SIG.fullmatch(sig):
        return None
    if not hmac.compare_digest(_mac(secret, payload), sig):
        return None
    parts = payload.split(".")
    if len(parts) == 2 and parts[0] == "o" and _TOKEN.fullmatch(parts[1]):
        return "o", parts[1], None
    if len(parts) == 3 and parts[0] == "c" and _TOKEN.fullmatch(parts[1]) and _LINK.fullmatch(parts[2]):
        return "c", parts[1], int(parts[2])
    return None


def load_secret(cfg: TrackingConfig, base_dir: Path) -> bytes:
    """The signing secret from `secret_env` (if set in the environment), else `secret_file`.

    Raises ConfigError (naming the variable or file, never the value) when tracking is enabled and no
    usable secret is found; returns b"" when tracking is disabled and none is configured.
    """
    where: list[str] = []
    if cfg.secret_env:
        where.append(f"environment variable {cfg.secret_env}")
        value = os.environ.get(cfg.secret_env, "").strip()
        if value:
            return _checked(value.encode("utf-8"), f"environment variable {cfg.secret_env}")
    if cfg.secret_file:
        path = resolve_path(base_dir, cfg.secret_file)
        where.append(f"secret_file {path}")
        try:  # the one bounded reader of secret files: regular files of at most a few KiB
            value = read_secret("tracking", None, cfg.secret_file, base_dir, file_key="secret_file") or ""
        except ConfigError:
            if cfg.enabled:
                raise
            return b""
        if value:
            return _checked(value.encode("utf-8"), f"secret_file {path}")
    if not cfg.enabled:
        return b""
    tried = " or ".join(where) if where else "nothing (set tracking.secret_env or tracking.secret_file)"
    raise ConfigError(f"tracking is enabled but no signing secret is set; looked in {tried}")


def _checked(secret: bytes, where: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"tracking: the secret in {where} is too short (at least {MIN_SECRET_BYTES} bytes)")
    return secret
