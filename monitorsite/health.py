"""Watchpost watching itself: liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitorsite.broker import queue_depths
from monitorsite.metrics import WatchpostCollector
from monitorsite.models import Heartbeat


class ComponentDown(Exception):
    """A component answered, but not well enough to call it healthy."""


def check_database() -> dict[str, Any]:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"vendor": connections["default"].vendor}
    finally:
        # Checks run in their own threads; each thread's connection is its own.
        connections.close_all()


def check_broker() -> dict[str, Any]:
    depths = queue_depths(timeout=settings.HEALTH_CHECK_TIMEOUT)
    return {"transport": settings.CELERY_BROKER_URL.split("://")[0], "queue_depth": depths}


def check_cache() -> dict[str, Any]:
    token = str(time.time())
    cache.set("health:probe", token, 30)
    if cache.get("health:probe") != token:
        raise ComponentDown("the cache did not return the value just written")
    return {}


def check_beat() -> dict[str, Any]:
    try:
        tick = Heartbeat.objects.filter(kind=Heartbeat.Kind.BEAT).latest("seen_at")
    except Heartbeat.DoesNotExist:
        raise ComponentDown("no system tick recorded yet: is beat running?") from None
    finally:
        connections.close_all()
    age = (timezone.now() - tick.seen_at).total_seconds()
    if age > settings.BEAT_STALE_AFTER:
        raise ComponentDown(
            f"no system tick for {age:.0f} s (limit {settings.BEAT_STALE_AFTER} s): "
            "beat or the dispatch worker is down"
        )
    return {"last_tick_age_s": round(age, 1)}


def check_workers() -> dict[str, Any]:
    window = timedelta(seconds=settings.WORKER_STALE_AFTER)
    try:
        names = list(
            Heartbeat.objects.fresh(Heartbeat.Kind.WORKER, window).values_list("name", flat=True)
        )
    finally:
        connections.close_all()
    if not names:
        raise ComponentDown(f"no worker heartbeat in the last {settings.WORKER_STALE_AFTER} s")
    return {"workers": sorted(names)}


def check_dispatch() -> dict[str, Any]:
    from checks.fleet import recent_lag

    window = timedelta(seconds=60)
    try:
        lag = recent_lag(window)
    finally:
        connections.close_all()
    if lag is None:
        return {"probes_last_minute": 0}
    detail = {
        "probes_last_minute": lag.samples,
        "lag_p50_s": round(lag.p50, 3),
        "lag_p99_s": round(lag.p99, 3),
    }
    if lag.p99 > settings.FLEET_LAG_LIMIT:
        raise ComponentDown(
            f"probes start late: lag p99 {lag.p99:.1f} s over the last minute "
            f"(limit {settings.FLEET_LAG_LIMIT:g} s); add probe workers"
        )
    return detail


def readiness_checks() -> dict[str, Callable[[], dict[str, Any]]]:
    checks = {
        "database": check_database,
        "broker": check_broker,
        "beat": check_beat,
        "workers": check_workers,
        "dispatch": check_dispatch,
    }
    if settings.REDIS_URL:
        checks["cache"] = check_cache
    return checks


def run_checks(
    checks: dict[str, Callable[[], dict[str, Any]]], timeout: float
) -> dict[str, dict[str, Any]]:
    """Run every check at once; none may take longer than `timeout`."""
    results: dict[str, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health")
    started = time.monotonic()
    futures = {name: pool.submit(check) for name, check in checks.items()}
    for name, future in futures.items():
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            detail = future.result(timeout=remaining)
        except FutureTimeout:
            results[name] = {"status": "failing", "error": f"no answer within {timeout:g} s"}
        except Exception as exc:  # any failure of a component is reported, never raised
            results[name] = {"status": "failing", "error": _describe(exc)}
        else:
            results[name] = {"status": "ok", **detail}
    # A hung check must not hold the response: its thread is left to finish on
    # its own socket timeout.
    pool.shutdown(wait=False, cancel_futures=True)
    return results


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ComponentDown):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@never_cache
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
def ready(request: HttpRequest) -> JsonResponse:
    components = run_checks(readiness_checks(), settings.HEALTH_CHECK_TIMEOUT)
    failing = sorted(name for name, result in components.items() if result["status"] != "ok")
    body: dict[str, Any] = {
        "status": "failing" if failing else "ok",
        "checked_at": timezone.now().isoformat(),
        "components": components,
    }
    if failing:
        body["failing"] = failing
        body["error"] = "; ".join(f"{name}: {components[name]['error']}" for name in failing)
    return JsonResponse(body, status=503 if failing else 200)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse(
                "metrics need a bearer token\n", status=401, content_type="text/plain"
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatchpostCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
