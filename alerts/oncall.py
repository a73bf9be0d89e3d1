"""Who is on call: rotations computed from their start, with overrides cut in.

A layer's shift number k starts at a boundary computed directly from k, so a
rotation that started years ago costs the same as one that started today.
Daily and weekly shifts are whole calendar days in the schedule's timezone
(the hand-off stays at the local hand-off time across a DST change, so such a
shift lasts 23 or 25 hours); custom shifts are `shift_hours` of real time.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db.models import Q

from alerts.models import Contact, OnCallSchedule, ScheduleLayer, ScheduleOverride

LEVEL_NAMES = {1: "primary", 2: "secondary", 3: "tertiary"}
LOCAL_DAYS = {ScheduleLayer.Shift.DAILY: 1, ScheduleLayer.Shift.WEEKLY: 7}
# The longest a daily or weekly shift can last: 7 days and a DST hour (or two,
# in the few zones that moved their clocks by more).
LONGEST_LOCAL_SHIFT = timedelta(days=7, hours=3)


@dataclass(frozen=True)
class Shift:
    layer: ScheduleLayer
    contact: Contact
    starts_at: datetime
    ends_at: datetime
    is_override: bool = False


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, f"level {level}")


def schedule_zone(schedule: OnCallSchedule) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(schedule.timezone)


# --- The rotation -----------------------------------------------------------------------


def _origin(layer: ScheduleLayer) -> datetime:
    """When the first member's first shift starts, as a naive local time."""
    return datetime.combine(layer.start_date, layer.handoff_time)


def boundary(layer: ScheduleLayer, k: int) -> datetime:
    """When shift number k starts (k may be negative: before the rotation), in UTC."""
    zone = schedule_zone(layer.schedule)
    days = LOCAL_DAYS.get(layer.shift)
    if days is None:
        start = _origin(layer).replace(tzinfo=zone).astimezone(UTC)
        return start + k * timedelta(hours=shift_hours(layer))
    # A local wall-clock time: a local hand-off at 09:00 stays at 09:00 whatever
    # the offset that day. zoneinfo resolves a time skipped by DST (fold=0) with
    # the offset before the change, so it falls an hour later on the new clock.
    local = _origin(layer) + timedelta(days=k * days)
    return local.replace(tzinfo=zone).astimezone(UTC)


def shift_hours(layer: ScheduleLayer) -> int:
    # A custom layer saved without hours (only possible outside the admin's
    # validation) is read as daily real time rather than a division by zero.
    return layer.shift_hours or 24


def shift_index(layer: ScheduleLayer, at: datetime) -> int:
    """The number of the shift running at `at`; negative before the rotation starts."""
    days = LOCAL_DAYS.get(layer.shift)
    if days is None:
        start = boundary(layer, 0)
        return (at - start) // timedelta(hours=shift_hours(layer))
    local = at.astimezone(schedule_zone(layer.schedule)).replace(tzinfo=None)
    k = (local - _origin(layer)) // timedelta(days=days)
    # The estimate from wall-clock times can be one off within the hour a DST
    # change repeats or skips; the UTC boundaries settle it.
    while boundary(layer, k) > at:
        k -= 1
    while boundary(layer, k + 1) <= at:
        k += 1
    return k


def rotation(layer: ScheduleLayer) -> list[Contact]:
    """The members' contacts in turn order (works with prefetched members too)."""
    prefetched = "members" in getattr(layer, "_prefetched_objects_cache", {})
    found = layer.members.all() if prefetched else layer.members.select_related("contact")
    members = sorted(found, key=lambda member: (member.position, member.id))
    return [member.contact for member in members]


def _rotation_contact(layer: ScheduleLayer, members: list[Contact], at: datetime) -> Contact | None:
    if not members:
        return None
    k = shift_index(layer, at)
    return members[k % len(members)] if k >= 0 else None


# --- Who is on call ---------------------------------------------------------------------


def on_call(layer: ScheduleLayer, at: datetime) -> Contact | None:
    """Who is on call in `layer` at `at`: an override if one covers it, else the rotation."""
    # No created_at on overrides: ids grow with creation, so the highest id is
    # the latest created.
    override = (
        layer.overrides.filter(starts_at__lte=at, ends_at__gt=at)
        .select_related("contact")
        .order_by("-id")
        .first()
    )
    if override is not None:
        return override.contact
    return _rotation_contact(layer, rotation(layer), at)


def on_call_level(schedule: OnCallSchedule, level: int, at: datetime) -> Contact | None:
    layer = schedule.layers.filter(level=level).first()
    return on_call(layer, at) if layer is not None else None


def who_is_on_call(schedule: OnCallSchedule, at: datetime) -> dict[int, Contact | None]:
    layers = schedule.layers.select_related("schedule").prefetch_related("members__contact")
    return {layer.level: on_call(layer, at) for layer in layers}


# --- Shifts over a window ---------------------------------------------------------------


def _rotation_shifts(layer: ScheduleLayer, start: datetime, end: datetime) -> Iterator[Shift]:
    members = rotation(layer)
    if not members:
        return
    k = max(shift_index(layer, start), 0)
    begins = boundary(layer, k)
    while begins < end:
        ends = boundary(layer, k + 1)
        contact = members[k % len(members)]
        yield Shift(layer, contact, max(begins, start), min(ends, end))
        k, begins = k + 1, ends


def _cut_in(pieces: list[Shift], cover: Shift) -> list[Shift]:
    """`pieces` with `cover` laid over them: what it overlaps is cut away."""
    kept = []
    for piece in pieces:
        if piece.ends_at <= cover.starts_at or piece.starts_at >= cover.ends_at:
            kept.append(piece)
            continue
        if piece.starts_at < cover.starts_at:
            kept.append(replace(piece, ends_at=cover.starts_at))
        if piece.ends_at > cover.ends_at:
            kept.append(replace(piece, starts_at=cover.ends_at))
    kept.append(cover)
    return kept


def _overrides(layer: ScheduleLayer, start: datetime, end: datetime) -> list[ScheduleOverride]:
    return list(
        layer.overrides.filter(starts_at__lt=end, ends_at__gt=start)
        .select_related("contact")
        .order_by("id")
    )


def shifts(
    layer: ScheduleLayer, start: datetime, end: datetime, *, clip: bool = True
) -> list[Shift]:
    """Who is on call in `layer` over [start, end), as consecutive pieces in time order.

    Overrides are cut into the rotation: a shift an override covers in part
    becomes the pieces before and after it. With `clip=False` the shifts at the
    edges are whole (they may start before `start` or end after `end`).
    """
    if not clip:
        return _whole_shifts(layer, start, end)
    pieces = list(_rotation_shifts(layer, start, end))
    # In creation order, so the latest-created override is laid last and wins.
    for override in _overrides(layer, start, end):
        cover = Shift(
            layer,
            override.contact,
            max(override.starts_at, start),
            min(override.ends_at, end),
            is_override=True,
        )
        pieces = _cut_in(pieces, cover)
    return sorted(pieces, key=lambda piece: piece.starts_at)


def _whole_shifts(layer: ScheduleLayer, start: datetime, end: datetime) -> list[Shift]:
    first, last = shift_index(layer, start), shift_index(layer, end)
    wider_start = boundary(layer, first) if first >= 0 else start
    wider_end = boundary(layer, last + 1) if last >= 0 else end
    for override in _overrides(layer, start, end):
        wider_start = min(wider_start, override.starts_at)
        wider_end = max(wider_end, override.ends_at)
    return [
        piece
        for piece in shifts(layer, wider_start, wider_end)
        if piece.ends_at > start and piece.starts_at < end
    ]


def schedule_shifts(schedule: OnCallSchedule, start: datetime, end: datetime) -> list[Shift]:
    """Every layer's shifts over [start, end), whole, by level then time."""
    layers = schedule.layers.select_related("schedule").prefetch_related("members__contact")
    return [piece for layer in layers for piece in shifts(layer, start, end, clip=False)]


def next_shifts(contact: Contact, now: datetime, limit: int = 10) -> list[Shift]:
    """The contact's current and next shifts in every layer (whole), soonest first."""
    theirs = Q(members__contact=contact) | Q(overrides__contact=contact, overrides__ends_at__gt=now)
    layers = (
        ScheduleLayer.objects.filter(theirs)
        .distinct()
        .select_related("schedule")
        .prefetch_related("members__contact")
    )
    found: list[Shift] = []
    for layer in layers:
        horizon = _horizon(layer, contact, now, limit)
        found += [
            piece
            for piece in shifts(layer, now, horizon, clip=False)
            if piece.contact.pk == contact.pk and piece.ends_at > now
        ]
    found.sort(key=lambda piece: (piece.starts_at, piece.layer.schedule.name, piece.layer.level))
    return found[:limit]


def _horizon(layer: ScheduleLayer, contact: Contact, now: datetime, limit: int) -> datetime:
    """How far ahead the contact's next `limit` shifts of this layer lie, at most.

    Enough whole cycles of the rotation for `limit` turns (fewer if others'
    overrides take some of them), and the contact's own next overrides.
    """
    horizon = now + timedelta(seconds=1)
    members = rotation(layer)
    if any(member.pk == contact.pk for member in members):
        longest = (
            LONGEST_LOCAL_SHIFT
            if layer.shift in LOCAL_DAYS
            else timedelta(hours=shift_hours(layer))
        )
        horizon = max(now, boundary(layer, 0)) + (limit * len(members) + 1) * longest
    own = layer.overrides.filter(contact=contact, ends_at__gt=now).order_by("starts_at")[:limit]
    for override in own:
        horizon = max(horizon, override.ends_at)
    return horizon
