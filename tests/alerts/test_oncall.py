"""Who is on call: rotations, overrides, DST hand-offs, and the iCal feed."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from icalendar import Calendar

from alerts.models import Contact, LayerMember, OnCallSchedule, ScheduleLayer, ScheduleOverride
from alerts.oncall import next_shifts, on_call, on_call_level, shifts, who_is_on_call

pytestmark = pytest.mark.django_db

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
WEEK = timedelta(weeks=1)


def contact(name: str) -> Contact:
    return Contact.objects.get_or_create(name=name)[0]


def layer(
    *names: str,
    shift: str = "daily",
    start: date = date(2024, 3, 1),
    handoff: time = time(9, 0),
    zone: str = "UTC",
    level: int = 1,
    schedule: OnCallSchedule | None = None,
    hours: int | None = None,
) -> ScheduleLayer:
    if schedule is None:
        schedule = OnCallSchedule.objects.create(name=f"Ops {uuid.uuid4().hex[:6]}", timezone=zone)
    made = ScheduleLayer.objects.create(
        schedule=schedule,
        level=level,
        shift=shift,
        shift_hours=hours,
        start_date=start,
        handoff_time=handoff,
    )
    for position, name in enumerate(names):
        LayerMember.objects.create(layer=made, contact=contact(name), position=position)
    return made


def override(on: ScheduleLayer, name: str, starts: datetime, ends: datetime) -> ScheduleOverride:
    return ScheduleOverride.objects.create(
        layer=on, contact=contact(name), starts_at=starts, ends_at=ends
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def new_york(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def who(on: ScheduleLayer, at: datetime) -> str | None:
    found = on_call(on, at)
    return found.name if found is not None else None


Piece = tuple[str, datetime, datetime, bool]


def pieces(on: ScheduleLayer, start: datetime, end: datetime) -> list[Piece]:
    return [
        (shift.contact.name, shift.starts_at, shift.ends_at, shift.is_override)
        for shift in shifts(on, start, end)
    ]


# --- Rotations --------------------------------------------------------------------------


def test_it_hands_a_daily_shift_over_at_the_handoff_time() -> None:
    daily = layer("Alice", "Bob", "Carol")

    assert who(daily, utc(2024, 3, 1, 9, 0)) == "Alice"
    assert who(daily, utc(2024, 3, 2, 8, 59)) == "Alice"
    assert who(daily, utc(2024, 3, 2, 9, 0)) == "Bob"
    assert who(daily, utc(2024, 3, 3, 23, 0)) == "Carol"


def test_it_cycles_through_the_members_in_position_order() -> None:
    daily = layer(start=date(2024, 3, 1))
    for position, name in [(2, "Carol"), (0, "Alice"), (1, "Bob")]:
        LayerMember.objects.create(layer=daily, contact=contact(name), position=position)

    names = [who(daily, utc(2024, 3, day, 12)) for day in range(1, 8)]

    assert names == ["Alice", "Bob", "Carol", "Alice", "Bob", "Carol", "Alice"]


def test_it_rotates_weekly_from_the_start_day() -> None:
    weekly = layer("Alice", "Bob", shift="weekly", start=date(2024, 1, 3))  # a Wednesday

    assert who(weekly, utc(2024, 1, 10, 8, 59)) == "Alice"
    assert who(weekly, utc(2024, 1, 10, 9, 0)) == "Bob"
    assert who(weekly, utc(2024, 1, 15, 12, 0)) == "Bob"
    assert who(weekly, utc(2024, 1, 17, 9, 0)) == "Alice"


def test_it_has_nobody_on_call_before_the_rotation_starts() -> None:
    daily = layer("Alice", "Bob", start=date(2024, 3, 1))

    assert who(daily, utc(2024, 3, 1, 8, 59)) is None
    assert who(daily, utc(2023, 1, 1)) is None
    assert pieces(daily, utc(2024, 3, 1), utc(2024, 3, 2)) == [
        ("Alice", utc(2024, 3, 1, 9), utc(2024, 3, 2), False)
    ]


def test_it_has_nobody_on_call_in_a_layer_without_members() -> None:
    empty = layer()

    assert who(empty, utc(2024, 6, 1)) is None
    assert shifts(empty, utc(2024, 6, 1), utc(2024, 6, 8)) == []


def test_it_counts_custom_shifts_in_real_hours_across_a_dst_change() -> None:
    # 12-hour shifts from Saturday 30 March 09:00 CET (08:00 UTC); Berlin moves
    # its clocks forward that night, so the hand-offs fall at 10:00 and 22:00 local.
    custom = layer(
        "Alice", "Bob", shift="custom", hours=12, start=date(2024, 3, 30), zone="Europe/Berlin"
    )

    assert who(custom, berlin(2024, 3, 30, 20, 59)) == "Alice"
    assert who(custom, berlin(2024, 3, 30, 21, 0)) == "Bob"
    assert who(custom, berlin(2024, 3, 31, 9, 59)) == "Bob"
    assert who(custom, berlin(2024, 3, 31, 10, 0)) == "Alice"


def test_it_answers_for_a_weekly_rotation_started_years_ago() -> None:
    # Monday 6 January 2020 to Monday 16 June 2025 is 1,827 days (two leap
    # years) to 6 January 2025, and 161 more: 1,988 days, 284 weeks.
    # Shift 284 of three members is the third member's (284 = 3 * 94 + 2).
    weekly = layer("Alice", "Bob", "Carol", shift="weekly", start=date(2020, 1, 6))

    assert who(weekly, utc(2025, 6, 16, 8, 59)) == "Bob"
    assert who(weekly, utc(2025, 6, 18, 12, 0)) == "Carol"
    assert pieces(weekly, utc(2025, 6, 18), utc(2025, 6, 19)) == [
        ("Carol", utc(2025, 6, 18), utc(2025, 6, 19), False)
    ]


def test_it_answers_for_a_daily_rotation_started_years_ago_in_local_time() -> None:
    # 1 January 2020 to 1 July 2025 is 1,827 + 181 = 2,008 days; 2,008 = 7 * 286 + 6,
    # so the seventh of seven members takes over at 09:00 Berlin summer time.
    names = ["Ann", "Ben", "Cid", "Dee", "Eve", "Fay", "Gus"]
    daily = layer(*names, start=date(2020, 1, 1), zone="Europe/Berlin")

    assert who(daily, berlin(2025, 7, 1, 8, 59)) == "Fay"
    assert who(daily, berlin(2025, 7, 1, 9, 0)) == "Gus"
    assert who(daily, utc(2025, 7, 1, 7, 0)) == "Gus"


# --- Hand-offs across DST changes -------------------------------------------------------


def test_it_hands_a_daily_shift_over_at_local_time_on_the_spring_forward_day() -> None:
    # Berlin moves from CET (+1) to CEST (+2) at 02:00 on Sunday 31 March 2024.
    daily = layer("Alice", "Bob", start=date(2024, 3, 25), zone="Europe/Berlin")

    assert who(daily, berlin(2024, 3, 31, 8, 59)) == "Bob"
    assert who(daily, berlin(2024, 3, 31, 9, 0)) == "Alice"
    # 09:30 local is 07:30 UTC: a rotation of 24 real hours would still say Bob.
    assert who(daily, utc(2024, 3, 31, 7, 30)) == "Alice"
    [short_day] = pieces(daily, berlin(2024, 3, 30, 9), berlin(2024, 3, 31, 9))
    assert short_day == ("Bob", utc(2024, 3, 30, 8), utc(2024, 3, 31, 7), False)
    assert short_day[2] - short_day[1] == timedelta(hours=23)


def test_it_hands_a_daily_shift_over_at_local_time_on_the_fall_back_day() -> None:
    # Berlin moves from CEST (+2) back to CET (+1) at 03:00 on Sunday 27 October 2024.
    daily = layer("Alice", "Bob", start=date(2024, 10, 21), zone="Europe/Berlin")

    assert who(daily, berlin(2024, 10, 27, 8, 59)) == "Bob"
    assert who(daily, berlin(2024, 10, 27, 9, 0)) == "Alice"
    # 08:30 local is 07:30 UTC: a rotation of 24 real hours would already say Alice.
    assert who(daily, utc(2024, 10, 27, 7, 30)) == "Bob"
    [long_day] = pieces(daily, berlin(2024, 10, 26, 9), berlin(2024, 10, 27, 9))
    assert long_day[2] - long_day[1] == timedelta(hours=25)


def test_it_hands_a_weekly_shift_over_at_local_time_after_spring_forward() -> None:
    weekly = layer("Alice", "Bob", shift="weekly", start=date(2024, 3, 25), zone="Europe/Berlin")

    assert who(weekly, berlin(2024, 4, 1, 8, 59)) == "Alice"
    assert who(weekly, berlin(2024, 4, 1, 9, 0)) == "Bob"
    # Not at 08:00 local (07:00 UTC + 168 hours from 08:00 UTC) ...
    assert who(weekly, berlin(2024, 4, 1, 8, 30)) == "Alice"
    # ... and the week that spans the change is an hour short.
    [first_week] = pieces(weekly, berlin(2024, 3, 25, 9), berlin(2024, 4, 1, 9))
    assert first_week[2] - first_week[1] == timedelta(days=7, hours=-1)


def test_it_hands_a_weekly_shift_over_at_local_time_after_fall_back() -> None:
    # New York moves from EDT (-4) to EST (-5) at 02:00 on Sunday 3 November 2024.
    weekly = layer(
        "Alice", "Bob", shift="weekly", start=date(2024, 10, 28), zone="America/New_York"
    )

    assert who(weekly, new_york(2024, 11, 4, 8, 59)) == "Alice"
    assert who(weekly, new_york(2024, 11, 4, 9, 0)) == "Bob"
    # 09:30 local is 14:30 UTC; 168 real hours would have handed off at 08:00 local.
    assert who(weekly, utc(2024, 11, 4, 13, 30)) == "Alice"
    assert who(weekly, utc(2024, 11, 4, 14, 0)) == "Bob"


# --- Overrides --------------------------------------------------------------------------


def test_it_lets_an_override_win_over_the_rotation() -> None:
    daily = layer("Alice", "Bob")
    override(daily, "Dave", utc(2024, 3, 1, 12), utc(2024, 3, 1, 15))

    assert who(daily, utc(2024, 3, 1, 11, 59)) == "Alice"
    assert who(daily, utc(2024, 3, 1, 12)) == "Dave"
    assert who(daily, utc(2024, 3, 1, 15)) == "Alice"


def test_it_lets_an_override_cover_before_the_rotation_starts() -> None:
    daily = layer("Alice", start=date(2024, 3, 10))
    override(daily, "Dave", utc(2024, 3, 1), utc(2024, 3, 2))

    assert who(daily, utc(2024, 3, 1, 12)) == "Dave"


def test_it_lets_the_latest_override_win_where_two_overlap() -> None:
    daily = layer("Alice", "Bob")
    override(daily, "Dave", utc(2024, 3, 1, 12), utc(2024, 3, 1, 18))
    override(daily, "Erin", utc(2024, 3, 1, 10), utc(2024, 3, 1, 14))

    assert who(daily, utc(2024, 3, 1, 13)) == "Erin"
    assert who(daily, utc(2024, 3, 1, 15)) == "Dave"
    assert pieces(daily, utc(2024, 3, 1, 9), utc(2024, 3, 2, 9)) == [
        ("Alice", utc(2024, 3, 1, 9), utc(2024, 3, 1, 10), False),
        ("Erin", utc(2024, 3, 1, 10), utc(2024, 3, 1, 14), True),
        ("Dave", utc(2024, 3, 1, 14), utc(2024, 3, 1, 18), True),
        ("Alice", utc(2024, 3, 1, 18), utc(2024, 3, 2, 9), False),
    ]


def test_it_cuts_an_override_into_the_shifts_it_spans() -> None:
    daily = layer("Alice", "Bob")
    override(daily, "Dave", utc(2024, 3, 1, 20), utc(2024, 3, 2, 12))

    assert pieces(daily, utc(2024, 3, 1), utc(2024, 3, 3)) == [
        ("Alice", utc(2024, 3, 1, 9), utc(2024, 3, 1, 20), False),
        ("Dave", utc(2024, 3, 1, 20), utc(2024, 3, 2, 12), True),
        ("Bob", utc(2024, 3, 2, 12), utc(2024, 3, 3), False),
    ]


def test_it_clips_shifts_to_the_window_asked_for() -> None:
    daily = layer("Alice", "Bob")

    assert pieces(daily, utc(2024, 3, 2, 12), utc(2024, 3, 3, 12)) == [
        ("Bob", utc(2024, 3, 2, 12), utc(2024, 3, 3, 9), False),
        ("Alice", utc(2024, 3, 3, 9), utc(2024, 3, 3, 12), False),
    ]


# --- Schedules and people ---------------------------------------------------------------


def test_it_tells_who_is_on_call_at_each_level() -> None:
    primary = layer("Alice", "Bob")
    layer("Carol", schedule=primary.schedule, level=2)
    layer(schedule=primary.schedule, level=3)

    assert who_is_on_call(primary.schedule, utc(2024, 3, 2, 12)) == {
        1: contact("Bob"),
        2: contact("Carol"),
        3: None,
    }
    assert on_call_level(primary.schedule, 2, utc(2024, 3, 2, 12)) == contact("Carol")
    assert on_call_level(primary.schedule, 4, utc(2024, 3, 2, 12)) is None


def test_it_lists_a_persons_next_shifts_across_schedules() -> None:
    daily = layer("Alice", "Bob", "Carol")
    weekly = layer("Bob", "Alice", shift="weekly", start=date(2024, 3, 4))
    override(daily, "Alice", utc(2024, 3, 2, 18), utc(2024, 3, 2, 20))

    found = next_shifts(contact("Alice"), utc(2024, 3, 2, 12), limit=5)

    assert [(s.layer, s.starts_at, s.ends_at, s.is_override) for s in found] == [
        (daily, utc(2024, 3, 2, 18), utc(2024, 3, 2, 20), True),
        (daily, utc(2024, 3, 4, 9), utc(2024, 3, 5, 9), False),
        (daily, utc(2024, 3, 7, 9), utc(2024, 3, 8, 9), False),
        (daily, utc(2024, 3, 10, 9), utc(2024, 3, 11, 9), False),
        (weekly, utc(2024, 3, 11, 9), utc(2024, 3, 18, 9), False),
    ]


def test_it_includes_the_shift_a_person_is_on_now() -> None:
    daily = layer("Alice", "Bob")

    [current, following] = next_shifts(contact("Alice"), utc(2024, 3, 1, 12), limit=2)

    assert (current.starts_at, current.ends_at) == (utc(2024, 3, 1, 9), utc(2024, 3, 2, 9))
    assert following.starts_at == utc(2024, 3, 3, 9)
    assert current.layer == daily


# --- The iCal feed ----------------------------------------------------------------------


def feed(client: Client, schedule: OnCallSchedule) -> Calendar:
    response = client.get(reverse("oncall-ical", args=[schedule.feed_key]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    return Calendar.from_ical(response.content)


def events(calendar: Calendar) -> list[tuple[str, datetime, datetime]]:
    return [
        (str(event["SUMMARY"]), event.decoded("DTSTART"), event.decoded("DTEND"))
        for event in calendar.walk("VEVENT")
    ]


def uids(calendar: Calendar) -> dict[str, datetime]:
    return {str(event["UID"]): event.decoded("DTSTART") for event in calendar.walk("VEVENT")}


@time_machine.travel(utc(2024, 5, 15, 12), tick=False)
def test_it_publishes_every_layers_shifts_as_an_ical_feed(client: Client) -> None:
    primary = layer("Alice", "Bob", shift="weekly", start=date(2024, 1, 1))
    layer("Carol", shift="weekly", start=date(2024, 1, 1), schedule=primary.schedule, level=2)
    primary.schedule.name = "Ops"
    primary.schedule.save()
    override(primary, "Dave", utc(2024, 5, 21), utc(2024, 5, 22))

    found = events(feed(client, primary.schedule))

    # Whole weekly shifts from the one running a week ago (Monday 6 May) to the
    # one running in eight weeks (Monday 8 July), with Dave's day cut in.
    mondays = [utc(2024, 5, 6, 9) + n * WEEK for n in range(10)]
    assert [event for event in found if "primary" in event[0]] == [
        ("Alice on call (Ops primary)", mondays[0], mondays[1]),
        ("Bob on call (Ops primary)", mondays[1], mondays[2]),
        ("Alice on call (Ops primary)", mondays[2], utc(2024, 5, 21)),
        ("Dave on call (Ops primary)", utc(2024, 5, 21), utc(2024, 5, 22)),
        ("Alice on call (Ops primary)", utc(2024, 5, 22), mondays[3]),
        *[
            (f"{'Bob' if n % 2 else 'Alice'} on call (Ops primary)", monday, monday + WEEK)
            for n, monday in enumerate(mondays[3:], start=3)
        ],
    ]
    assert [event for event in found if "secondary" in event[0]] == [
        ("Carol on call (Ops secondary)", monday, monday + WEEK) for monday in mondays
    ]


def test_it_writes_the_feeds_times_in_utc(client: Client) -> None:
    with time_machine.travel(utc(2024, 3, 28, 12), tick=False):
        daily = layer("Alice", start=date(2024, 3, 25), zone="Europe/Berlin")
        response = client.get(reverse("oncall-ical", args=[daily.schedule.feed_key]))

    text = response.content.decode()
    assert "DTSTART:20240325T080000Z" in text  # 09:00 CET
    assert "DTSTART:20240331T070000Z" in text  # 09:00 CEST


def test_it_keeps_the_uids_of_the_feeds_events_from_one_fetch_to_the_next(client: Client) -> None:
    daily = layer("Alice", "Bob", start=date(2024, 1, 1))
    with time_machine.travel(utc(2024, 5, 15, 12), tick=False):
        before = uids(feed(client, daily.schedule))
    with time_machine.travel(utc(2024, 5, 15, 18), tick=False):
        after = uids(feed(client, daily.schedule))

    assert before == after
    assert len(before) == 64  # 8 May 09:00 to 11 July 09:00, one a day


def test_it_answers_404_for_an_unknown_feed_key(client: Client) -> None:
    layer("Alice")

    assert client.get(reverse("oncall-ical", args=[uuid.uuid4()])).status_code == 404
    assert client.get("/oncall/schedules/not-a-key.ics").status_code == 404
