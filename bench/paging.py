"""The fleet bench's paging phase: how long a failure takes to page someone.

The paging setup is what a user would make in the admin, written through the
app's models and the channel's own config check: a generic webhook channel
pointing at `PageReceiver` (an HTTP server in the bench process, on loopback),
and the default escalation policy of the monitors' severity, whose one step
pages that channel at once. The bench makes some targets answer HTTP 500; each
of those monitors goes down after its failure threshold of failing results,
opens an incident, and the stack pages the channel. The receiver notes when
each page arrives (time.time(), the same clock the stack stamps its rows with),
and `figures` sets that against when the failing result was recorded, its
scheduled slot, and the moment the target started failing.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from common import percentiles

SHARE = 0.01  # of the fleet's targets flipped to HTTP 500
MAX_LATENCY_S = 2.0  # target: page within this of the failing result being recorded
# After the last expected page, how long the bench keeps listening for duplicates.
GRACE_S = 5.0
# STORM_THRESHOLD's default in monitorsite/settings.py; settings_for() raises it.
STORM_THRESHOLD = 10
HOOK_PATH = "/hooks/watchpost"
# Messages that page (alerts.transports.base.PAGING_EVENTS without reminders,
# which a policy without reminder_minutes never sends). A grouped storm
# message pages every monitor it names, at the end of its minute.
PAGE_EVENTS = frozenset({"trigger", "grouped"})


@dataclass(frozen=True)
class Page:
    """One request the webhook channel made: when it arrived and what it was about."""

    at: float
    event: str
    monitors: tuple[str, ...]
    incident_ids: tuple[int, ...]


@dataclass(frozen=True)
class Flip:
    """A monitor whose target was made to fail, and when (time.time())."""

    monitor_id: int
    name: str
    at: float


class PageReceiver:
    """A webhook receiver on 127.0.0.1 that answers 200 and keeps every page it gets."""

    def __init__(self) -> None:
        self.pages: list[Page] = []
        self.refused = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{HOOK_PATH}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[Page]:
        with self.lock:
            return list(self.pages)

    def paging(self) -> list[Page]:
        """The messages that paged someone (not acknowledgements, resolutions or tests)."""
        return [page for page in self.received() if page.event in PAGE_EVENTS]

    def keep(self, body: bytes, at: float) -> bool:
        try:
            message = json.loads(body)
            incidents = message.get("incidents") or []
            page = Page(
                at=at,
                event=str(message["event"]),
                monitors=tuple(str(item["monitor"]) for item in incidents),
                incident_ids=tuple(int(item["id"]) for item in incidents if item.get("id")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            with self.lock:
                self.refused += 1
            return False
        with self.lock:
            self.pages.append(page)
        return True

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.time()
                ok = self.path == HOOK_PATH and receiver.keep(body, at)
                answer = b"ok" if ok else b"not a Watchpost message"
                self.send_response(200 if ok else 400)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the pages are the record; the bench prints its own figures

        return Handler


# --- Before the stack starts ----------------------------------------------------------


def flipped_count(monitors: int) -> int:
    return max(1, round(monitors * SHARE))


def pick(monitors: int) -> list[int]:
    """Which of the fleet's targets (0 .. monitors-1) fail: 1 %, spread over the fleet."""
    count = flipped_count(monitors)
    step = monitors / count
    return sorted({int(k * step + step / 2) for k in range(count)})


def settings_for(monitors: int) -> list[str]:
    """The stack's settings the paging phase needs (KEY=VALUE, before the user's --env).

    The receiver is on loopback, which channels refuse unless told. And more
    incidents than STORM_THRESHOLD opening within a minute are a storm, paged as
    one grouped message at the end of the minute: that would measure the
    grouping window, not the path from a failure to a page, so the threshold is
    raised to the number of monitors the bench flips.
    """
    storm = max(STORM_THRESHOLD, flipped_count(monitors))
    return ["NOTIFY_ALLOW_PRIVATE=true", f"STORM_THRESHOLD={storm}"]


def seed(receiver_url: str, monitors: int) -> None:
    """A webhook channel, and the default policy for the monitors' severity paging it at once."""
    from alerts.models import Channel, EscalationPolicy, EscalationStep
    from alerts.transports import get_transport
    from checks.models import Monitor

    kind = Channel.Kind.WEBHOOK
    channel = Channel(
        name="on-call webhook",
        kind=kind,
        # As the admin's form does: the transport checks the config.
        config=get_transport(kind).clean_config({"url": receiver_url}),
        # Every flipped monitor pages within the same minute (the default is 20 a minute).
        rate_limit=max(Channel._meta.get_field("rate_limit").default, flipped_count(monitors)),
    )
    channel.full_clean()
    channel.save()
    severity = Monitor._meta.get_field("severity").default  # the fleet's monitors keep it
    policy = EscalationPolicy(name=f"Page on-call ({severity})", default_for=severity)
    policy.full_clean()
    policy.save()
    step = EscalationStep(policy=policy, position=0, delay_minutes=0)
    step.full_clean()
    step.save()
    step.channels.add(channel)


def failure_threshold() -> int:
    from checks.models import Monitor

    return int(Monitor._meta.get_field("failure_threshold").default)


# --- While the targets fail -----------------------------------------------------------------


def wait_for_pages(
    receiver: PageReceiver, flips: list[Flip], deadline_s: float, alive: Callable[[], None]
) -> float:
    """Until every flipped monitor was paged (then GRACE_S more, for duplicates) or the
    deadline after the flip; returns how long it waited."""
    names = {flip.name for flip in flips}
    started = time.monotonic()
    complete_at: float | None = None
    while time.monotonic() - started < deadline_s:
        time.sleep(0.5)
        alive()
        paged = {name for page in receiver.paging() for name in page.monitors}
        if complete_at is None and names <= paged:
            complete_at = time.monotonic()
        if complete_at is not None and time.monotonic() - complete_at >= GRACE_S:
            break
    return time.monotonic() - started


# --- Figures ----------------------------------------------------------------------------------


def downs(flips: list[Flip]) -> dict[int, tuple[float, float]]:
    """monitor id -> (when its first down after the flip was recorded, that result's slot).

    The status change is written in the transaction that stores the failing
    result's effect on the monitor, so its created_at is when the result was
    recorded; ProbeResult itself keeps only its slot and start.
    """
    from checks.models import Monitor, StatusChange

    first: dict[int, tuple[float, float]] = {}
    since = min(flip.at for flip in flips)
    changes = (
        StatusChange.objects.filter(
            monitor_id__in=[flip.monitor_id for flip in flips],
            to_status=Monitor.Status.DOWN,
            created_at__gte=datetime.fromtimestamp(since, tz=UTC),
        )
        .order_by("created_at", "id")
        .values_list("monitor_id", "created_at", "result__scheduled_at")
    )
    for monitor_id, created_at, slot in changes:
        if monitor_id not in first and slot is not None:
            first[monitor_id] = (created_at.timestamp(), slot.timestamp())
    return first


def spread(values: list[float]) -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        key: round(value, 3) for key, value in percentiles(values, (50, 95, 99)).items()
    }
    figures["max"] = round(max(values), 3) if values else None
    return figures


def figures(receiver: PageReceiver, flips: list[Flip], waited_s: float) -> dict[str, Any]:
    pages = receiver.received()
    down = downs(flips)
    names = {flip.name for flip in flips}
    paging_messages = receiver.paging()
    rows, latency = [], {"from_recorded": [], "from_slot": [], "from_flip": []}
    for flip in flips:
        own = sorted(
            (page for page in paging_messages if flip.name in page.monitors), key=lambda p: p.at
        )
        recorded, slot = down.get(flip.monitor_id, (math.nan, math.nan))
        rows.append(
            {"monitor": flip.name, "flipped_at": flip.at, "down_recorded_at": recorded,
             "slot": slot, "pages": len(own), "paged_at": own[0].at if own else None,
             "incidents": sorted({i for page in own for i in page.incident_ids})}
        )  # fmt: skip
        for key, since in (
            ("from_recorded", recorded),
            ("from_slot", slot),
            ("from_flip", flip.at),
        ):
            if own and not math.isnan(since):
                latency[key].append(own[0].at - since)
    paged = sum(row["pages"] > 0 for row in rows)
    flipped_pages = sum(row["pages"] for row in rows)
    return {
        "flipped": len(flips),
        "paged": paged,
        "not_paged": [row["monitor"] for row in rows if not row["pages"]],
        "pages": flipped_pages,
        "duplicates": flipped_pages - paged,
        "stray_pages": sum(not names.intersection(page.monitors) for page in paging_messages),
        "grouped": sum(page.event == "grouped" for page in pages),
        "other_events": dict(
            Counter(page.event for page in pages if page.event not in PAGE_EVENTS)
        ),
        "refused_requests": receiver.refused,
        "failure_threshold": failure_threshold(),
        "waited_s": round(waited_s, 1),
        "latency_s": {key: spread(values) for key, values in latency.items()},
        "monitors": rows,
    }
