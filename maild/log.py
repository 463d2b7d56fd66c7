"""Logging setup: one line per record, as `key=value` text or JSON, with structured fields.

Call sites pass fields as `extra={"fields": {...}}`; secrets are never among them.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


class _FieldsFormatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        when = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        if self.as_json:
            payload = {"time": when, "level": record.levelname.lower(), "logger": record.name,
                       "msg": record.getMessage(), **fields}
            if record.exc_info:
                payload["exc"] = self.formatException(record.exc_info)
            return json.dumps(payload, default=str, ensure_ascii=False)
        parts = [when, record.levelname.lower(), record.name, record.getMessage()]
        parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _quote(value: Any) -> str:
    text = "" if value is None else str(value)
    if not text or any(ch in text for ch in ' "=\n\r\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FieldsFormatter(as_json=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("mailparser", "imapclient", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
