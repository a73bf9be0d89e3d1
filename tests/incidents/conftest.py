from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def static_files(collected_static: Path) -> Path:
    """The acknowledge page and the admin pages name hashed static files."""
    return collected_static
