"""The on-call admin as a team lead uses it: schedules, layers, members, overrides."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.test import Client

from alerts.models import Contact, LayerMember, OnCallSchedule, ScheduleLayer, ScheduleOverride

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("collected_static")]

NOW = datetime(2024, 5, 15, 12, tzinfo=UTC)  # a Wednesday; Berlin is on CEST (+2)
SCHEDULES = "/admin/alerts/oncallschedule/"
LAYERS = "/admin/alerts/schedulelayer/"


@pytest.fixture
def now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def contact(name: str) -> Contact:
    return Contact.objects.get_or_create(name=name)[0]


@pytest.fixture
def schedule() -> OnCallSchedule:
    """Ops in Berlin: Alice and Bob weekly from Monday 6 May 09:00, Carol daily as secondary."""
    ops = OnCallSchedule.objects.create(name="Ops", timezone="Europe/Berlin")
    primary = ScheduleLayer.objects.create(
        schedule=ops, level=1, shift="weekly", start_date=date(2024, 5, 6)
    )
    secondary = ScheduleLayer.objects.create(
        schedule=ops, level=2, shift="daily", start_date=date(2024, 5, 6)
    )
    for position, name in enumerate(["Alice", "Bob"]):
        LayerMember.objects.create(layer=primary, contact=contact(name), position=position)
    LayerMember.objects.create(layer=secondary, contact=contact("Carol"), position=0)
    ScheduleOverride.objects.create(
        layer=primary,
        contact=contact("Dave"),
        starts_at=datetime(2024, 5, 22, 7, tzinfo=UTC),
        ends_at=datetime(2024, 5, 22, 19, tzinfo=UTC),
        note="Alice at the dentist",
    )
    return ops


def table_rows(html: str, heading: str) -> list[tuple[str, str, str, str]]:
    """The rows of one layer's table on the schedule's page."""
    table = html.split(f"<h3>{heading}</h3>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table)
    return [tuple(row) for row in rows]


# --- The schedule's page ----------------------------------------------------------------


def test_it_shows_the_next_four_weeks_in_the_schedules_timezone(
    admin_client: Client, schedule: OnCallSchedule, now: None
) -> None:
    response = admin_client.get(f"{SCHEDULES}{schedule.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Times in Europe/Berlin." in html
    assert table_rows(html, "primary") == [
        ("Bob", "Mon 13 May 2024, 09:00", "Mon 20 May 2024, 09:00", ""),
        ("Alice", "Mon 20 May 2024, 09:00", "Wed 22 May 2024, 09:00", ""),
        ("Dave", "Wed 22 May 2024, 09:00", "Wed 22 May 2024, 21:00", "override"),
        ("Alice", "Wed 22 May 2024, 21:00", "Mon 27 May 2024, 09:00", ""),
        ("Bob", "Mon 27 May 2024, 09:00", "Mon 03 Jun 2024, 09:00", ""),
        ("Alice", "Mon 03 Jun 2024, 09:00", "Mon 10 Jun 2024, 09:00", ""),
        ("Bob", "Mon 10 Jun 2024, 09:00", "Mon 17 Jun 2024, 09:00", ""),
    ]
    secondary = table_rows(html, "secondary")
    assert len(secondary) == 29  # today's shift and the 28 days after
    assert secondary[0] == ("Carol", "Wed 15 May 2024, 09:00", "Thu 16 May 2024, 09:00", "")


def test_it_shows_who_is_on_call_now_and_the_feed_url(
    admin_client: Client, schedule: OnCallSchedule, now: None
) -> None:
    html = admin_client.get(f"{SCHEDULES}{schedule.pk}/change/").content.decode()

    assert "<li>primary: <strong>Bob</strong></li>" in html
    assert "<li>secondary: <strong>Carol</strong></li>" in html
    feed = f"{settings.SITE_URL}/oncall/schedules/{schedule.feed_key}.ics"
    assert f'<a href="{feed}">{feed}</a>' in html


def test_it_lists_the_primary_on_call_in_the_schedule_list(
    admin_client: Client, schedule: OnCallSchedule, now: None
) -> None:
    OnCallSchedule.objects.create(name="Empty", timezone="UTC")

    response = admin_client.get(SCHEDULES)

    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'<td class="field-primary_now">Bob</td>', html)
    assert re.search(r'<td class="field-primary_now">nobody</td>', html)


def test_it_renders_the_add_page(admin_client: Client) -> None:
    response = admin_client.get(f"{SCHEDULES}add/")

    assert response.status_code == 200
    assert "next four weeks" not in response.content.decode()


def schedule_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Database",
        "timezone": "Europe/Berlin",
        "layers-TOTAL_FORMS": "1",
        "layers-INITIAL_FORMS": "0",
        "layers-MIN_NUM_FORMS": "0",
        "layers-MAX_NUM_FORMS": "1000",
        "layers-0-level": "1",
        "layers-0-shift": "weekly",
        "layers-0-shift_hours": "",
        "layers-0-start_date": "2024-05-06",
        "layers-0-handoff_time": "09:00",
    }
    return {**data, **overrides}


def test_it_saves_a_schedule_with_a_layer(admin_client: Client) -> None:
    response = admin_client.post(f"{SCHEDULES}add/", schedule_form())

    assert response.status_code == 302
    layer = ScheduleLayer.objects.get(schedule__name="Database")
    assert (layer.level, layer.shift, layer.handoff_time) == (1, "weekly", time(9, 0))


def test_it_names_the_timezone_field_when_the_zone_is_unknown(admin_client: Client) -> None:
    response = admin_client.post(f"{SCHEDULES}add/", schedule_form(timezone="Mars/Olympus"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "not a known timezone" in errors["timezone"][0]
    assert 'value="Database"' in response.content.decode()  # nothing typed is lost
    assert not OnCallSchedule.objects.exists()


def test_it_asks_a_custom_shift_for_its_hours(admin_client: Client) -> None:
    response = admin_client.post(f"{SCHEDULES}add/", schedule_form(**{"layers-0-shift": "custom"}))

    assert response.status_code == 200
    [layers] = response.context["inline_admin_formsets"]
    assert layers.formset.errors[0]["shift_hours"] == ["A custom shift needs its length in hours."]
    assert "A custom shift needs its length in hours." in response.content.decode()
    assert not OnCallSchedule.objects.exists()


def test_it_saves_a_custom_shift_with_its_hours(admin_client: Client) -> None:
    data = schedule_form(**{"layers-0-shift": "custom", "layers-0-shift_hours": "12"})

    assert admin_client.post(f"{SCHEDULES}add/", data).status_code == 302
    assert ScheduleLayer.objects.get().shift_hours == 12


# --- A layer's page: members and overrides ----------------------------------------------


def layer_form(layer: ScheduleLayer, **overrides: Any) -> dict[str, Any]:
    data = {
        "schedule": str(layer.schedule_id),
        "level": str(layer.level),
        "shift": layer.shift,
        "shift_hours": "",
        "start_date": layer.start_date.isoformat(),
        "handoff_time": "09:00",
        "members-TOTAL_FORMS": "0",
        "members-INITIAL_FORMS": "0",
        "members-MIN_NUM_FORMS": "0",
        "members-MAX_NUM_FORMS": "1000",
        "overrides-TOTAL_FORMS": "0",
        "overrides-INITIAL_FORMS": "0",
        "overrides-MIN_NUM_FORMS": "0",
        "overrides-MAX_NUM_FORMS": "1000",
    }
    return {**data, **overrides}


def new_override(starts: tuple[str, str], ends: tuple[str, str]) -> dict[str, str]:
    return {
        "overrides-TOTAL_FORMS": "1",
        "overrides-0-contact": str(contact("Erin").pk),
        "overrides-0-starts_at_0": starts[0],
        "overrides-0-starts_at_1": starts[1],
        "overrides-0-ends_at_0": ends[0],
        "overrides-0-ends_at_1": ends[1],
        "overrides-0-note": "swap",
    }


@pytest.fixture
def empty_layer() -> ScheduleLayer:
    ops = OnCallSchedule.objects.create(name="Ops", timezone="Europe/Berlin")
    return ScheduleLayer.objects.create(schedule=ops, start_date=date(2024, 5, 6))


def test_it_renders_a_layers_page_with_its_members_and_overrides(
    admin_client: Client, schedule: OnCallSchedule, now: None
) -> None:
    primary = schedule.layers.get(level=1)

    response = admin_client.get(f"{LAYERS}{primary.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Ops · primary (times in Europe/Berlin)" in html
    assert 'value="Alice at the dentist"' in html
    # Dave's override ends at 19:00 UTC, shown in Berlin time.
    assert 'value="21:00:00"' in html


def test_it_shows_an_override_ending_before_it_starts_as_a_field_error(
    admin_client: Client, empty_layer: ScheduleLayer
) -> None:
    data = layer_form(empty_layer, **new_override(("2024-05-20", "18:00"), ("2024-05-20", "08:00")))

    response = admin_client.post(f"{LAYERS}{empty_layer.pk}/change/", data)

    assert response.status_code == 200
    overrides = response.context["inline_admin_formsets"][1].formset
    assert overrides.errors[0] == {"ends_at": ["The override must end after it starts."]}
    assert "The override must end after it starts." in response.content.decode()
    assert not ScheduleOverride.objects.exists()


def test_it_reads_an_override_in_the_schedules_timezone(
    admin_client: Client, empty_layer: ScheduleLayer
) -> None:
    data = layer_form(empty_layer, **new_override(("2024-05-20", "10:00"), ("2024-05-20", "12:00")))

    response = admin_client.post(f"{LAYERS}{empty_layer.pk}/change/", data)

    assert response.status_code == 302
    saved = ScheduleOverride.objects.get()
    assert (saved.starts_at, saved.ends_at) == (
        datetime(2024, 5, 20, 8, tzinfo=UTC),
        datetime(2024, 5, 20, 10, tzinfo=UTC),
    )


def test_it_allows_a_member_twice_in_a_row(
    admin_client: Client, empty_layer: ScheduleLayer
) -> None:
    alice, bob = contact("Alice"), contact("Bob")
    members = {
        "members-TOTAL_FORMS": "3",
        **{f"members-{n}-contact": str(c.pk) for n, c in enumerate([alice, alice, bob])},
        **{f"members-{n}-position": str(n) for n in range(3)},
    }

    response = admin_client.post(
        f"{LAYERS}{empty_layer.pk}/change/", layer_form(empty_layer, **members)
    )

    assert response.status_code == 302
    names = [m.contact.name for m in empty_layer.members.order_by("position")]
    assert names == ["Alice", "Alice", "Bob"]


def test_it_names_the_hours_field_on_a_layers_own_page(
    admin_client: Client, empty_layer: ScheduleLayer
) -> None:
    response = admin_client.post(
        f"{LAYERS}{empty_layer.pk}/change/", layer_form(empty_layer, shift="custom")
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["shift_hours"] == ["A custom shift needs its length in hours."]


def test_it_lists_layers_with_who_is_on_call_now(
    admin_client: Client, schedule: OnCallSchedule, now: None
) -> None:
    response = admin_client.get(LAYERS)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<td class="field-on_call_now">Bob</td>' in html
    assert '<td class="field-on_call_now">Carol</td>' in html


def test_it_asks_for_members_but_not_overrides_on_a_new_layer(admin_client: Client) -> None:
    response = admin_client.get(f"{LAYERS}add/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Members (turn order" in html
    assert "Overrides (someone covers" not in html


def test_it_says_so_when_a_layer_has_nobody_to_show(admin_client: Client, now: None) -> None:
    ops = OnCallSchedule.objects.create(name="Ops", timezone="UTC")
    ScheduleLayer.objects.create(schedule=ops, start_date=date(2024, 5, 6))

    html = admin_client.get(f"{SCHEDULES}{ops.pk}/change/").content.decode()

    assert "<li>primary: <strong>nobody</strong></li>" in html
    assert "nobody (no members, or the rotation starts later)" in html
