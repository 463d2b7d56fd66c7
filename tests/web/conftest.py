from __future__ import annotations

from pathlib import Path

import pytest

from maild.store.db import Database
from tests.web.support import Site, make_site


@pytest.fixture
def site(tmp_path: Path, db: Database) -> Site:
    return make_site(tmp_path, db)
