"""What every folder worker shares: database, pipeline, settings, this daemon's identity, the stop flag, and the
daemon's lease keeper and filing watcher for workers that wait."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maild.config import IngestConfig
from maild.filing.watcher import FilingWatcher
from maild.ingest.leases import LeaseKeeper
from maild.ingest.pipeline import Pipeline
from maild.matchers.stage import MatchingStage
from maild.store.db import Database
from maild.wakeup import StopFlag


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class IngestContext:
    db: Database
    pipeline: Pipeline
    settings: IngestConfig
    base_dir: Path
    owner: str = field(default_factory=new_owner_id)
    stop: StopFlag = field(default_factory=StopFlag)
    # Called as a pass goes on with (worker label, messages just handled, messages newly found waiting).
    progress: Callable[[str, int, int], None] | None = None
    # Decides stored messages (third party, triage) and plans their filing; None: ingest only.
    matching: MatchingStage | None = None
    # Renews the leases of waiting workers in one statement (`maild run`); None: each worker renews its own.
    leases: LeaseKeeper | None = None
    # Wakes waiting workers whose folder has filing planned (`maild run`); None: filing waits for the next pass.
    filing_watch: FilingWatcher | None = None
