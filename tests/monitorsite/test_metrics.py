"""/metrics as Prometheus scrapes it: one total for the whole fleet."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from monitorsite import metrics
from monitorsite.models import MetricValue

REPO = Path(__file__).resolve().parents[2]


def scrape(client: Client, **headers: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_it_parses_and_lists_the_required_metrics(client: Client, transactional_db: None) -> None:
    response = client.get("/metrics")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "watchpost_probes",
        "watchpost_probe_duration_seconds",
        "watchpost_dispatch_lag_seconds",
        "watchpost_queue_depth",
        "watchpost_open_incidents",
        "watchpost_notification_failures",
        "watchpost_workers_alive",
    } <= names


def test_it_sums_counts_from_several_processes(client: Client, transactional_db: None) -> None:
    one, two = metrics.Recorder(), metrics.Recorder()
    one.inc(metrics.PROBES, {"kind": "http", "outcome": "ok"}, 3)
    two.inc(metrics.PROBES, {"kind": "http", "outcome": "ok"}, 2)
    two.inc(metrics.PROBES, {"kind": "tcp", "outcome": "critical"})
    one.flush()
    two.flush()
    probes = scrape(client)["watchpost_probes_total"]
    assert probes[(("kind", "http"), ("outcome", "ok"))] == 5
    assert probes[(("kind", "tcp"), ("outcome", "critical"))] == 1


def test_it_counts_what_another_os_process_flushed(client: Client, transactional_db: None) -> None:
    # A Celery worker is another process (often another host): its counts
    # must reach every web process through the shared store.
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from monitorsite import metrics
        metrics.inc(metrics.NOTIFICATION_FAILURES, {"channel_kind": "slack"}, 4)
        metrics.flush()
        """
    )
    settings_dict = connection.settings_dict
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "monitorsite.settings",
        "DATABASE_URL": f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}",
        "WATCHPOST_DATA_DIR": str(REPO / "var"),
    }
    subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, check=True, timeout=60)
    failures = scrape(client)["watchpost_notification_failures_total"]
    assert failures[(("channel_kind", "slack"),)] == 4


def test_it_exposes_histograms_with_cumulative_buckets(
    client: Client, transactional_db: None
) -> None:
    for seconds in (0.004, 0.2, 0.2, 3.0):
        metrics.observe(metrics.PROBE_DURATION, seconds, {"kind": "http"})
    metrics.flush()
    samples = scrape(client)
    buckets = samples["watchpost_probe_duration_seconds_bucket"]
    assert buckets[(("kind", "http"), ("le", "0.005"))] == 1
    assert buckets[(("kind", "http"), ("le", "0.25"))] == 3
    assert buckets[(("kind", "http"), ("le", "2.5"))] == 3
    assert buckets[(("kind", "http"), ("le", "+Inf"))] == 4
    assert samples["watchpost_probe_duration_seconds_count"][(("kind", "http"),)] == 4
    assert samples["watchpost_probe_duration_seconds_sum"][(("kind", "http"),)] == pytest.approx(
        3.404
    )


def test_it_keeps_counts_when_the_database_refuses_a_flush(transactional_db: None) -> None:
    recorder = metrics.Recorder()
    recorder.inc(metrics.PROBES, {"kind": "http", "outcome": "ok"}, 7)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE monitorsite_metricvalue RENAME TO monitorsite_metricvalue_away")
    try:
        assert recorder.flush() == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE monitorsite_metricvalue_away RENAME TO monitorsite_metricvalue"
            )
    recorder.inc(metrics.PROBES, {"kind": "http", "outcome": "ok"}, 1)
    assert recorder.flush() == 1
    assert MetricValue.objects.get(name="watchpost_probes_total").value == 8


def test_it_refuses_labels_that_do_not_match_the_definition() -> None:
    with pytest.raises(ValueError, match="labels must be"):
        metrics.inc(metrics.PROBES, {"kind": "http"})


@override_settings(METRICS_TOKEN="s3cret-token")
def test_it_asks_for_the_bearer_token_when_one_is_set(
    client: Client, transactional_db: None
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
