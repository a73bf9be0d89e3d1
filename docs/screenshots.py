"""Screenshots of the admin for README.md, taken from a running Watchpost.

    make run                                   # in one terminal
    .venv/bin/python docs/screenshots.py       # in another; needs Debian's chromium

It signs in as the demo admin (the password `make run` printed, or
WATCHPOST_ADMIN_PASSWORD) and writes PNG files next to this script.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--password", default=os.environ.get("WATCHPOST_ADMIN_PASSWORD"))
    args = parser.parse_args()
    password = args.password or (HERE.parent / "var" / "admin_password").read_text().strip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1600, "height": 800})
        page.goto(f"{args.base}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.goto(f"{args.base}/admin/checks/monitor/")
        if page.is_visible("#nav-sidebar"):
            page.click("#toggle-nav-sidebar")  # more room for the list
        page.screenshot(path=HERE / "admin-monitors.png")
        down = page.locator("table#result_list tbody tr", has_text="down").first
        down.locator("th a").click()
        page.locator("fieldset:has(h2:text-is('State'))").screenshot(
            path=HERE / "admin-monitor-state.png"
        )
        browser.close()


if __name__ == "__main__":
    main()
