"""`bench/fleet.py --smoke`: the fleet benchmark still drives the real stack end to end.

The smoke run keeps its data apart from the test suite and from a full bench
(database watchpost_bench_smoke, Redis databases 10 and 9), so it can run
beside either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_it_probes_every_slot_of_the_smoke_fleet(tmp_path: Path) -> None:
    report = tmp_path / "fleet.json"
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
    result = json.loads(report.read_text())
    assert result["probes"]["achieved"] > 0
    assert result["probes"]["missed"] == 0, result["probes"]
    assert result["probes"]["outcomes"] == {"ok": result["probes"]["achieved"]}
