"""The JSON API for monitors, as a script or a deploy pipeline uses it."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from drf_spectacular.validation import validate_schema
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from checks.models import Assertion, Monitor, ProbeResult, Region, StatusChange, Tag
from tests.targets import HttpTarget

pytestmark = pytest.mark.django_db

MONITORS = "/api/v1/monitors/"
NOT_READY = {"status": "not_ready", "database": "disconnected", "error": "Connection refused"}


def token_for(username: str, staff: bool = True) -> str:
    user = User.objects.create_user(username, password="x" * 20, is_staff=staff)
    return Token.objects.create(user=user).key


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for('deployer')}")
    return client


def new_monitor(**fields: Any) -> dict[str, Any]:
    return {
        "name": "checkout",
        "kind": "http",
        "target": "https://api.example.com/health/ready",
        "options": {"json": [{"path": "$.status", "value": "ready"}]},
        "interval": 60,
        "timeout": 5,
        **fields,
    }


def monitor_url(monitor_id: int) -> str:
    return f"{MONITORS}{monitor_id}/"


# --- Who may call it ------------------------------------------------------------------


def test_it_answers_401_without_a_token_or_with_a_wrong_one() -> None:
    client = APIClient()
    response = client.get(MONITORS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert client.get(MONITORS).status_code == 401
    assert client.post(MONITORS, new_monitor(), format="json").status_code == 401
    assert not Monitor.objects.exists()


def test_it_answers_403_to_a_user_who_is_not_staff() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for('viewer', staff=False)}")
    response = client.get(MONITORS)
    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}


def test_the_command_prints_a_users_token_and_keeps_it() -> None:
    User.objects.create_user("ops", password="x" * 20, is_staff=True)
    first, second = io.StringIO(), io.StringIO()
    call_command("api_token", "ops", stdout=first)
    call_command("api_token", "ops", stdout=second)
    key = first.getvalue().strip()
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert second.getvalue().strip() == key

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(MONITORS).status_code == 200

    rotated = io.StringIO()
    call_command("api_token", "ops", "--rotate", stdout=rotated)
    assert rotated.getvalue().strip() != key
    assert client.get(MONITORS).status_code == 401
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("api_token", "nobody")


# --- Creating, reading, changing -------------------------------------------------------------


def test_it_creates_a_monitor_with_tags_regions_and_assertions(api: APIClient) -> None:
    Region.objects.create(name="eu", queue="probes.eu")
    payload = new_monitor(
        tags=["prod", "payments"],
        regions=["eu"],
        severity="critical",
        runbook_url="https://wiki.example.com/runbooks/checkout",
        assertions=[
            {"source": "latency", "operator": "lt", "critical_value": "800", "aggregate": "p95",
             "window": 600},
        ],
    )  # fmt: skip

    response = api.post(MONITORS, payload, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert sorted(body["tags"]) == ["payments", "prod"]
    assert body["regions"] == ["eu"]
    assert body["paused"] is False
    [assertion] = body["assertions"]
    assert (assertion["aggregate"], assertion["critical_value"], assertion["window"]) == (
        "p95", "800", 600,
    )  # fmt: skip
    assert set(Tag.objects.values_list("name", flat=True)) == {"payments", "prod"}
    assert api.get(monitor_url(body["id"])).json() == body


def test_it_names_a_bad_option_in_a_400(api: APIClient) -> None:
    response = api.post(MONITORS, new_monitor(options={"method": "FETCH"}), format="json")

    assert response.status_code == 400
    assert response.json() == {
        "options": [
            "method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got 'FETCH'"
        ]
    }
    assert not Monitor.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"target": "ftp://files.example.com"}, "target", "must be an http:// or https:// URL"),
        ({"timeout": 90}, "timeout", "must be shorter than the interval (60 s)"),
        ({"interval": 5}, "interval", "Ensure this value is greater than or equal to 10."),
        ({"kind": "smtp"}, "kind", '"smtp" is not a valid choice.'),
        ({"options": "GET"}, "options", 'Expected a dictionary of items but got type "str".'),
        ({"options": {"body": "a\x00b"}}, "options", "options.body: must not contain NUL"),
        ({"options": {"body": "\ud800"}}, "options", "options.body: must not contain NUL"),
        ({"name": "a\x00b"}, "name", "Null characters are not allowed."),
        ({"depends_on": 2**63}, "depends_on", "object does not exist."),
        ({"regions": ["mars"]}, "regions", "Object with name=mars does not exist."),
        ({"tags": ["not a slug"]}, "tags", "Enter a valid"),
        ({"depends_on": 999999}, "depends_on", 'Invalid pk "999999" - object does not exist.'),
    ],
)
def test_it_names_the_field_of_each_mistake(
    api: APIClient, fields: dict[str, Any], field: str, message: str
) -> None:
    # Encoded here, as a client would: \ud800 travels as an escape, not as bytes.
    body = json.dumps(new_monitor(**fields))
    response = api.post(MONITORS, body, content_type="application/json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    assert message in json.dumps(errors[field], ensure_ascii=False).replace('\\"', '"')


def test_it_names_a_bad_assertion_by_position_and_field(api: APIClient) -> None:
    assertions = [
        {"source": "status_code", "operator": "eq", "critical_value": "200"},
        {"source": "latency", "operator": "lt", "critical_value": "fast"},
    ]
    response = api.post(MONITORS, new_monitor(assertions=assertions), format="json")
    assert response.status_code == 400
    assert response.json() == {
        "assertions": {"1": {"critical_value": ["must be a number for <, got 'fast'"]}}
    }


def test_patch_changes_fields_and_keeps_the_assertions_it_names(api: APIClient) -> None:
    created = api.post(
        MONITORS,
        new_monitor(assertions=[
            {"source": "latency", "operator": "lt", "critical_value": "800"},
            {"source": "status_code", "operator": "eq", "critical_value": "200"},
        ]),
        format="json",
    ).json()  # fmt: skip
    latency, status = created["assertions"]

    response = api.patch(
        monitor_url(created["id"]),
        {
            "options": {"keyword": "ok"},
            "assertions": [
                {**latency, "critical_value": "500"},
                {"source": "body", "operator": "contains", "critical_value": "ok"},
            ],
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["options"] == {"keyword": "ok"}
    assert body["name"] == "checkout"
    kept, added = body["assertions"]
    assert (kept["id"], kept["critical_value"]) == (latency["id"], "500")
    assert added["source"] == "body"
    assert not Assertion.objects.filter(pk=status["id"]).exists()


def test_patch_refuses_an_assertion_of_another_monitor(api: APIClient) -> None:
    first = api.post(
        MONITORS,
        new_monitor(assertions=[{"source": "latency", "operator": "lt", "critical_value": "1"}]),
        format="json",
    ).json()
    second = api.post(MONITORS, new_monitor(name="search"), format="json").json()
    stolen = first["assertions"][0]

    response = api.patch(monitor_url(second["id"]), {"assertions": [stolen]}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "assertions": [f"assertion {stolen['id']} does not belong to this monitor"]
    }


def test_a_dependency_loop_is_refused(api: APIClient) -> None:
    parent = api.post(MONITORS, new_monitor(name="database"), format="json").json()
    child = api.post(MONITORS, new_monitor(depends_on=parent["id"]), format="json").json()

    response = api.patch(monitor_url(parent["id"]), {"depends_on": child["id"]}, format="json")

    assert response.status_code == 400
    assert response.json() == {"depends_on": ["would make a dependency loop"]}


def test_pausing_through_the_api_records_the_change(api: APIClient) -> None:
    created = api.post(MONITORS, new_monitor(), format="json").json()
    url = monitor_url(created["id"])

    paused = api.patch(url, {"paused": True}, format="json").json()

    assert (paused["paused"], paused["status"]) == (True, "paused")
    assert api.patch(url, {"paused": False}, format="json").json()["status"] == "pending"
    assert list(StatusChange.objects.order_by("id").values_list("reason", flat=True)) == [
        "paused",
        "resumed",
    ]


def test_put_replaces_and_keeps_what_the_workers_wrote(api: APIClient) -> None:
    created = api.post(MONITORS, new_monitor(tags=["prod"]), format="json").json()
    Monitor.objects.filter(pk=created["id"]).update(status="down", last_reason="HTTP 503")

    response = api.put(
        monitor_url(created["id"]), new_monitor(name="checkout v2", tags=[]), format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["tags"], body["status"]) == ("checkout v2", [], "down")
    assert body["last_reason"] == "HTTP 503"


def test_it_lists_filters_and_deletes(api: APIClient) -> None:
    for name, tags in (("checkout", ["prod"]), ("search", ["prod"]), ("staging", [])):
        api.post(MONITORS, new_monitor(name=name, tags=tags), format="json")
    Monitor.objects.filter(name="search").update(status="down")

    listing = api.get(MONITORS).json()
    assert listing["count"] == 3
    assert [m["name"] for m in listing["results"]] == ["checkout", "search", "staging"]
    assert [m["name"] for m in api.get(MONITORS, {"status": "down"}).json()["results"]] == [
        "search"
    ]
    assert api.get(MONITORS, {"tag": "prod", "limit": 1}).json()["count"] == 2
    bad = api.get(MONITORS, {"kind": "smtp"})
    assert (bad.status_code, list(bad.json())) == (400, ["kind"])

    doomed = Monitor.objects.get(name="staging")
    assert api.delete(monitor_url(doomed.pk)).status_code == 204
    assert api.get(monitor_url(doomed.pk)).status_code == 404


# --- Manual evaluate ------------------------------------------------------------------------


def test_run_returns_the_outcome_and_reason_of_a_real_target(
    api: APIClient, target: HttpTarget
) -> None:
    target.route("/health/ready", status=503, body=NOT_READY)
    rules = [{"path": "$.status", "value": "ready"}, {"path": "$.database", "value": "connected"}]
    created = api.post(
        MONITORS,
        new_monitor(target=target.url("/health/ready"), options={"json": rules}),
        format="json",
    ).json()

    response = api.post(f"{MONITORS}{created['id']}/run")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"monitor", "outcome", "reason", "latency_ms", "started_at"}
    assert (body["monitor"], body["outcome"]) == (created["id"], "critical")
    assert '$.database is "disconnected", expected "connected"' in body["reason"]
    assert body["reason"].endswith('(error: "Connection refused")')
    assert body["latency_ms"] > 0
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body["started_at"])
    assert len(target.requests) == 1
    assert not ProbeResult.objects.exists()  # a dry run stores nothing


def test_run_is_ok_for_a_healthy_target_and_post_only(api: APIClient, target: HttpTarget) -> None:
    target.route("/ready", body={"status": "ready"})
    created = api.post(MONITORS, new_monitor(target=target.url("/ready")), format="json").json()
    run = f"{MONITORS}{created['id']}/run"

    body = api.post(run).json()

    assert body["outcome"] == "ok"
    assert body["reason"].startswith("HTTP 200 in ")
    assert api.get(run).status_code == 405
    assert api.post(f"{MONITORS}999999/run").status_code == 404
    assert APIClient().post(run).status_code == 401


# --- The schema ---------------------------------------------------------------------------------


def test_the_schema_is_valid_openapi_in_yaml_and_json() -> None:
    client = APIClient()

    as_yaml = client.get("/api/v1/schema/")
    as_json = client.get("/api/v1/schema/", {"format": "json"})

    assert as_yaml.status_code == 200
    assert as_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    schema = yaml.safe_load(as_yaml.content)
    validate_schema(schema)
    assert as_json.status_code == 200
    assert json.loads(as_json.content) == schema
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert set(paths) == {
        "/api/v1/monitors/", "/api/v1/monitors/{id}/", "/api/v1/monitors/{id}/run",
        "/api/v1/incidents/", "/api/v1/incidents/{id}/", "/api/v1/incidents/{id}/acknowledge",
        "/api/v1/incidents/{id}/resolve", "/api/v1/incidents/{id}/notes",
    }  # fmt: skip
    acknowledge = paths["/api/v1/incidents/{id}/acknowledge"]["post"]
    assert {"200", "409"} <= set(acknowledge["responses"])
    run = paths["/api/v1/monitors/{id}/run"]["post"]
    assert set(run["responses"]) == {"200", "401", "403", "404"}
    assert set(paths["/api/v1/monitors/"]["post"]["responses"]) == {"201", "400", "401", "403"}
    assert schema["components"]["securitySchemes"]["tokenAuth"]["type"] == "apiKey"
    # Read-only state is never offered as input.
    request = schema["components"]["schemas"]["MonitorRequest"]["properties"]
    assert "status" not in request and "last_checked_at" not in request
