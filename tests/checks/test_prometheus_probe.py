"""The prometheus probe against a real /metrics page whose counters move between scrapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from checks.models import Assertion, Monitor, ProbeResult, Region
from checks.probes.prometheus import histogram_quantile
from checks.runner import Run, execute
from checks.services import plan_monitors, record_batch, run_now
from tests.probing import saved_monitor
from tests.targets import HttpTarget, closed_port

pytestmark = pytest.mark.django_db

START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class MetricsApp:
    """A service's own prometheus-client registry, served over HTTP on loopback."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.dropped = Counter("ws_messages_dropped", "dropped", registry=self.registry)
        self.tasks = Counter("worker_task", "tasks", ["status", "queue"], registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds",
            "latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/metrics"

    def restart_counter(self) -> None:
        """What a redeploy does to a counter: it starts again from zero."""
        self.registry.unregister(self.dropped)
        self.dropped = Counter("ws_messages_dropped", "dropped", registry=self.registry)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app() -> Iterator[MetricsApp]:
    served = MetricsApp()
    yield served
    served.close()


def metrics_monitor(url: str, *series: dict[str, object], **options: object) -> Monitor:
    return saved_monitor("prometheus", url, "metrics", options={"series": list(series), **options})


class Scraper:
    """Scrapes like the probe_batch task does, one interval apart, keeping what it remembers."""

    def __init__(self, monitor: Monitor, interval: int = 60) -> None:
        self.monitor, self.interval, self.at = monitor, timedelta(seconds=interval), START

    def __call__(self) -> tuple[str, str]:
        region = Region.default()
        with time_machine.travel(self.at, tick=False):
            plans = plan_monitors([self.monitor.pk], region)
            runs = execute([Run(plans[self.monitor.pk].spec, self.at)], 1)
            record_batch(plans, runs, region)
        result = ProbeResult.objects.get(monitor=self.monitor, scheduled_at=self.at)
        self.at += self.interval
        return result.outcome, result.reason


def test_it_alerts_when_a_counter_that_must_not_grow_grows(app: MetricsApp) -> None:
    scrape = Scraper(
        metrics_monitor(
            app.url, {"selector": "ws_messages_dropped_total", "mode": "increase", "critical": 0}
        )
    )
    app.dropped.inc(7)  # dropped before we started watching: not this interval's problem
    outcome, reason = scrape()
    assert outcome == "ok"
    assert reason.startswith("first scrape, baseline taken for ws_messages_dropped_total increase")
    outcome, reason = scrape()
    assert outcome == "ok"
    assert reason.startswith("ws_messages_dropped_total increase 0; scraped in ")
    app.dropped.inc(3)
    assert scrape() == ("critical", "ws_messages_dropped_total increase 3 > 0")
    assert scrape()[0] == "ok"


def test_it_counts_a_restarted_counter_from_zero(app: MetricsApp) -> None:
    scrape = Scraper(
        metrics_monitor(
            app.url, {"selector": "ws_messages_dropped_total", "mode": "increase", "critical": 0}
        )
    )
    app.dropped.inc(10)
    scrape()
    app.restart_counter()
    app.dropped.inc(2)
    assert scrape() == ("critical", "ws_messages_dropped_total increase 2 > 0")


def test_it_judges_a_failure_rate_summed_over_label_sets(app: MetricsApp) -> None:
    failures = 'worker_task_total{status="failure"}'
    scrape = Scraper(
        metrics_monitor(
            app.url, {"selector": failures, "mode": "rate", "warning": 0.01, "critical": "0.1"}
        )
    )
    app.tasks.labels("success", "default").inc(500)
    assert scrape()[0] == "ok"
    # No task has failed yet, so the failure series is not even on the page: that is 0.
    outcome, reason = scrape()
    assert outcome == "ok"
    assert reason.startswith(f"{failures} rate 0; ")
    app.tasks.labels("failure", "default").inc(2)
    app.tasks.labels("failure", "probes").inc(1)
    assert scrape() == ("warning", f"{failures} rate 0.05 > 0.01")
    app.tasks.labels("failure", "probes").inc(12)
    assert scrape() == ("critical", f"{failures} rate 0.2 > 0.1")


def test_it_judges_p95_latency_over_the_requests_since_the_last_scrape(app: MetricsApp) -> None:
    scrape = Scraper(
        metrics_monitor(
            app.url,
            {
                "name": "API p95 latency (s)",
                "selector": 'http_request_duration_seconds{route="/api"}',
                "mode": "quantile",
                "quantile": 0.95,
                "warning": 0.25,
                "critical": 0.5,
            },
        )
    )
    api, health = app.latency.labels("/api"), app.latency.labels("/health")
    for _ in range(900):
        api.observe(0.03)
    assert scrape()[0] == "ok"
    for _ in range(100):
        api.observe(0.03)
        health.observe(2.0)  # another route: not selected
    outcome, reason = scrape()
    assert outcome == "ok"
    assert reason.startswith("API p95 latency (s) 0.0475; ")
    for _ in range(100):
        api.observe(0.8)
    assert scrape() == ("critical", "API p95 latency (s) 0.975 > 0.5")
    # Fast again: the slow minute no longer counts, although it does in the lifetime buckets.
    for _ in range(100):
        api.observe(0.03)
    assert scrape()[0] == "ok"
    # A quiet minute has no p95 of its own; the last one stands, and says so.
    outcome, reason = scrape()
    assert outcome == "ok"
    assert "API p95 latency (s) 0.0475; no new observations since the last scrape" in reason


def test_it_interpolates_quantiles_as_prometheus_does() -> None:
    buckets = {"0.1": 10, "0.5": 20, "1.0": 20, "+Inf": 20}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.3)
    # Ranked into the +Inf bucket: Prometheus answers the highest finite bound.
    assert histogram_quantile(0.99, {**buckets, "+Inf": 22}) == 1.0
    assert histogram_quantile(0.95, {"0.1": 0, "+Inf": 0}) is None
    assert histogram_quantile(0.95, {"0.1": 3}) is None


def test_it_names_a_missing_series(app: MetricsApp) -> None:
    scrape = Scraper(
        metrics_monitor(
            app.url,
            {"selector": "queue_depth", "critical": 100},
            {"selector": "ws_mesages_dropped_total", "mode": "increase", "critical": 0},
        )
    )
    outcome, reason = scrape()
    assert (outcome, reason) == ("critical", "queue_depth is missing")
    assert scrape() == (
        "critical",
        "queue_depth is missing; ws_mesages_dropped_total increase is missing",
    )


def test_it_feeds_a_named_series_to_the_monitors_own_thresholds(app: MetricsApp) -> None:
    app.tasks.labels("success", "default").inc(40)
    monitor = metrics_monitor(
        app.url, {"name": "tasks done", "selector": 'worker_task_total{status!="failure"}'}
    )
    run, verdict = run_now(monitor)
    assert run.observation.values["metric"] == {"tasks done": 40}
    assert verdict.outcome == "ok"
    Assertion.objects.create(
        monitor=monitor, source="metric", selector="tasks done", operator="ge", critical_value="50"
    )
    assert run_now(monitor)[1].reason == "tasks done 40 < 50"


def test_it_takes_a_new_baseline_when_the_target_changes(app: MetricsApp) -> None:
    other = MetricsApp()
    try:
        monitor = metrics_monitor(
            app.url, {"selector": "ws_messages_dropped_total", "mode": "increase", "critical": 0}
        )
        scrape = Scraper(monitor)
        scrape()
        other.dropped.inc(1000)
        monitor.target = other.url
        monitor.save()
        assert scrape()[1].startswith("first scrape, baseline taken")
    finally:
        other.close()


@pytest.mark.usefixtures("http_client")  # both HTTP clients fetch alike
def test_it_reports_an_endpoint_that_is_not_a_metrics_page(target: HttpTarget) -> None:
    series = {"selector": "up", "critical": 1, "op": "eq"}
    target.route("/metrics", status=401, body="unauthorized")
    assert run_now(metrics_monitor(target.url("/metrics"), series))[1].reason == (
        "the metrics endpoint answered HTTP 401"
    )
    target.route("/metrics", body="<html><body>Login</body></html>")
    verdict = run_now(metrics_monitor(target.url("/metrics"), series))[1]
    assert verdict.outcome == "error"
    assert verdict.reason.startswith("not a Prometheus metrics page (")
    port = closed_port()
    verdict = run_now(metrics_monitor(f"http://127.0.0.1:{port}/metrics", series))[1]
    assert verdict.reason == f"connection refused by 127.0.0.1:{port}"


@pytest.mark.usefixtures("http_client")  # both HTTP clients fetch alike
def test_it_sends_credentials_and_reads_openmetrics(target: HttpTarget) -> None:
    target.route(
        "/metrics",
        body="# TYPE up gauge\nup 1\n# EOF\n",
        headers={"Content-Type": "application/openmetrics-text; version=1.0.0"},
    )
    monitor = metrics_monitor(
        target.url("/metrics"), {"selector": "up", "critical": 1, "op": "eq"}, bearer_token="s3cret"
    )
    assert run_now(monitor)[1].outcome == "ok"
    assert target.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"


def test_it_names_each_bad_option() -> None:
    monitor = Monitor(
        name="bad",
        kind="prometheus",
        target="ftp://example.com/metrics",
        options={
            "series": [
                {"selector": "x{status=failure}"},
                {"selector": "x", "mode": "median"},
                {"selector": "h", "mode": "quantile", "quantile": 95},
                {"selector": "y", "warning": 10, "critical": 5},
                {"selector": "z", "critical": "lots", "colour": "red"},
                {"selector": "y"},
                {"selector": "y"},
            ],
            "scrape": "fast",
        },
    )
    with pytest.raises(ValidationError) as caught:
        monitor.full_clean()
    errors = caught.value.message_dict
    assert errors["target"] == [
        "must be the http:// or https:// URL of a metrics page, "
        "e.g. http://api.internal:8000/metrics"
    ]
    options = " | ".join(errors["options"])
    assert "scrape: unknown option" in options
    assert "series[1]: selector cannot read the labels at 'status=failure'" in options
    assert "series[2]: mode must be one of value, increase, rate, quantile" in options
    assert "series[3]: quantile must be a number between 0 and 1" in options
    assert "series[4]: warning must be below critical" in options
    assert "series[5]: unknown key 'colour'" in options
    assert "series[5]: critical must be a number, got 'lots'" in options
    assert "series[7]: name 'y' is used twice" in options
    empty = Monitor(name="empty", kind="prometheus", target="http://127.0.0.1/metrics")
    with pytest.raises(ValidationError, match="series: list at least one series"):
        empty.full_clean()
