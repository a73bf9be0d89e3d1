from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.targets import HttpTarget


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    server = HttpTarget()
    yield server
    server.close()
