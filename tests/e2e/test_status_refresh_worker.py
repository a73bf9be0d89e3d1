"""A real Celery worker re-renders a stale status page while visitors get the stale copy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from checks.models import Monitor
from incidents.statuspage import cache as status_cache
from incidents.statuspage import views
from tests.conftest import RedisServer
from tests.e2e.workers import running_worker, wait_until, worker_env
from tests.incidents import status_fixtures as scenes
from tests.incidents.paging import flip
from tests.incidents.test_status_page import statuses

REPO = Path(__file__).resolve().parents[2]
HOST = scenes.HOST
# The longest grace: a page that changes sooner was rendered by the worker, not here.
GRACE = 20.0

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shared_cache(settings: Any, redis_server: RedisServer) -> RedisServer:
    """A Redis of this test's own, as the worker's settings name it (REDIS_URL, its prefix)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": "watchpost",
        }
    }
    scenes.allow_host(settings)
    settings.STATUS_PAGE_REFRESH_GRACE = GRACE
    return redis_server


@pytest.fixture
def worker(shared_cache: RedisServer, tmp_path: Path) -> Iterator[Path]:
    env = {k: v for k, v in worker_env(tmp_path).items() if not k.startswith("MAKE")}
    env |= {"REDIS_URL": shared_cache.url, "ALLOWED_HOSTS": f"127.0.0.1,{HOST}"}
    # The page names its hashed stylesheet from the manifest, as `make run` collects it.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=REPO, env=env, check=True, timeout=120,
    )  # fmt: skip
    log = tmp_path / "worker.log"
    with running_worker(env, "default", "refresh", log):
        wait_until(lambda: b" ready." in log.read_bytes(), 90, "the worker to start", log)
        yield log


def cdn(client: Client) -> str:
    response = client.get("/", headers={"host": HOST})
    assert response.status_code == 200
    return statuses(response.content.decode())["CDN"]


def test_the_worker_renders_the_change_while_visitors_get_the_stale_page(
    client: Client, worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = scenes.operational_scene()
    assert cdn(client) == "Operational"

    def not_here(snapshot: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("the page was rendered in the web process")

    monkeypatch.setattr(views, "home_context", not_here)  # only the worker's copy renders
    flip(scene.monitors["cdn-edge"], Monitor.Status.DOWN)
    status_cache.invalidate()
    assert cdn(client) == "Operational"  # stale: the refresh is on the broker
    wait_until(lambda: cdn(client) == "Major outage", GRACE - 5, "the refreshed page", worker)
    assert cache.get(status_cache.refresh_key(scene.page.pk, "home")) is None  # freed
