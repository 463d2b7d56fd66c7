"""The classification settings of a config (None when `machine_mail.classify` is off)."""

from __future__ import annotations

from maild.classify.base import Settings
from maild.config import Config


def classify_settings(config: Config) -> Settings | None:
    if not config.machine_mail.classify:
        return None
    return Settings(instance_id=config.matching.instance_id, return_path=config.outbound.return_path)
