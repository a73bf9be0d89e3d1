"""The monitor admin as an SRE uses it: the list, the form, Run now, pause and resume."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from checks.models import Monitor, ProbeResult, Region, StatusChange, Tag
from checks.probes import PROBE_MODULES, validate_monitor
from checks.probes.docs import KINDS, known_options
from tests.targets import HttpTarget, closed_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("collected_static")]

CHANGELIST = "/admin/checks/monitor/"
ADD = "/admin/checks/monitor/add/"
NOT_READY = {"status": "not_ready", "database": "disconnected", "error": "Connection refused"}
READINESS_RULES = [
    {"path": "$.status", "value": "ready"},
    {"path": "$.database", "value": "connected"},
]


def monitor(name: str, url: str = "http://127.0.0.1:9/", **fields: Any) -> Monitor:
    return Monitor.objects.create(name=name, kind=fields.pop("kind", "http"), target=url, **fields)


def add_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "api",
        "kind": "http",
        "target": "https://api.example.com/health",
        "options": "{}",
        "description": "",
        "interval": "60",
        "timeout": "10",
        "failure_threshold": "2",
        "recovery_threshold": "1",
        "severity": "high",
        "runbook_url": "",
        "confirm_regions": "1",
        "assertions-TOTAL_FORMS": "0",
        "assertions-INITIAL_FORMS": "0",
        "assertions-MIN_NUM_FORMS": "0",
        "assertions-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def listed(response: Any) -> list[str]:
    return [m.name for m in response.context["cl"].result_list]


def shown_messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- The list -------------------------------------------------------------------------------


def test_it_lists_monitors_with_a_status_badge_latency_and_last_check(admin_client: Client) -> None:
    monitor("checkout", status="down", last_latency_ms=812.4, last_checked_at=timezone.now())
    monitor("search", status="degraded")
    monitor("login", status="up")
    monitor("cron", kind="heartbeat", url="", status="paused", paused=True)
    long_url = "https://api.example.com/" + "x" * 100
    monitor("docs", url=long_url)

    page = admin_client.get(CHANGELIST).content.decode()

    assert '<span class="wp-badge wp-badge-down">down</span>' in page
    assert '<span class="wp-badge wp-badge-degraded">degraded</span>' in page
    assert '<span class="wp-badge wp-badge-up">up</span>' in page
    assert '<span class="wp-badge wp-badge-paused">paused</span>' in page
    assert '<span class="wp-badge wp-badge-pending">pending</span>' in page
    assert "812 ms" in page
    assert "now" in page  # last checked, as people say it
    assert f'title="{long_url}"' in page
    assert long_url not in page.replace(f'title="{long_url}"', "")


def test_it_never_shows_a_targets_password_in_the_list(admin_client: Client) -> None:
    monitor("db", kind="postgres", url="postgres://watchpost:hunter2@db.internal:5432/app")
    page = admin_client.get(CHANGELIST).content.decode()
    assert "postgres://watchpost:***@db.internal:5432/app" in page
    assert "hunter2" not in page


def test_it_filters_by_status_kind_tag_severity_and_paused(admin_client: Client) -> None:
    prod = Tag.objects.create(name="prod")
    checkout = monitor("checkout", status="down", severity="critical")
    checkout.tags.add(prod)
    monitor("search", status="up", severity="low")
    monitor("db-port", kind="tcp", url="db.internal:5432", status="up")
    monitor("nightly", kind="heartbeat", url="", status="paused", paused=True)

    def names(query: str) -> list[str]:
        return listed(admin_client.get(f"{CHANGELIST}?{query}"))

    assert names("status__exact=down") == ["checkout"]
    assert names("status__exact=up") == ["db-port", "search"]
    assert names("kind__exact=tcp") == ["db-port"]
    assert names(f"tags__id__exact={prod.pk}") == ["checkout"]
    assert names("severity__exact=low") == ["search"]
    assert names("paused__exact=1") == ["nightly"]
    assert names("q=db.internal") == ["db-port"]


def test_pause_and_resume_change_the_status_and_record_it(admin_client: Client) -> None:
    up = monitor("checkout", status="up")
    down = monitor("search", status="down")

    response = admin_client.post(
        CHANGELIST, {"action": "pause", "_selected_action": [up.pk, down.pk]}, follow=True
    )

    assert shown_messages(response) == ["Paused 2 monitor(s)."]
    assert set(Monitor.objects.values_list("status", "paused")) == {("paused", True)}
    assert listed(admin_client.get(f"{CHANGELIST}?status__exact=paused")) == ["checkout", "search"]
    flips = StatusChange.objects.order_by("monitor__name")
    assert [(c.from_status, c.to_status) for c in flips] == [("up", "paused"), ("down", "paused")]

    response = admin_client.post(
        CHANGELIST, {"action": "resume", "_selected_action": [up.pk]}, follow=True
    )

    assert shown_messages(response) == ["Resumed 1 monitor(s)."]
    up.refresh_from_db()
    assert (up.status, up.paused) == ("pending", False)
    assert Monitor.objects.get(pk=down.pk).status == "paused"


def test_the_run_now_action_reports_each_monitor(admin_client: Client, target: HttpTarget) -> None:
    target.route("/ready", body={"status": "ready"})
    ok = monitor("api", url=target.url("/ready"), timeout=5)
    refused = monitor("gone", url=f"http://127.0.0.1:{closed_port()}/", timeout=5)

    response = admin_client.post(
        CHANGELIST, {"action": "run_now", "_selected_action": [ok.pk, refused.pk]}, follow=True
    )

    said = shown_messages(response)
    assert len(said) == 2
    assert re.fullmatch(r"api: ok — HTTP 200 in \d+ ms", said[0])
    assert said[1].startswith("gone: error — connection refused by 127.0.0.1:")
    assert not ProbeResult.objects.exists()  # a dry run stores nothing


# --- The form --------------------------------------------------------------------------------


def test_bad_options_are_named_beside_the_field_and_the_input_is_kept(
    admin_client: Client,
) -> None:
    typed = '{"method": "FETCH", "colour": "red"}'

    response = admin_client.post(ADD, add_form(options=typed, target="ftp://files.example.com"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    unknown, method = errors["options"]
    assert unknown.startswith("colour: unknown option (known: accepted_codes, basic_auth, ")
    assert (
        method == "method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got 'FETCH'"
    )
    assert errors["target"][0].startswith("must be an http:// or https:// URL with a host")
    page = response.content.decode()
    assert "{&quot;method&quot;: &quot;FETCH&quot;, &quot;colour&quot;: &quot;red&quot;}" in page
    assert 'value="ftp://files.example.com"' in page
    assert not Monitor.objects.exists()


def test_broken_json_and_a_timeout_past_the_interval_are_named_too(admin_client: Client) -> None:
    response = admin_client.post(ADD, add_form(options='{"method": "GET",', timeout="90"))

    errors = response.context["adminform"].form.errors
    assert errors["options"] == ["Enter a valid JSON."]
    assert errors["timeout"] == ["must be shorter than the interval (60 s)"]
    assert "{&quot;method&quot;: &quot;GET&quot;," in response.content.decode()


def test_an_assertion_error_shows_in_its_row(admin_client: Client) -> None:
    rows = {
        "assertions-TOTAL_FORMS": "1",
        "assertions-0-order": "0",
        "assertions-0-source": "latency",
        "assertions-0-operator": "lt",
        "assertions-0-warning_value": "",
        "assertions-0-critical_value": "fast",
        "assertions-0-aggregate": "last",
    }
    response = admin_client.post(ADD, add_form(**rows))

    [formset] = response.context["inline_admin_formsets"]
    assert formset.formset.errors == [{"critical_value": ["must be a number for <, got 'fast'"]}]
    assert 'value="fast"' in response.content.decode()


def test_a_valid_monitor_is_saved_with_its_options_and_assertions(admin_client: Client) -> None:
    options = {"json": READINESS_RULES, "latency_critical_ms": 2000}
    rows = {
        "assertions-TOTAL_FORMS": "1",
        "assertions-0-order": "0",
        "assertions-0-source": "latency",
        "assertions-0-operator": "lt",
        "assertions-0-critical_value": "800",
        "assertions-0-aggregate": "p95",
        "assertions-0-window": "600",
    }

    response = admin_client.post(ADD, add_form(options=json.dumps(options), **rows))

    assert response.status_code == 302
    saved = Monitor.objects.get()
    assert saved.options == options
    assert [(a.aggregate, a.critical_value, a.window) for a in saved.assertions.all()] == [
        ("p95", "800", 600)
    ]


def test_the_options_box_shows_the_chosen_kinds_help(admin_client: Client) -> None:
    page = admin_client.get(ADD).content.decode()

    assert re.search(
        r'<div class="wp-kind-doc" data-kind="http" data-target-example="[^"]*">', page
    )
    assert re.search(r'data-kind="redis" data-target-example="[^"]*" hidden>', page)
    assert "<code>accepted_codes</code>" in page
    assert "<code>memory_critical_pct</code>" in page

    # Re-shown after an error, the help follows the kind the user picked.
    response = admin_client.post(ADD, add_form(kind="redis", target="redis://cache:6379/x"))
    page = response.content.decode()
    assert re.search(r'data-kind="redis" data-target-example="[^"]*">', page)
    assert re.search(r'data-kind="http" data-target-example="[^"]*" hidden>', page)


def test_the_help_script_is_served(admin_client: Client) -> None:
    page = admin_client.get(ADD).content.decode()
    [src] = re.findall(r'<script src="(/static/checks/monitor_options\.[0-9a-f]+\.js)"', page)

    response = Client().get(src)

    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    script = b"".join(response.streaming_content).decode()
    assert "wp-kind-help" in script
    assert "dataset.kind" in script


@pytest.mark.parametrize("kind", sorted(PROBE_MODULES))
def test_the_help_names_exactly_the_options_each_probe_accepts(kind: str) -> None:
    known = known_options(kind)
    if known is None:
        pytest.skip(f"the {kind} probe is not there yet")
    doc = KINDS[kind]
    assert {option.name for option in doc.options} == known
    # The example a user may copy is one the probe accepts.
    validate_monitor(kind, doc.target_example, doc.example)


# --- The change page --------------------------------------------------------------------------


def test_run_now_asks_first_then_shows_the_outcome_and_reason(
    admin_client: Client, target: HttpTarget
) -> None:
    target.route("/health/ready", status=503, body=NOT_READY)
    api = monitor("api", url=target.url("/health/ready"), options={"json": READINESS_RULES})
    run_url = reverse("admin:checks_monitor_run", args=[api.pk])

    change_page = admin_client.get(f"{CHANGELIST}{api.pk}/change/").content.decode()
    assert f'href="{run_url}"' in change_page

    confirm = admin_client.get(run_url)
    assert confirm.status_code == 200
    assert b'<form method="post">' in confirm.content
    assert target.requests == []  # a GET only asks

    response = admin_client.post(run_url, follow=True)

    assert response.redirect_chain == [(f"{CHANGELIST}{api.pk}/change/", 302)]
    [said] = shown_messages(response)
    assert said.startswith("api: critical — ")
    assert '$.database is "disconnected", expected "connected"' in said
    assert said.endswith('(error: "Connection refused")')
    assert len(target.requests) == 1
    assert not ProbeResult.objects.exists()


def test_run_now_needs_a_post_with_a_csrf_token(admin_user: Any, target: HttpTarget) -> None:
    api = monitor("api", url=target.url("/"))
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(reverse("admin:checks_monitor_run", args=[api.pk]))

    assert response.status_code == 403
    assert target.requests == []


def test_the_change_page_shows_the_latest_twenty_results(admin_client: Client) -> None:
    api = monitor("api")
    region = Region.default()
    start = timezone.now() - timedelta(hours=1)
    ProbeResult.objects.bulk_create(
        ProbeResult(
            monitor=api,
            region=region,
            scheduled_at=start + timedelta(minutes=n),
            started_at=start + timedelta(minutes=n),
            duration_ms=100 + n,
            outcome="ok" if n % 2 else "critical",
            reason=f"result number {n:02d}",
        )
        for n in range(25)
    )

    page = admin_client.get(f"{CHANGELIST}{api.pk}/change/").content.decode()

    assert "Latest 20 results" in page
    assert "result number 24" in page and "result number 05" in page
    assert "result number 04" not in page
    assert '<span class="wp-outcome wp-outcome-critical">critical</span>' in page
    assert "124 ms" in page


def test_saving_the_form_keeps_what_the_workers_wrote(admin_client: Client) -> None:
    api = monitor("api", url="https://api.example.com/", status="down")
    data = add_form(name="api v2", target="https://api.example.com/v2")
    response = admin_client.post(f"{CHANGELIST}{api.pk}/change/", data)
    assert response.status_code == 302
    api.refresh_from_db()
    assert (api.name, api.target, api.status) == ("api v2", "https://api.example.com/v2", "down")


def test_status_changes_are_read_only(admin_client: Client) -> None:
    api = monitor("checkout")
    change = StatusChange.objects.create(
        monitor=api, from_status="up", to_status="down", reason="HTTP 503"
    )

    page = admin_client.get("/admin/checks/statuschange/").content.decode()

    assert "checkout" in page and "HTTP 503" in page
    assert "wp-badge-up" in page and "wp-badge-down" in page
    assert "/admin/checks/statuschange/add/" not in page
    detail = admin_client.get(f"/admin/checks/statuschange/{change.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert admin_client.post(f"/admin/checks/statuschange/{change.pk}/delete/").status_code == 403


def test_regions_and_tags_have_their_admins(admin_client: Client) -> None:
    Region.objects.create(name="eu", queue="probes.eu")
    response = admin_client.post(
        "/admin/checks/region/add/", {"name": "us", "queue": "celery"}, follow=True
    )
    assert response.context["adminform"].form.errors["queue"] == [
        "must be 'probes' or start with 'probes.'"
    ]
    assert "eu" in admin_client.get("/admin/checks/region/").content.decode()
    Tag.objects.create(name="prod")
    assert "prod" in admin_client.get("/admin/checks/tag/").content.decode()
