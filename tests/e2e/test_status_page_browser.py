"""The public status page in a real browser: Debian's Chromium, driven by Playwright.

Each scene of tests/incidents/status_fixtures.py (all operational, an outage
with a published incident, a maintenance window) is served by pytest-django's
live server through the production chain: the page's host is mapped to
127.0.0.1 inside Chromium, and WhiteNoise serves the collected, hashed static
files as it does behind gunicorn. Every page load also checks that the
stylesheet applied and that the console stayed clean (Chromium reports
Content-Security-Policy violations there).

`WATCHPOST_SCREENSHOTS=1 make test PYTEST_ARGS=tests/e2e/test_status_page_browser.py`
also writes docs/status-<scene>.png, which README.md shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler

from tests.incidents import status_fixtures as scenes

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
HOST = scenes.HOST
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = os.environ.get("WATCHPOST_SCREENSHOTS") == "1"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # The page's host is only a name: Chromium connects to the live server on loopback.
    f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
]  # fmt: skip
BANNER = {
    "operational": ("banner-none", "All Systems Operational", "rgb(26, 127, 55)"),
    "outage": ("banner-critical", "Major System Outage", "rgb(207, 34, 46)"),
    "maintenance": ("banner-maintenance", "Service Under Maintenance", "rgb(9, 105, 218)"),
}
COMPONENTS = ["API", "Dashboard", "Webhooks", "CDN", "Database", "Documentation"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("collected_static"),
]


@pytest.fixture(scope="module")
def browser(live_server: Any) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop marked running in this thread,
    # and Django refuses ORM calls where a loop runs. The tests only use the ORM
    # to build scenes and flush them (never concurrently with the browser), so
    # the guard is lifted while this module's browser lives.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            # Production serves the page over https; here it is plain http on
            # loopback, which Chromium must treat as the secure origin it stands
            # for (else it ignores, and complains of, the opener policy header).
            origin = f"--unsafely-treat-insecure-origin-as-secure={base_url(live_server)}"
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=[*CHROMIUM_FLAGS, origin]
            )
            yield launched
            launched.close()


@pytest.fixture
def site(live_server: Any, collected_static: Path, settings: Any) -> Iterator[str]:
    """The status page's base URL, served by the live server as production serves it."""
    scenes.allow_host(settings)
    scenes.render_in_request(settings)
    scenes.isolate_cache(settings)
    # The live server puts Django's finder-based static handler in front of the
    # app, which knows nothing of the manifest's hashed names. Production runs
    # the WSGI app alone, WhiteNoise serving STATIC_ROOT (the collected files,
    # read when the middleware is built): serve exactly that for this test.
    server = live_server.thread.httpd
    served = server.get_app()
    server.set_app(WSGIHandler())
    yield base_url(live_server) + "/"
    server.set_app(served)


def base_url(live_server: Any) -> str:
    return f"http://{HOST}:{live_server.thread.port}"


@dataclass
class Visit:
    """A page open in the browser, with what went wrong while it loaded."""

    page: Any
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stylesheets: list[Any] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.errors == [], "console errors (CSP violations are reported here)"
        assert self.failed == [], "requests that failed"


@pytest.fixture
def visit(browser: Any, site: str) -> Iterator[Callable[..., Visit]]:
    """Open the page in a fresh browser context; checks what every load must satisfy."""
    contexts = []

    def open_page(path: str = "", **options: Any) -> Visit:
        options.setdefault("viewport", DESKTOP)
        context = browser.new_context(**options)
        contexts.append(context)
        visited = Visit(context.new_page())
        page = visited.page
        page.on("console", lambda m: m.type == "error" and visited.errors.append(m.text))
        page.on("pageerror", lambda exc: visited.errors.append(str(exc)))
        page.on("requestfailed", lambda r: visited.failed.append(f"{r.url}: {r.failure}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and visited.failed.append(f"{r.url}: {r.status}"),
        )
        page.on(
            "response",
            lambda r: r.request.resource_type == "stylesheet" and visited.stylesheets.append(r),
        )
        answer = page.goto(site + path)
        assert answer is not None and answer.status == 200, answer and answer.status
        assert "script-src 'none'" in answer.headers["content-security-policy"]
        assert_styled(visited)
        visited.assert_clean()
        return visited

    yield open_page
    for context in contexts:
        context.close()


def assert_styled(visited: Visit) -> None:
    """The stylesheet came from the manifest, was served as an immutable file, and applied."""
    (sheet,) = visited.stylesheets
    assert re.search(r"/static/incidents/status\.[0-9a-f]{12}\.css$", sheet.url), sheet.url
    assert sheet.status == 200
    assert "immutable" in sheet.headers["cache-control"]
    # Unstyled, the body has the browser's 8px margin and the banner no background.
    body = style(visited.page, "body")
    assert body["margin"] == "0px"
    assert style(visited.page, ".banner")["backgroundColor"] != "rgba(0, 0, 0, 0)"


def style(page: Any, selector: str, pseudo: str | None = None) -> dict[str, str]:
    return page.locator(selector).first.evaluate(
        "(el, pseudo) => Object.fromEntries(Object.entries(getComputedStyle(el, pseudo)))",
        pseudo,
    )


def component(page: Any, name: str) -> Any:
    return page.locator("li.component").filter(
        has=page.get_by_role("heading", name=name, exact=True)
    )


def state_of(page: Any, name: str) -> tuple[str, str]:
    state = component(page, name).locator(".state")
    return state.inner_text().strip(), state.get_attribute("class") or ""


def assert_banner(page: Any, scene: str) -> None:
    css, text, colour = BANNER[scene]
    banner = page.locator("section.banner")
    assert css in (banner.get_attribute("class") or "").split()
    assert banner.get_by_role("heading").inner_text() == text
    assert style(page, "section.banner")["backgroundColor"] == colour


def words(text: str) -> str:
    return " ".join(text.split())


def screenshot(page: Any, scene: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=REPO / "docs" / f"status-{scene}.png", full_page=True)


def assert_private_things_hidden(page: Any) -> None:
    text = page.content()
    for secret in scenes.PRIVATE:
        assert secret not in text


# --- What a visitor sees, scene by scene ------------------------------------------------


def test_it_shows_all_systems_operational(visit: Callable[..., Visit]) -> None:
    scenes.operational_scene()
    page = visit().page
    assert page.title() == "Acme Status"
    assert_banner(page, "operational")
    for name in COMPONENTS:
        assert state_of(page, name) == ("Operational", "state state-operational")
        # 90 days of bars, most of them green, and the uptime over four windows.
        bars = component(page, name).locator(".bars > span")
        assert bars.count() == 90
        assert component(page, name).locator(".bars > span.ok").count() >= 75
        assert "90 days" in component(page, name).locator(".windows").inner_text()
    # The groups as the admin ordered them, open, each with its worst state.
    assert [words(g) for g in page.locator("li.group summary").all_inner_texts()] == [
        "Core services Operational",
        "Infrastructure Operational",
    ]
    assert page.locator(".chart svg").count() == 2  # API and Dashboard show response times
    assert page.get_by_text("No incidents in the past 7 days.").is_visible()
    assert page.get_by_role("heading", name="Active incidents").count() == 0
    assert_private_things_hidden(page)
    screenshot(page, "operational")


def test_it_shows_an_outage_with_its_published_incident(visit: Callable[..., Visit]) -> None:
    scenes.outage_scene()
    visited = visit()
    page = visited.page
    assert_banner(page, "outage")
    assert state_of(page, "Webhooks") == ("Major outage", "state state-major_outage")
    assert state_of(page, "API") == ("Partial outage", "state state-partial_outage")
    assert state_of(page, "Database") == ("Operational", "state state-operational")
    assert words(page.locator("li.group summary").first.inner_text()) == (
        "Core services Major outage"
    )
    active = page.locator("section.block", has=page.get_by_role("heading", name="Active incidents"))
    incident = active.locator("article.incident")
    assert incident.count() == 1
    assert "impact-major" in (incident.get_attribute("class") or "")
    assert incident.get_by_role("heading").inner_text() == (
        "Delayed webhook deliveries and API errors"
    )
    assert words(incident.locator(".meta").inner_text()) == "Major impact Affects API, Webhooks"
    updates = incident.locator("li.update")
    assert updates.locator(".update-status").all_inner_texts() == ["Identified", "Investigating"]
    assert "A failed network switch in one region is the cause." in updates.first.inner_text()
    assert_private_things_hidden(page)
    screenshot(page, "outage")

    # The title leads to the incident's own page, with its whole timeline.
    incident.get_by_role("link").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == (
        "Delayed webhook deliveries and API errors"
    )
    assert page.locator("li.update").count() == 2
    assert (
        "We are investigating delayed webhook deliveries" in page.locator(".timeline").inner_text()
    )
    assert_private_things_hidden(page)
    visited.assert_clean()


def test_it_shows_the_maintenance_window(visit: Callable[..., Visit]) -> None:
    scenes.maintenance_scene()
    page = visit().page
    assert_banner(page, "maintenance")
    assert state_of(page, "Database") == ("Under maintenance", "state state-under_maintenance")
    assert state_of(page, "CDN") == ("Operational", "state state-operational")
    now = page.locator(
        "section.block", has=page.get_by_role("heading", name="Maintenance in progress")
    )
    window = now.locator("article.maintenance")
    assert window.get_by_role("heading").inner_text() == "Database upgrade"
    assert "In progress" in window.locator(".pill").inner_text()
    assert "upgrading the database cluster to a new major version" in window.inner_text()
    assert "Affects Database" in window.inner_text()
    assert window.locator("time").count() == 2  # from and until, machine-readable too
    soon = page.locator(
        "section.block", has=page.get_by_role("heading", name="Scheduled maintenance")
    )
    assert soon.locator("article.maintenance").get_by_role("heading").inner_text() == (
        "CDN provider migration"
    )
    assert "Scheduled" in soon.locator(".pill").inner_text()
    assert_private_things_hidden(page)
    screenshot(page, "maintenance")


# --- Every scene: phone, dark mode, no script, keyboard, contrast --------------------------

ALL_SCENES = pytest.mark.parametrize("scene", list(scenes.SCENES))


@ALL_SCENES
def test_it_fits_a_phone_without_sideways_scrolling(
    visit: Callable[..., Visit], scene: str
) -> None:
    scenes.SCENES[scene]()
    page = visit(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2).page
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] == PHONE["width"]
    assert_banner(page, scene)
    # The last 30 days only, so each day stays big enough to tap.
    bars = component(page, "API").locator(".bars > span")
    shown = [b for b in bars.all() if b.is_visible()]
    assert len(shown) == 30
    assert shown[0].bounding_box()["width"] >= 6
    assert component(page, "API").locator(".bars-foot").inner_text().startswith("30 days ago")


@ALL_SCENES
def test_it_is_readable_in_light_and_dark_mode(visit: Callable[..., Visit], scene: str) -> None:
    scenes.SCENES[scene]()
    light_page = visit().page
    dark_page = visit(color_scheme="dark").page
    light, dark = style(light_page, "body"), style(dark_page, "body")
    assert light["backgroundColor"] == "rgb(255, 255, 255)"
    assert dark["backgroundColor"] == "rgb(13, 17, 23)"
    assert dark["color"] != light["color"]
    assert_banner(dark_page, scene)
    assert_readable(light_page)
    assert_readable(dark_page)


@ALL_SCENES
def test_it_shows_everything_with_javascript_off(visit: Callable[..., Visit], scene: str) -> None:
    scenes.SCENES[scene]()
    page = visit(java_script_enabled=False).page
    _, text, _ = BANNER[scene]
    assert page.get_by_role("heading", name=text).is_visible()
    for name in COMPONENTS:
        assert component(page, name).is_visible()  # the groups' <details> start open
        assert component(page, name).locator(".bars > span").first.is_visible()
    if scene == "outage":
        assert page.get_by_text("A failed network switch in one region").is_visible()
    if scene == "maintenance":
        assert page.get_by_role("heading", name="Database upgrade").is_visible()
    # Folding a group works without script too: <details> is the browser's own.
    page.locator("li.group summary").first.click()
    assert not component(page, "API").is_visible()


FOCUS_PROBE = """() => {
  const el = document.activeElement;
  const s = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(),
    bar: el.matches('.bars > span'),
    label: el.getAttribute('aria-label') || el.textContent.trim().slice(0, 40),
    outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
    onscreen: r.right > 0 && r.bottom > 0 && r.left < innerWidth,
    tip: el.matches('.bars > span') ? getComputedStyle(el, '::after').content : '',
  };
}"""


@ALL_SCENES
def test_the_keyboard_reaches_links_and_uptime_days_with_visible_focus(
    visit: Callable[..., Visit], scene: str
) -> None:
    scenes.SCENES[scene]()
    page = visit().page
    seen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_PROBE)
        seen.append(focused)
        # Every stop shows where the focus is, and is on screen (the skip link appears).
        assert focused["outline"] != "none" and focused["width"] >= 2, focused
        assert focused["onscreen"], focused
        if focused["bar"]:
            break
    assert seen[0]["label"] == "Skip to content"
    assert [f["label"] for f in seen[2:4]] == ["History", "Subscribe"]
    day = seen[-1]
    assert day["bar"], [f["label"] for f in seen]
    # The focused day tells its date, uptime and incidents (a tooltip from aria-label).
    assert re.match(r"\w{3} \d{1,2} \w{3} \d{4}: (.* uptime|no data), ", day["label"]), day
    assert day["tip"].strip('"') == day["label"]


READABLE = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!text || !el.getClientRects().length) continue;
    const s = getComputedStyle(el);
    if (s.visibility !== 'visible' || s.position === 'absolute' && el.matches('.skip')) continue;
    const [a, b] = [lum(rgb(s.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    found.push({text: el.textContent.trim().slice(0, 40), ratio, need: large ? 3 : 4.5});
  }
  return found;
}"""


def assert_readable(page: Any) -> None:
    """WCAG AA contrast for every piece of text on the page (4.5:1, 3:1 for large text)."""
    checked = page.evaluate(READABLE)
    assert len(checked) > 50
    poor = [c for c in checked if c["ratio"] < c["need"]]
    assert poor == []
