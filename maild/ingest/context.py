"""What every folder worker shares: database, pipeline, settings, this daemon's identity, the stop flag."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maild.config import IngestConfig
from maild.ingest.pipeline import Pipeline
from maild.matchers.stage import MatchingStage
from maild.store.db import Database


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class IngestContext:
    db: Database
    pipeline: Pipeline
    settings: IngestConfig
    base_dir: Path
    owner: str = field(default_factory=new_owner_id)
    stop: threading.Event = field(default_factory=threading.Event)
    # Called as a pass goes on with (worker label, messages just handled, messages newly found waiting).
    progress: Callable[[str, int, int], None] | None = None
    # Decides stored messages (third party, triage) and plans their filing; None: ingest only.
    matching: MatchingStage | None = None
