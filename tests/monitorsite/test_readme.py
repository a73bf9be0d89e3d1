"""README.md stays true: the two commands, and every setting an operator can set."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_it_documents_every_variable_in_env_example() -> None:
    readme = (REPO / "README.md").read_text()
    names = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    names = {name.removesuffix("_FILE") for name in names}
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert missing == []


def test_it_shows_the_two_commands_and_ci_runs_the_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
