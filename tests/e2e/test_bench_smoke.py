"""`bench/fleet.py --smoke`: the fleet benchmark still drives the real stack end to end.

It runs the paging phase too: every target made to fail must page the
on-call webhook exactly once. The smoke run keeps its data apart from the test
suite and from a full bench (database watchpost_bench_smoke, Redis databases
10 and 9), so it can run beside either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One smoke run (about a minute) for every test here."""
    report = tmp_path_factory.mktemp("bench") / "fleet.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        [sys.executable, "bench/fleet.py", "--smoke", "--output", str(report)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads(report.read_text())


@pytest.mark.slow
def test_it_probes_every_slot_of_the_smoke_fleet(smoke: dict[str, Any]) -> None:
    assert smoke["probes"]["achieved"] > 0
    assert smoke["probes"]["missed"] == 0, smoke["probes"]
    assert smoke["probes"]["outcomes"] == {"ok": smoke["probes"]["achieved"]}


@pytest.mark.slow
def test_it_pages_once_for_every_target_that_starts_failing(smoke: dict[str, Any]) -> None:
    paging = smoke["paging"]
    assert paging["flipped"] >= 1
    assert paging["not_paged"] == [], paging["monitors"]
    assert paging["paged"] == paging["flipped"]
    assert paging["pages"] == paging["flipped"], "a flipped monitor was paged more than once"
    assert paging["stray_pages"] == 0, "a monitor whose target kept answering was paged"
