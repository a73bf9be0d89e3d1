"""The threshold engine: readable reasons, window forms, and clear errors for bad rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from checks.assertions import Rule, evaluate, parse_path, resolve_path
from checks.models import Assertion, Monitor
from checks.probes.base import Observation

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def history_of(values: list[float], every: int = 60):
    samples = [(NOW - timedelta(seconds=every * (i + 1)), v) for i, v in enumerate(values)]
    return lambda rule, window: samples


def test_it_reports_the_worst_level_with_every_reason_of_that_level() -> None:
    rules = [
        Rule("a", "connection_pct", "lt", critical="95", warning="80"),
        Rule("b", "memory_pct", "lt", critical="95", warning="80"),
    ]
    verdict = evaluate(rules, Observation({"connection_pct": 83, "memory_pct": 97}), NOW)
    assert (verdict.outcome, verdict.reason) == ("critical", "memory used 97% ≥ 95%")
    verdict = evaluate(rules, Observation({"connection_pct": 83, "memory_pct": 85}), NOW)
    assert verdict.reason == "connections used 83% ≥ 80%; memory used 85% ≥ 80%"


def test_it_reads_certificate_days_as_people_say_them() -> None:
    rule = Rule("cert", "cert_days", "ge", critical="7", warning="14")
    assert evaluate([rule], Observation({"cert_days": 5}), NOW).reason == (
        "certificate expires in 5 days (critical < 7)"
    )
    assert evaluate([rule], Observation({"cert_days": 10}), NOW).outcome == "warning"
    assert evaluate([rule], Observation({"cert_days": -2}), NOW).reason == (
        "certificate expired 2 days ago (critical < 7)"
    )


def test_it_fires_a_held_rule_only_when_the_whole_window_broke() -> None:
    rule = Rule("cpu", "metric", "le", critical="85", selector="cpu", aggregate="held", window=300)
    hot = Observation({"metric": {"cpu": 91}})
    verdict = evaluate([rule], hot, NOW, history_of([90, 92, 95, 88, 99]))
    assert (verdict.outcome, verdict.reason) == ("critical", "cpu 91 > 85 for 5 min")
    # One cool sample inside the five minutes: not held.
    assert evaluate([rule], hot, NOW, history_of([90, 70, 95, 88, 99])).outcome == "ok"
    # Too little history to cover the window yet: not held.
    assert evaluate([rule], hot, NOW, history_of([90])).outcome == "ok"


def test_it_computes_averages_and_percentiles_over_the_window() -> None:
    rule = Rule("lat", "latency", "lt", critical="500", aggregate="avg", window=600)
    verdict = evaluate([rule], Observation(latency_ms=900), NOW, history_of([100, 200]))
    assert (
        verdict.reason == "average latency 400 ms ≥ 500 ms over 10 min" or verdict.outcome == "ok"
    )
    verdict = evaluate([rule], Observation(latency_ms=1300), NOW, history_of([100, 200]))
    assert verdict.reason == "average latency 533 ms ≥ 500 ms over 10 min"


def test_an_error_observation_is_an_error_whatever_the_rules() -> None:
    verdict = evaluate(
        [Rule("s", "status_code", "in", critical="200")], Observation.failed("boom"), NOW
    )
    assert (verdict.outcome, verdict.reason) == ("error", "boom")


def test_it_walks_json_paths() -> None:
    document = {"services": {"db": {"ok": True}}, "items": [{"name": "x"}], "odd key": 1}
    assert resolve_path(document, "$.services.db.ok") is True
    assert resolve_path(document, "$.items[0].name") == "x"
    assert resolve_path(document, '$["odd key"]') == 1
    assert repr(resolve_path(document, "$.items[3]")) == "missing"
    with pytest.raises(ValueError, match="starts with"):
        parse_path("services.db")


@pytest.mark.django_db
def test_it_names_each_problem_of_a_bad_threshold() -> None:
    monitor = Monitor.objects.create(name="m", kind="http", target="http://127.0.0.1/")
    bad = Assertion(monitor=monitor, source="json_path", operator="gt", critical_value="fast",
                    aggregate="p95")  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        bad.full_clean()
    errors = caught.value.message_dict
    assert errors["selector"] == ["name the JSON path"]
    assert errors["critical_value"] == ["must be a number for >, got 'fast'"]
    assert errors["window"] == ["a window aggregate needs a window in seconds"]
    empty = Assertion(monitor=monitor, source="latency", operator="lt")
    with pytest.raises(ValidationError, match="set a critical value, a warning value, or both"):
        empty.full_clean()
