"""Prometheus metrics that are correct across processes and hosts.

Celery workers and gunicorn workers are separate processes, often on separate
machines, so in-process prometheus-client counters would each see a fraction.
Instead a process accumulates deltas in memory and adds them to the database in
one upsert (after each task); `/metrics` on any web process reads the totals.
Gauges that describe the present (queue depth, live workers, open incidents)
are computed when scraped. bench/metrics_store.py measures the cost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import DatabaseError, connection
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class MetricDef:
    name: str
    documentation: str
    labelnames: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()  # set for histograms

    @property
    def is_histogram(self) -> bool:
        return bool(self.buckets)

    def key(self, labels: dict[str, str]) -> tuple[str, ...]:
        missing = set(self.labelnames) - labels.keys()
        extra = labels.keys() - set(self.labelnames)
        if missing or extra:
            raise ValueError(f"{self.name}: labels must be {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)


DEFINITIONS: dict[str, MetricDef] = {}


def define(
    name: str, documentation: str, labelnames: tuple[str, ...] = (), buckets: tuple[float, ...] = ()
) -> MetricDef:
    metric = MetricDef(name, documentation, labelnames, buckets)
    DEFINITIONS[name] = metric
    return metric


PROBES = define("watchpost_probes_total", "Probes run, by kind and outcome.", ("kind", "outcome"))
PROBE_DURATION = define(
    "watchpost_probe_duration_seconds", "Time a probe took, by kind.", ("kind",), LATENCY_BUCKETS
)
DISPATCH_LAG = define(
    "watchpost_dispatch_lag_seconds",
    "Actual probe start minus its scheduled slot.",
    (),
    LAG_BUCKETS,
)
NOTIFICATION_FAILURES = define(
    "watchpost_notification_failures_total",
    "Notification deliveries that failed, by channel kind.",
    ("channel_kind",),
)


@dataclass
class Recorder:
    """Deltas this process has observed and not yet added to the shared totals."""

    # (series name, label values) -> delta; labels are encoded only when flushed.
    pending: dict[tuple[str, tuple[str, ...]], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(
        self, metric: MetricDef, labels: dict[str, str] | None = None, amount: float = 1.0
    ) -> None:
        if metric.is_histogram:
            raise ValueError(f"{metric.name} is a histogram: use observe()")
        key = metric.key(labels or {})
        with self.lock:
            self.pending[(metric.name, key)] += amount

    def observe(
        self, metric: MetricDef, value: float, labels: dict[str, str] | None = None
    ) -> None:
        if not metric.is_histogram:
            raise ValueError(f"{metric.name} is not a histogram: use inc()")
        values = metric.key(labels or {})
        bucket = f"{metric.name}_bucket"
        with self.lock:
            # Buckets are stored cumulative, as Prometheus exposes them.
            for bound in metric.buckets:
                if value <= bound:
                    self.pending[(bucket, (*values, str(bound)))] += 1
            self.pending[(f"{metric.name}_count", values)] += 1
            self.pending[(f"{metric.name}_sum", values)] += value

    def flush(self) -> int:
        """Add pending deltas to the shared totals; returns how many series were written.

        On a database error the deltas are kept for the next flush, so nothing
        a worker counted is lost while the database is briefly away.
        """
        with self.lock:
            batch, self.pending = self.pending, defaultdict(float)
        if not batch:
            return 0
        # A fixed order means two processes flushing the same series lock rows
        # in the same order and cannot deadlock each other.
        rows = sorted(
            ((name, json.dumps(list(labels))), value) for (name, labels), value in batch.items()
        )
        table = "monitorsite_metricvalue"
        placeholders = ", ".join(["(%s, %s, %s)"] * len(rows))
        params = [item for (name, labels), value in rows for item in (name, labels, value)]
        # Only the constant table name and placeholders are formatted in.
        sql = (
            f"INSERT INTO {table} (name, labels, value) VALUES {placeholders} "  # noqa: S608
            f"ON CONFLICT (name, labels) DO UPDATE SET value = {table}.value + excluded.value"
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
        except DatabaseError:
            logger.warning(
                "could not flush %d metric series; keeping them", len(rows), exc_info=True
            )
            with self.lock:
                for key, value in batch.items():
                    self.pending[key] += value
            return 0
        return len(rows)


recorder = Recorder()
inc = recorder.inc
observe = recorder.observe
flush = recorder.flush


# --- Reading ------------------------------------------------------------------

ScrapeGauge = Callable[[], Iterable[Metric]]
SCRAPE_GAUGES: list[ScrapeGauge] = []


def scrape_gauge(func: ScrapeGauge) -> ScrapeGauge:
    """Register a function that yields gauges computed at scrape time."""
    SCRAPE_GAUGES.append(func)
    return func


def _stored_families() -> Iterator[Metric]:
    from monitorsite.models import MetricValue

    stored: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in MetricValue.objects.values_list("name", "labels", "value"):
        stored[name][labels] = value
    for metric in DEFINITIONS.values():
        if metric.is_histogram:
            yield _histogram_family(metric, stored)
            continue
        family = CounterMetricFamily(
            metric.name.removesuffix("_total"), metric.documentation, labels=metric.labelnames
        )
        for labels, value in sorted(stored.get(metric.name, {}).items()):
            family.add_metric(json.loads(labels), value)
        yield family


def _histogram_family(metric: MetricDef, stored: dict[str, dict[str, float]]) -> Metric:
    family = HistogramMetricFamily(metric.name, metric.documentation, labels=metric.labelnames)
    for labels, count in sorted(stored.get(f"{metric.name}_count", {}).items()):
        values = json.loads(labels)
        bucket_rows = stored.get(f"{metric.name}_bucket", {})
        buckets = [
            (str(bound), bucket_rows.get(json.dumps([*values, str(bound)]), 0.0))
            for bound in metric.buckets
        ]
        buckets.append(("+Inf", count))
        total = stored.get(f"{metric.name}_sum", {}).get(labels, 0.0)
        family.add_metric(values, buckets, total)
    return family


class WatchpostCollector:
    """prometheus-client collector over the shared totals and scrape-time gauges."""

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        yield from _stored_families()
        for gauge in SCRAPE_GAUGES:
            try:
                yield from gauge()
            except Exception:
                logger.exception("scrape gauge %s failed", gauge.__name__)
        duration = GaugeMetricFamily(
            "watchpost_scrape_duration_seconds", "Time taken to collect these metrics."
        )
        duration.add_metric([], time.monotonic() - started)
        yield duration


@scrape_gauge
def queue_depth_gauge() -> Iterator[Metric]:
    from monitorsite.broker import queue_depths

    up = GaugeMetricFamily("watchpost_broker_up", "1 if the broker answered this scrape.")
    depth = GaugeMetricFamily(
        "watchpost_queue_depth", "Messages waiting in each queue.", labels=["queue"]
    )
    try:
        depths = queue_depths()
    except Exception:
        logger.warning("broker did not answer the queue depth scrape", exc_info=True)
        up.add_metric([], 0)
    else:
        up.add_metric([], 1)
        for name, count in sorted(depths.items()):
            depth.add_metric([name], count)
    yield up
    yield depth


@scrape_gauge
def fleet_gauges() -> Iterator[Metric]:
    from django.conf import settings

    from incidents.metrics import open_incident_count
    from monitorsite.models import Heartbeat

    now = timezone.now()
    workers = GaugeMetricFamily("watchpost_workers_alive", "Workers whose heartbeat is fresh.")
    fresh = Heartbeat.objects.fresh(
        Heartbeat.Kind.WORKER, timedelta(seconds=settings.WORKER_STALE_AFTER), now
    )
    workers.add_metric([], fresh.count())
    yield workers
    incidents = GaugeMetricFamily("watchpost_open_incidents", "Incidents not yet resolved.")
    incidents.add_metric([], open_incident_count())
    yield incidents
    tick = Heartbeat.objects.filter(kind=Heartbeat.Kind.BEAT).order_by("-seen_at").first()
    if tick is not None:
        age = GaugeMetricFamily(
            "watchpost_system_tick_age_seconds", "Seconds since the last system tick ran."
        )
        age.add_metric([], (now - tick.seen_at).total_seconds())
        yield age
